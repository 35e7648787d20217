"""Time from process start to the first paint of the `workbench demo` TUI, over fresh processes.

    /work/venv/bin/python benchmarks/ui/first_paint.py            # 20 measured runs (+1 warm-up)
    /work/venv/bin/python benchmarks/ui/first_paint.py --runs 30 --pty

Method
------
Each run spawns a fresh interpreter, `python -c CHILD`, whose code does what `workbench demo` does:
like the `workbench` console script (`workbench.launch.main`), it turns the garbage collector and pydantic's
plugin discovery off, imports
`workbench.cli` and calls `workbench.cli.main(["demo"])`, which loads configs/demo.toml and
runs `WorkbenchApp` with start_engine=True (the default), so the engine process is spawned in the
background exactly as for a user. Before that, the child swaps `workbench.ui.app.WorkbenchApp` for a
subclass that only adds measurement:

* `run()` forces `headless=True, size=(160, 50)` (default mode) -- or, with --pty, the app runs on its
  real Linux driver inside a pseudo-terminal of 160x50 that this script reads;
* `_display()` (called once per frame the compositor produced, after layout and render_update)
  timestamps the first frame on which the Config pane, the tab bar and the status bar all have a
  non-empty region on screen: that is "first paint". In headless mode the probe also converts that
  frame to terminal escape sequences (CompositorUpdate.render_segments), which the headless driver
  skips but a real terminal pays for. It then records which ML modules are in sys.modules, the
  engine state, how many ConfigChanged messages the app handled before the paint and whether the config
  is marked unsaved (app.dirty) although nothing was edited, writes everything to a JSON file and
  calls app.exit().

Clock: time.time() in both processes (same machine, same clock). total = child first paint minus the
parent's time.time() taken just before subprocess.Popen. The breakdown uses the child's own marks:
interpreter start-up (parent Popen -> first line of CHILD), `import workbench.cli`,
`import workbench.ui.app`, App construction, and App.run() -> first paint.

Load: the machine is shared, and a wall-clock time says as much about the other processes as about the
code. So each run also records the child's CPU time at the paint (`time.process_time()`, all threads,
interpreter start included: the work itself), and the share of the 2 CPUs other processes kept busy
between the child's first line and the paint (/proc/stat minus the child's own ticks). A slow run with
a high share was waiting for a core, not doing more work.

The panes after the first and the Config form's sections below its first one are built just after the
first frame (ui/widgets/deferred.py); the child also records when the last of them is mounted ("all
built": the whole UI usable; `WorkbenchApp.when_panes_ready`). Once both have happened it exits the app; we wait for the process to end
(recorded as quit_s: how long the process takes to exit after app.exit(); textual_shutdown_s is
app.exit() -> App.run() returning, which
includes asyncio.run() joining its default executor, where the engine-start worker thread waits in
EngineClient.start() for the engine's socket -- see the README) and then kill the engine
that run started: it is found by its command line, `python -m workbench.engine --socket
.../engine-<child pid>-<ms>.sock` (EngineClient names the socket after the UI's pid), and its whole
process group (it is a session leader) gets SIGTERM, then SIGKILL. Its socket and log are removed.

Separately, in fresh processes (no engine starting): `python -c pass` (the floor) and `import
workbench.ui.app` alone as the console script does it (GC off, pydantic's plugin scan skipped; until the
fourth session it was measured with the scan, and without waiting for a quiet machine), wall-clock and
CPU time around the import.

The first run is a warm-up (cold page cache / .pyc) and is reported separately, not in the statistics.
Target (the issue): median total <= 0.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pty
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEMO_CONFIG,
    HEAVY,
    ROOT,
    bench_env,
    kill_engines_of,
    other_busy_processes,
    print_table,
    secs,
    summarize,
    wait_quiet,
    write_results,
)

CHILD = r"""
import time
T_START = time.time()
import json, os, sys
OUT, MODE, W, H = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
HEAVY = tuple(sys.argv[5].split(","))
marks = {"interp_start": T_START}

def machine_ticks():
    # (busy, total) clock ticks of all CPUs since boot, from /proc/stat: the machine's load over the run
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7], sum(fields)

TICKS_START, OWN_START = machine_ticks(), os.times()

def mark(name):
    marks[name] = time.time()

def dump(extra):
    data = dict(extra, marks=marks)
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, OUT)

