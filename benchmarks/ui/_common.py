"""Shared helpers for the UI benchmarks: statistics, result tables / JSON, engine clean-up, and the
frame probe (an App subclass that timestamps every frame the compositor produces).

Not a benchmark itself; imported by first_paint.py, key_latency.py and loss_chart_10k.py (which run
with their own folder first on sys.path).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SRC = ROOT / "src"
RESULTS = HERE / "results"
DEMO_CONFIG = ROOT / "configs" / "demo.toml"
HEAVY = ("torch", "transformers", "unsloth", "unsloth_zoo", "trl", "peft", "datasets", "bitsandbytes")

def _source_state() -> dict[str, Any]:
    """A digest of src/workbench/**/*.py when the benchmark started (the tree is edited while we measure,
    and git is not to be run here): results name the code they measured."""
    import hashlib

    h = hashlib.sha256()
    newest = 0.0
    files = sorted((SRC / "workbench").rglob("*.py"))
    for f in files:
        with contextlib.suppress(OSError):
            h.update(str(f.relative_to(SRC)).encode() + b"\0" + f.read_bytes() + b"\0")
            newest = max(newest, f.stat().st_mtime)
    return {"src_sha256": h.hexdigest()[:16], "src_files": len(files),
            "src_newest_mtime": _dt.datetime.fromtimestamp(newest).isoformat(timespec="seconds")}


SOURCE_STATE = _source_state()

if str(SRC) not in sys.path:  # the venv has an editable install; this keeps a plain checkout working too
    sys.path.insert(0, str(SRC))


# ------------------------------------------------------------------------------------------ stats

def percentile(values: Iterable[float], q: float) -> float:
    """q in [0, 100]; linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return math.nan
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


def ms(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 1000:.1f} ms"


def secs(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f} s"


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    print()
    print(f"{title}\n[src {SOURCE_STATE['src_sha256']}, newest file {SOURCE_STATE['src_newest_mtime']}]")
    print(line)
    for j, r in enumerate(cells):
        print(" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if j == 0:
            print(line)
    print(line)


def machine_info() -> dict[str, Any]:
    import textual

    info: dict[str, Any] = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "textual": textual.__version__,
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    return info


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine_info(), "source_at_start": SOURCE_STATE, **data}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def bench_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for child processes: offline (no machine here reaches the hub), src on the path."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def set_offline_env() -> None:
    for k, v in bench_env().items():
        if k != "PYTHONPATH":
            os.environ.setdefault(k, v)


# --------------------------------------------------------------------------------- machine load

def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return idle, sum(fields[:8])


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process `pid` has used, all its threads; None if it is gone."""
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def cpu_busy(interval: float = 0.5) -> float:
    """Fraction of all CPUs busy over `interval` seconds (from /proc/stat), 0..1."""
    i0, t0 = _cpu_times()
    time.sleep(interval)
    i1, t1 = _cpu_times()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(threshold: float = 0.25, max_wait: float = 60.0, interval: float = 0.5) -> tuple[float, float]:
    """Wait (up to max_wait) until the machine is less than `threshold` busy; returns (busy, waited_s).

    The machine may be shared (other test runs, other engines): each sample records the load it saw."""
    start = time.monotonic()
    busy = cpu_busy(interval)
    while busy > threshold and time.monotonic() - start < max_wait:
        busy = cpu_busy(interval)
    return busy, time.monotonic() - start


def other_busy_processes(min_cpu_s: float = 0.0) -> list[str]:
    """Command lines of the processes using CPU now (a 0.5 s sample), excluding ours: for the record."""
    def ticks() -> dict[int, int]:
        out = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    parts = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                    out[int(entry)] = int(parts[11]) + int(parts[12])
                except (OSError, IndexError, ValueError):
                    pass
        return out

    a = ticks()
    time.sleep(0.5)
    b = ticks()
    hz = os.sysconf("SC_CLK_TCK")
    busy = sorted(((b[p] - a.get(p, b[p])) / hz / 0.5, p) for p in b if p != os.getpid())
    return [f"{pct * 100:.0f}% {_cmdline(p)[:120]}" for pct, p in reversed(busy) if pct > max(min_cpu_s, 0.05)]


# ------------------------------------------------------------------------------- engine clean-up

def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def engine_pids_of(ui_pid: int) -> list[int]:
    """Engine processes started by the UI process `ui_pid`.

    EngineClient.start() names the socket `engine-<ui pid>-<ms>.sock`, and the engine runs as
    `python -m workbench.engine --socket <that path>` in its own session, so it is found by its command
    line even after the UI process is gone (it is then re-parented, not killed)."""
    tag = f"engine-{ui_pid}-"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            cmd = _cmdline(int(entry))
            if "workbench.engine" in cmd and "--socket" in cmd and tag in cmd:
                found.append(int(entry))
    return found


def kill_tree(pid: int, grace_s: float = 3.0) -> None:
    """SIGTERM the process group led by `pid` (the engine is a session leader), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                return
            time.sleep(0.02)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def kill_engines_of(ui_pid: int) -> list[int]:
    pids = engine_pids_of(ui_pid)
    for pid in pids:
        kill_tree(pid)
    remove_runtime_files(ui_pid)
    return pids


def remove_runtime_files(ui_pid: int) -> None:
    """The socket (and log) the engine of `ui_pid` left in the workbench runtime folder."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / f"workbench-{os.getuid()}"
    if not base.is_dir():
        import tempfile

        base = Path(tempfile.gettempdir()) / f"workbench-{os.getuid()}"
    for path in base.glob(f"engine-{ui_pid}-*"):
        with contextlib.suppress(OSError):
            path.unlink()


# ------------------------------------------------------------------------------ GC / leak probes

class GcPauses:
    """Records every garbage collection of this process (gc.callbacks): start time (perf_counter),
    duration and generation. A full (generation 2) collection stops the event loop for as long as it
    takes to traverse every tracked object, so its pause grows with the heap."""

    def __init__(self) -> None:
        import gc

        self.events: list[tuple[float, float, int]] = []
        self._t0 = 0.0
        self._gc = gc

    def _cb(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.events.append((self._t0, time.perf_counter() - self._t0, int(info["generation"])))

    def __enter__(self) -> GcPauses:
        self._gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(ValueError):
            self._gc.callbacks.remove(self._cb)

    def in_window(self, t0: float, t1: float, generation: int = 2) -> float:
        """Seconds of collections of `generation` that started in [t0, t1]."""
        return sum(d for t, d, g in self.events if g == generation and t0 <= t <= t1)

    def summary(self, t0: float = -math.inf, t1: float = math.inf) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for g in (0, 1, 2):
            d = [x for t, x, gg in self.events if gg == g and t0 <= t <= t1]
            out[f"gen{g}"] = {"count": len(d), "total_s": sum(d), "max_s": max(d) if d else 0.0}
        return out


def footer_watchers(app: Any) -> dict[str, int]:
    """Objects the GC tracks, and the footer's widgets: the app's one-widget `KeyBar`, or, in an app that
    uses Textual's `Footer`, the entries of its `compact` watcher list (one per FooterKey ever composed,
    Textual issue #6666) against the FooterKeys in it now."""
    import gc

    from textual.widgets import Footer

    out = {"gc_tracked_objects": len(gc.get_objects())}
    footers = app.query(Footer)
    if footers:
        footer = footers.first()
        watchers = getattr(footer, "__watchers", {}).get("compact", [])
        out.update(footer_compact_watchers=len(watchers), footer_keys_live=len(footer.children))
    return out