import gc
gc.disable()  # what the `workbench` console script (workbench.launch.main) does before importing the CLI
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")  # ditto
import workbench.cli as cli
mark("cli_imported")
import workbench.ui.app as appmod
mark("app_imported")
from textual._compositor import CompositorUpdate

result = {}

class Probe(appmod.WorkbenchApp):
    # Textual resolves a relative CSS_PATH against the subclass's source file, which `-c` code lacks.
    CSS_PATH = os.path.join(os.path.dirname(appmod.__file__), appmod.WorkbenchApp.CSS_PATH)

    def __init__(self, *args, **kwargs):
        mark("app_init_start")
        super().__init__(*args, **kwargs)
        mark("app_init_done")
        self._painted = False
        self._frames = 0
        self._config_changed = 0
        self.when_panes_ready(self._all_built)

    def on_config_changed(self, message):
        # Textual also runs WorkbenchApp.on_config_changed (handlers run for every class in the MRO).
        self._config_changed += 1

    def run(self, **kwargs):
        mark("app_run")
        if MODE == "headless":
            kwargs.update(headless=True, size=(W, H))
        return super().run(**kwargs)

    def _display(self, screen, renderable):
        super()._display(screen, renderable)
        if self._painted or renderable is None or self._batch_count or screen is not self.screen:
            return
        if self.is_headless and isinstance(renderable, CompositorUpdate):
            renderable.render_segments(self.console)
        self._frames += 1
        try:
            ok = all(self.query_one(s).region.area > 0 for s in ("#config-pane", "#panes", "#status-bar"))
        except Exception:
            ok = False
        if not ok:
            marks.setdefault("first_frame_incomplete", time.time())
            return
        self._painted = True
        mark("first_paint")
        busy1, total1 = machine_ticks()
        own = os.times()
        ticks = os.sysconf("SC_CLK_TCK")
        d_total = max(1, total1 - TICKS_START[1])
        result.update(
            # CPU seconds this process used from its start to the paint (all threads; interpreter start
            # included): the work, whatever else the machine did meanwhile
            cpu_at_paint_s=time.process_time(),
            # the machine's CPUs busy between this process's first line and the paint, and the part of
            # it that was not this process: other processes competing for the 2 cores
            machine_busy_during_run=(busy1 - TICKS_START[0]) / d_total,
            others_busy_during_run=max(0.0, (busy1 - TICKS_START[0])
                                       - (own.user + own.system - OWN_START.user - OWN_START.system) * ticks) / d_total,
            heavy_at_paint=sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in HEAVY}),
            heavy_checked=list(HEAVY),
            n_modules_at_paint=len(sys.modules),
            frames_before_paint=self._frames - 1,
            engine_state_at_paint=self.engine_state,
            engine_connected_at_paint=self.client is not None,
            config_changed_before_paint=self._config_changed,
            dirty_at_paint=bool(self.dirty),
            size=list(self.size),
            driver=type(self._driver).__name__,
            config_path=str(self.config_path),
            start_engine=self.start_engine,
        )
        dump(result)
        self._exit_when_built()

    def _all_built(self):
        # Registered in __init__ with WorkbenchApp.when_panes_ready: runs once the last deferred pane and
        # form section is mounted (WorkbenchApp.on_deferred_built).
        if "all_built" not in marks:
            mark("all_built")
            self._exit_when_built()

    def _exit_when_built(self):
        # Exit once the first paint is done and every deferred pane and form section is built.
        if self._painted and "all_built" in marks and "exit_called" not in marks:
            mark("exit_called")
            dump(result)
            self.call_later(self.exit)

appmod.WorkbenchApp = Probe
rc = cli.main(["demo"])
mark("app_returned")
dump(dict(result, rc=rc))
"""


def _drain(fd: int, sink: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        sink[0] += len(chunk)


def one_run(mode: str, size: tuple[int, int], quit_timeout: float, workdir: Path) -> dict:
    out = workdir / f"paint-{time.time_ns()}.json"
    err_path = workdir / "child-stderr.txt"
    env = bench_env({"TERM": "xterm-256color", "COLORTERM": "truecolor"} if mode == "pty" else None)
    argv = [sys.executable, "-c", CHILD, str(out), mode, str(size[0]), str(size[1]), ",".join(HEAVY)]
    master = slave = None
    drained = [0]
    stop = threading.Event()
    with open(err_path, "wb") as err:
        if mode == "pty":
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
            threading.Thread(target=_drain, args=(master, drained, stop), daemon=True).start()
            stdio = {"stdin": slave, "stdout": slave, "stderr": slave}
        else:
            stdio = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": err}
        t_launch = time.time()
        proc = subprocess.Popen(argv, cwd=workdir, env=env, start_new_session=True, **stdio)
    if slave is not None:
        os.close(slave)
    t_exit = None
    timed_out = False
    try:
        proc.wait(timeout=quit_timeout + 60)
        t_exit = time.time()
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        proc.wait()
    finally:
        stop.set()
        killed = kill_engines_of(proc.pid)
        if master is not None:
            with contextlib.suppress(OSError):
                os.close(master)
    if not out.exists():
        raise RuntimeError(f"the child did not report a paint (rc {proc.returncode}); stderr: "
                           f"{err_path.read_text(errors='replace')[-2000:]}")
    data = json.loads(out.read_text())
    out.unlink()
    m = data["marks"]
    paint = m["first_paint"]
    rec = {
        "total_s": paint - t_launch,
        "interp_startup_s": m["interp_start"] - t_launch,
        "import_cli_s": m["cli_imported"] - m["interp_start"],
        "import_ui_app_s": m["app_imported"] - m["cli_imported"],
        "cli_to_app_init_s": m["app_init_start"] - m["app_imported"],
        "app_init_s": m["app_init_done"] - m["app_init_start"],
        "run_to_paint_s": paint - m["app_run"],
        "cpu_at_paint_s": data.get("cpu_at_paint_s"),
        "all_built_s": (m["all_built"] - t_launch) if "all_built" in m else None,
        "paint_to_all_built_s": (m["all_built"] - paint) if "all_built" in m else None,
        "quit_s": (t_exit - m["exit_called"]) if t_exit and "exit_called" in m else None,
        "textual_shutdown_s": (m["app_returned"] - m["exit_called"]) if "app_returned" in m and "exit_called" in m
        else None,
        "interpreter_exit_s": (t_exit - m["app_returned"]) if t_exit and "app_returned" in m else None,
        "timed_out": timed_out,
        "rc": proc.returncode,
        "engine_pids_killed": killed,
        "pty_bytes": drained[0] if mode == "pty" else None,
        **{k: v for k, v in data.items() if k != "marks"},
        "marks": m,
        "t_launch": t_launch,
    }
    return rec


def fresh_import_times(code: str, n: int, quiet: float | None = None) -> list[float]:
    """Run `code` in n fresh interpreters; each prints one or more numbers on its last line (the first is
    returned, all are kept in `fresh_import_times.last`). With `quiet`, each waits for a quiet machine."""
    out, rows = [], []
    for _ in range(n):
        if quiet is not None:
            wait_quiet(quiet, 10.0)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=bench_env(),
                           cwd=tempfile.gettempdir(), check=True)
        row = [float(x) for x in r.stdout.strip().splitlines()[-1].split()]
        rows.append(row)
        out.append(row[0])
    fresh_import_times.last = rows  # type: ignore[attr-defined]
    return out


# A fixed pure-Python workload (loops, dicts, strings: what start-up does), CPU seconds in a fresh process.
# The machine under these benchmarks changes between sessions (an Intel Xeon VM until the third session,
# an AMD EPYC one in the fourth): this number puts first-paint times of different machines side by side.
CALIBRATION = ("import time; c = time.process_time(); x = 0\n"
               "for i in range(1_000_000): x += i * i\n"
               "d = {str(i): i for i in range(200_000)}; s = sorted(d, key=len)\n"
               "print(time.process_time() - c)")

# `import workbench.ui.app` as the console script does it (workbench.launch: GC off, pydantic's plugin scan
# skipped); prints the wall-clock and the CPU time of the import.
IMPORT_UI_APP = ("import gc, os, time; gc.disable(); os.environ.setdefault('PYDANTIC_DISABLE_PLUGINS', '__all__'); "
                 "t = time.perf_counter(); c = time.process_time(); import workbench.ui.app; "
                 "print(time.perf_counter() - t, time.process_time() - c)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="measured runs (>= 15); one warm-up run is added")
    ap.add_argument("--pty", action="store_true", help="run the app on its real driver in a pseudo-terminal")
    ap.add_argument("--size", default="160x50")
    ap.add_argument("--quit-timeout", type=float, default=120.0)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds of idle between runs")
    ap.add_argument("--quiet", type=float, default=0.25,
                    help="before each run wait (up to --quiet-wait s) until the CPUs are less busy than this")
    ap.add_argument("--quiet-wait", type=float, default=60.0)
    ap.add_argument("--import-runs", type=int, default=15)
    ap.add_argument("--name", default=None, help="results file name (default first_paint[_pty])")
    ap.add_argument("--no-compile", action="store_true",
                    help="leave src/workbench without cached bytecode (see below)")
    args = ap.parse_args()
    # A user's second start finds the package's bytecode cached: pip compiles it when installing, and
    # Python writes it on the first import. This machine's environment sets PYTHONDONTWRITEBYTECODE=1, so
    # an editable checkout never gets it and every run would compile src/workbench from source (+200 M
    # instructions, +9% of the first paint: ~35 ms). Compile it once, as a normal install has it, unless
    # --no-compile.
    if not args.no_compile:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "workbench")], check=True)
    mode = "pty" if args.pty else "headless"
    size = tuple(int(x) for x in args.size.split("x"))
    assert DEMO_CONFIG.exists(), DEMO_CONFIG

    # Floors, on an idle machine: interpreter start, and the UI module's import alone.
    t_python = fresh_import_times("import time; t=time.perf_counter(); print(time.perf_counter()-t)", 3)  # warm
    t_python = fresh_import_times(
        "import time, subprocess, sys; t=time.perf_counter(); "
        "subprocess.run([sys.executable, '-c', 'pass']); print(time.perf_counter()-t)", args.import_runs)
    t_calibration = fresh_import_times(CALIBRATION, 5, quiet=args.quiet)
    fresh_import_times("import workbench.ui.app; print(0)", 1)  # warm the .pyc / page cache
    t_import = fresh_import_times(IMPORT_UI_APP, args.import_runs, quiet=args.quiet)
    t_import_cpu = [row[1] for row in fresh_import_times.last]  # type: ignore[attr-defined]
    t_import_heavy = subprocess.run(
        [sys.executable, "-c", "import sys, workbench.ui.app; "
         f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r})))"],
        capture_output=True, text=True, env=bench_env(), check=True).stdout.strip()

    runs: list[dict] = []
    warmup = None
    with tempfile.TemporaryDirectory(prefix="wb-first-paint-") as tmp:
        workdir = Path(tmp)
        for i in range(args.runs + 1):
            time.sleep(args.settle)
            busy, waited = wait_quiet(args.quiet, args.quiet_wait)
            others = other_busy_processes() if busy > args.quiet else []
            rec = one_run(mode, size, args.quit_timeout, workdir)
            rec.update(cpu_busy_before=busy, waited_for_quiet_s=waited, other_busy_processes=others)
            label = "warm-up" if i == 0 else f"run {i:>2}/{args.runs}"
            print(f"{label}: first paint {rec['total_s']:.3f} s (import ui.app {rec['import_ui_app_s']:.3f} s, "
                  f"run->paint {rec['run_to_paint_s']:.3f} s), heavy modules at paint: {rec['heavy_at_paint']}, "
                  f"engine at paint: {rec['engine_state_at_paint']}/connected={rec['engine_connected_at_paint']}, "
                  f"all built {rec['all_built_s'] if rec['all_built_s'] is None else round(rec['all_built_s'], 3)} s, "
                  f"process exit {rec['quit_s'] if rec['quit_s'] is None else round(rec['quit_s'], 2)} s after exit(), "
                  f"engines killed {rec['engine_pids_killed']}; CPUs {busy * 100:.0f}% busy before", flush=True)
            if i == 0:
                warmup = rec
            else:
                runs.append(rec)

    keys = ["total_s", "cpu_at_paint_s", "others_busy_during_run", "interp_startup_s", "import_cli_s",
            "import_ui_app_s", "cli_to_app_init_s", "app_init_s", "run_to_paint_s", "all_built_s", "paint_to_all_built_s", "quit_s", "textual_shutdown_s",
            "interpreter_exit_s"]
    stats = {k: summarize([r[k] for r in runs if r.get(k) is not None]) for k in keys}
    quiet = [r for r in runs if r["cpu_busy_before"] <= args.quiet]
    stats["total_s_quiet_runs"] = summarize([r["total_s"] for r in quiet])
    stats["run_to_paint_s_quiet_runs"] = summarize([r["run_to_paint_s"] for r in quiet])
    stats["python_startup_s"] = summarize(t_python)
    stats["calibration_cpu_s"] = summarize(t_calibration)
    stats["import_workbench_ui_app_alone_s"] = summarize(t_import)
    stats["import_workbench_ui_app_alone_cpu_s"] = summarize(t_import_cpu)
    heavy_any = sorted({m for r in runs for m in r["heavy_at_paint"]})
    result = {
        "mode": mode,
        "bytecode_compiled_first": not args.no_compile,
        "size": size,
        "config": str(DEMO_CONFIG),
        "runs": args.runs,
        "target": {"median_total_s": 0.5},
        "meets_target": stats["total_s"]["p50"] <= 0.5,
        "heavy_modules_at_paint_any_run": heavy_any,
        "heavy_modules_after_import_ui_app": t_import_heavy,
        "engine_state_at_paint": sorted({r["engine_state_at_paint"] for r in runs}),
        "engine_connected_at_paint_runs": sum(bool(r["engine_connected_at_paint"]) for r in runs),
        "config_changed_before_paint_median": statistics.median(r["config_changed_before_paint"] for r in runs),
        "dirty_at_paint_runs": sum(bool(r["dirty_at_paint"]) for r in runs),
        "stats": stats,
        "cpu_busy_before_runs": summarize([r["cpu_busy_before"] for r in runs]),
        "runs_started_on_a_busy_machine": sum(r["cpu_busy_before"] > args.quiet for r in runs),
        "warmup": warmup,
        "samples": runs,
        "python_startup_samples_s": t_python,
        "import_ui_app_samples_s": t_import,
        "import_ui_app_cpu_samples_s": t_import_cpu,
    }
    path = write_results(args.name or ("first_paint" if mode == "headless" else "first_paint_pty"), result)

    rows = []
    for k, label in [("total_s", "process start -> first paint"),
                     ("cpu_at_paint_s", "  CPU time of the UI process at first paint"),
                     ("others_busy_during_run", "  CPUs busy with other processes meanwhile (0-1)"),
                     ("total_s_quiet_runs", "  same, runs that began on a quiet machine"), ("interp_startup_s", "  interpreter start-up"),
                     ("import_cli_s", "  import workbench.cli"), ("import_ui_app_s", "  import workbench.ui.app"),
                     ("cli_to_app_init_s", "  cli: load config"), ("app_init_s", "  WorkbenchApp()"),
                     ("run_to_paint_s", "  App.run() -> first paint"),
                     ("all_built_s", "process start -> every pane and form section built"),
                     ("paint_to_all_built_s", "  first paint -> all built"),
                     ("python_startup_s", "python -c pass (idle machine)"),
                     ("calibration_cpu_s", "fixed pure-Python workload, CPU (the machine's speed)"),
                     ("import_workbench_ui_app_alone_s", "import workbench.ui.app alone (as the console script)"),
                     ("import_workbench_ui_app_alone_cpu_s", "  its CPU time"),
                     ("quit_s", "process exit after app.exit()"),
                     ("textual_shutdown_s", "  app.exit() -> App.run() returns"),
                     ("interpreter_exit_s", "  App.run() returns -> process gone")]:
        s = stats[k]
        fmt = (lambda x: "-" if x is None else f"{x * 100:.0f}%") if k == "others_busy_during_run" else secs
        rows.append([label, fmt(s.get("p50")), fmt(s.get("p90")), fmt(s.get("min")), fmt(s.get("max")), s["n"]])
    print_table(f"first paint of `workbench demo` ({mode}, {size[0]}x{size[1]}, {args.runs} runs, "
                f"{os.cpu_count()} CPUs; target median <= 0.5 s)", ["", "median", "p90", "min", "max", "n"], rows)
    print(f"heavy ML modules in sys.modules at first paint (any run): {heavy_any or 'none'} "
          f"(checked {', '.join(HEAVY)})")
    print(f"ConfigChanged messages handled before the first paint (nothing edited): median "
          f"{result['config_changed_before_paint_median']}; config shown as unsaved at first paint in "
          f"{result['dirty_at_paint_runs']}/{args.runs} runs")
    print(f"engine state at first paint: {result['engine_state_at_paint']}; engine connected at paint in "
          f"{result['engine_connected_at_paint_runs']}/{args.runs} runs (the paint does not wait for it)")
    cb = result["cpu_busy_before_runs"]
    print(f"machine load before each run: median {cb['p50'] * 100:.0f}% busy, max {cb['max'] * 100:.0f}% "
          f"({result['runs_started_on_a_busy_machine']} runs started above {args.quiet * 100:.0f}%)")
    print(f"median {stats['total_s']['p50']:.3f} s -> target {'MET' if result['meets_target'] else 'NOT MET'}")
    print(f"raw numbers: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