def count_footer_recomposes(app: Any, prune_watchers: bool = False) -> list[int]:
    """Count the rebuilds of a Textual `Footer` (it rebuilds all its FooterKeys whenever the screen's
    bindings are refreshed: every focus change); stays 0 for the app's `KeyBar`, which never rebuilds.
    Wraps the instance's method; behaviour is unchanged unless `prune_watchers` (a what-if, off by
    default): then, after each recompose, the Footer's `compact` watcher entries of FooterKeys no longer
    in the DOM are dropped (what a fix of Textual issue #6666 would do)."""
    from textual.widgets import Footer

    counter = [0]
    footers = app.query(Footer)
    if not footers:
        return counter
    footer = footers.first()
    original = footer.recompose

    async def recompose() -> None:
        counter[0] += 1
        await original()
        if prune_watchers:
            watchers = getattr(footer, "__watchers", {}).get("compact")
            if watchers:
                watchers[:] = [(node, cb) for node, cb in watchers if node.is_attached]

    footer.recompose = recompose  # type: ignore[method-assign]
    return counter


def latency_breakdown(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Latency stats of all presses, of those whose window held a full GC, and of the others."""
    ok = [s for s in samples if not math.isnan(s["latency_s"])]
    out = {"all": summarize([s["latency_s"] for s in ok]),
           "UI thread CPU": summarize([s["cpu_s"] for s in ok])}
    if ok and "gc2_s" in ok[0]:
        out["with a full GC"] = summarize([s["latency_s"] for s in ok if s["gc2_s"] > 0])
        out["without a full GC"] = summarize([s["latency_s"] for s in ok if s["gc2_s"] == 0])
        out["full-GC time in window"] = summarize([s["gc2_s"] for s in ok if s["gc2_s"] > 0])
    return out


# --------------------------------------------------------------------------------- frame probe

def make_probe_app(base: type) -> type:
    """Subclass `base` (WorkbenchApp) so every frame the compositor hands to the driver is timestamped.

    Textual renders in Screen._on_timer_update (at most MAX_FPS=60 times a second, when something is
    dirty): layout, compositor.render_update(), then App._display(screen, update), which, with a real
    terminal, turns the update into escape sequences (render_segments) and queues them for the writer
    thread. The headless driver used by run_test() / run(headless=True) skips that conversion, so the probe
    does it itself (and throws the text away) to keep the cost of a real terminal in the measurement.
    A frame is recorded after that, with time.perf_counter(); waiters whose predicate holds on that frame
    are resolved with its time.
    """
    import inspect

    from textual._compositor import CompositorUpdate

    class Probe(base):  # type: ignore[misc, valid-type]
        # Textual resolves a relative CSS_PATH against the file of the class: keep the app's own.
        CSS_PATH = str(Path(inspect.getfile(base)).parent / base.CSS_PATH) if isinstance(base.CSS_PATH, str) \
            else base.CSS_PATH

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.frame_times: list[float] = []
            self._frame_waiters: list[tuple[Callable[[], bool], asyncio.Future[float] | list[float]]] = []
            self.action_times: list[tuple[float, str]] = []
            self.emulate_terminal_write = True

        def _display(self, screen: Any, renderable: Any) -> None:
            super()._display(screen, renderable)
            if renderable is None or self._batch_count or screen is not self.screen:
                return
            if self.emulate_terminal_write and self.is_headless and isinstance(renderable, CompositorUpdate):
                renderable.render_segments(self.console)
            t = time.perf_counter()
            cpu = time.thread_time()  # CPU time of the UI (event loop) thread
            self.frame_times.append(t)
            if self._frame_waiters:
                keep = []
                for predicate, sink in self._frame_waiters:
                    try:
                        ok = predicate()
                    except Exception:
                        ok = False
                    if ok:
                        if isinstance(sink, list):
                            sink.append((t, cpu))
                        elif not sink.done():
                            sink.set_result((t, cpu))
                    else:
                        keep.append((predicate, sink))
                self._frame_waiters = keep

        def wait_frame(self, predicate: Callable[[], bool]) -> asyncio.Future[tuple[float, float]]:
            """A future resolved with (perf_counter, thread_time) of the first frame after now on which
            predicate() holds."""
            fut: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
            self._frame_waiters.append((predicate, fut))
            return fut

        def action_pane(self, pane: str) -> None:
            self.action_times.append((time.perf_counter(), pane))
            super().action_pane(pane)

    Probe.__name__ = f"Probe{base.__name__}"
    return Probe


def visible(widget: Any) -> bool:
    """True when the widget is in the compositor's map with a non-empty region (i.e. it is on screen)."""
    region = widget.region
    return region.width > 0 and region.height > 0


async def measure_key_latency(app: Any, pilot: Any, keys: dict[str, str], presses: int, gap_s: tuple[float, float],
                              timeout_s: float = 10.0, seed: int = 1,
                              on_sample: Callable[[int], None] | None = None,
                              gc_pauses: GcPauses | None = None, inject: str = "driver") -> list[dict[str, Any]]:
    """Press the keys of `keys` (key -> id of the pane it shows) in turn, `presses` times in all.

    inject="driver" (default) hands each Key event to the app's driver, `driver.send_message(Key)`, which
    is what Textual's Linux driver does with terminal input. inject="pilot" uses `await pilot.press(key)`,
    which also waits until every widget on the screen (~450 here) has processed a callback posted to it:
    bookkeeping of the test harness, run on the UI thread, that a terminal does not cause.

    For each press: t_key = perf_counter() just before the key is handed over; the press's frame is the
    first frame after t_key on which the pane that key selects is on screen (see make_probe_app);
    latency = t_frame - t_key. Also kept: t_action (when the app's pane action ran), so
    t_action - t_key is the wait in the message queue, and cpu_s: CPU time the UI thread (which runs the
    event loop, Pilot included) used between t_key and the frame -- latency much above cpu_s means the
    thread was waiting (for a timer, or for a CPU the other processes held); with `gc_pauses`, gc2_s: the
    time full garbage collections took inside [t_key, t_frame]. Between presses, a random pause in `gap_s`
    (so presses do not lock to the chart's 4 Hz timer).
    """
    import random

    rng = random.Random(seed)
    order = list(keys)
    samples: list[dict[str, Any]] = []
    for i in range(presses):
        key = order[i % len(order)]
        pane_widget = app.query_one(f"#{keys[key]}")
        fut = app.wait_frame(lambda w=pane_widget: visible(w))
        n_actions = len(app.action_times)
        cpu_key = time.thread_time()
        t_key = time.perf_counter()
        if inject == "pilot":
            await pilot.press(key)
        else:
            from textual import events

            event = events.Key(key, key)
            event.set_sender(app)
            app._driver.send_message(event)
        try:
            t_frame, cpu_frame = await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            t_frame, cpu_frame = math.nan, math.nan
        t_action = next((t for t, _ in app.action_times[n_actions:]), math.nan)
        sample = {"i": i, "key": key, "latency_s": t_frame - t_key, "queue_s": t_action - t_key,
                  "render_s": t_frame - t_action, "cpu_s": cpu_frame - cpu_key, "t_key": t_key}
        if gc_pauses is not None:
            sample["gc2_s"] = gc_pauses.in_window(t_key, t_frame if not math.isnan(t_frame) else t_key + timeout_s)
        samples.append(sample)
        if on_sample:
            on_sample(i)
        await asyncio.sleep(rng.uniform(*gap_s))
    return samples


def add_inject_argument(ap: Any) -> None:
    ap.add_argument("--inject", choices=("driver", "pilot"), default="driver",
                    help="how keys reach the app: through its driver as terminal input does (default), or "
                         "with Pilot.press, which adds the harness's own per-widget bookkeeping")


def add_what_if_arguments(ap: Any) -> None:
    """The what-if probes shared by key_latency.py and loss_chart_10k.py (first session's diagnosis; the
    app has since made both changes itself, so on the current code they change nothing)."""
    ap.add_argument("--what-if-footer-fix", action="store_true",
                    help="what-if: drop the Footer's stale 'compact' watchers after each recompose (Textual #6666)")
    ap.add_argument("--what-if-gc-freeze", action="store_true",
                    help="what-if: gc.collect(); gc.freeze() just before the key presses (start-up objects are "
                         "then never traversed by full collections)")
