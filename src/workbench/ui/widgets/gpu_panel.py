"""Per-GPU gauges from NVML: memory used / total as a bar, utilization, temperature, power, a short
utilization history and the processes on the GPU; plus the engine's memory report (before / peak / for
LoRA). Without an NVIDIA GPU: the host's CPU utilization (with history), RAM and the engine process.

Every widget is built once and then updated in place, and only when its text changed: the gauges tick
every second while the user types, and a Static's update re-measures it (a layout pass)."""

from __future__ import annotations

from collections import deque
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.markup import escape
from textual.widgets import ProgressBar, Sparkline, Static

from workbench.gpu import GIB, GpuSnapshot, HostSnapshot
from workbench.protocol import Memory

HISTORY = 60


class Line(Static):
    """A Static that skips updates that would not change what it shows, and asks for a layout pass only
    when its height may change (most ticks change a number on a line that does not wrap)."""

    def __init__(self, text: str = "", **kwargs: Any) -> None:
        super().__init__(text, **kwargs)
        self._shown = text

    def set_text(self, text: str) -> None:
        old = self._shown
        if text == old:
            return
        self._shown = text
        width = self.content_size.width
        # Markup counts towards len(): an overestimate, so a line that might wrap always gets its layout.
        may_wrap = width <= 0 or any(len(line) >= width for line in (*old.splitlines(), *text.splitlines()))
        self.update(text, layout=may_wrap or not old or old.count("\n") != text.count("\n"))


def process_markup(snap: GpuSnapshot) -> str:
    """The process lines of one GPU as markup: the engine's stand out, notes are muted."""
    style = {"engine": "b $success", "note": "$text-muted"}
    return "\n".join(f"[{style[kind]}]{escape(line)}[/]" if kind in style else escape(line)
                     for line, kind in snap.process_rows())


def memory_report_markup(reports: list[Memory]) -> str:
    """The trainer's memory report: one line for one process; on several ranks a header and a line per rank,
    so a rank running out of memory before the others shows."""
    if len(reports) == 1 and reports[0].ranks == 1:
        m = reports[0]
        return (f"[b]Trainer memory[/b] ({escape(m.gpu_name)}, {m.total_gib:.1f} GiB): reserved before training "
                f"{m.reserved_before_gib:.2f} GiB · peak {m.peak_gib:.2f} GiB ({m.peak_pct:.1f}%) · "
                f"for LoRA {m.lora_gib:.2f} GiB ({m.lora_pct:.1f}%)")
    lines = [f"[b]Trainer memory[/b], {reports[0].ranks} ranks (before training · peak · for LoRA):"]
    for m in sorted(reports, key=lambda r: r.rank):
        gpu = f"GPU {m.gpu_index}" if m.gpu_index is not None else "GPU"
        lines.append(f"  rank {m.rank} · {gpu} {escape(m.gpu_name)} {m.total_gib:.0f} GiB: "
                     f"{m.reserved_before_gib:.2f} · {m.peak_gib:.2f} GiB ({m.peak_pct:.1f}%) · {m.lora_gib:.2f} GiB")
    return "\n".join(lines)


class GpuGauge(Vertical):
    DEFAULT_CSS = """
    GpuGauge { height: auto; margin-bottom: 1; }
    GpuGauge ProgressBar { width: 100%; }
    GpuGauge Bar { width: 1fr; }
    GpuGauge Sparkline { height: 2; }
    """

    def __init__(self, index: int) -> None:
        super().__init__(id=f"gpu-{index}")
        self.index = index
        self.util_history: deque[float] = deque([0.0] * HISTORY, maxlen=HISTORY)
        self.mem_history: deque[float] = deque([0.0] * HISTORY, maxlen=HISTORY)

    def compose(self) -> ComposeResult:
        yield Line(id="gpu-title")
        yield ProgressBar(total=100, show_eta=False, show_percentage=False, id="gpu-mem")
        yield Line(id="gpu-line")
        yield Sparkline(list(self.util_history), id="gpu-util-history")
        yield Line(id="gpu-procs")

    def update_snapshot(self, snap: GpuSnapshot, ranks: list[int] | None = None) -> None:
        """`ranks`: the ranks of the run on this GPU (from their memory reports), named in the title."""
        used = f" · [b $success]rank {', '.join(map(str, ranks))}[/] of the run" if ranks else ""
        self.query_one("#gpu-title", Line).set_text(f"[b]GPU {snap.index}[/b] {escape(snap.name)}{used}")
        bar = self.query_one("#gpu-mem", ProgressBar)
        if snap.memory_total:
            bar.update(total=snap.memory_total / GIB, progress=(snap.memory_used or 0) / GIB)
        mem = (f"{(snap.memory_used or 0) / GIB:.1f}/{snap.memory_total / GIB:.1f} GiB"
               if snap.memory_total else "memory n/a")

        def na(v: object, fmt: str) -> str:
            return "n/a" if v is None else fmt.format(v)

        power = na(snap.power_w, "{:.0f} W")
        if snap.power_w is not None and snap.power_limit_w:
            power += f" / {snap.power_limit_w:.0f} W"
        self.query_one("#gpu-line", Line).set_text(
            f"mem {mem}  util {na(snap.utilization, '{}%')}  temp {na(snap.temperature, '{}°C')}  power {power}"
        )
        self.util_history.append(float(snap.utilization or 0))
        self.mem_history.append(100.0 * (snap.memory_fraction or 0.0))
        self.query_one("#gpu-util-history", Sparkline).data = list(self.util_history)
        self.query_one("#gpu-procs", Line).set_text(process_markup(snap))


class HostGauge(Vertical):
    """CPU utilization with its history, RAM as a bar, and the engine process: the gauges of a machine
    without an NVIDIA GPU (a laptop, CI, the CPU demo)."""

    DEFAULT_CSS = """
    HostGauge { height: auto; margin: 1 0; }
    HostGauge ProgressBar { width: 100%; }
    HostGauge Bar { width: 1fr; }
    HostGauge Sparkline { height: 2; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cpu_history: deque[float] = deque([0.0] * HISTORY, maxlen=HISTORY)

    def compose(self) -> ComposeResult:
        yield Line(id="host-cpu")
        yield Sparkline(list(self.cpu_history), id="host-cpu-history")
        yield Line(id="host-ram")
        yield ProgressBar(total=100, show_eta=False, show_percentage=False, id="host-ram-bar")
        yield Line(id="host-engine")

    def update_host(self, host: HostSnapshot) -> None:
        self.query_one("#host-cpu", Line).set_text(escape(host.cpu_line()))
        if host.cpu_percent is not None:  # the first reading has no rate yet: leave the history alone
            self.cpu_history.append(host.cpu_percent)
            self.query_one("#host-cpu-history", Sparkline).data = list(self.cpu_history)
        self.query_one("#host-ram", Line).set_text(escape(host.memory_line()))
        if host.memory_total:
            self.query_one("#host-ram-bar", ProgressBar).update(
                total=host.memory_total / GIB, progress=(host.memory_used or 0) / GIB)
        engine = self.query_one("#host-engine", Line)
        engine.display = host.engine is not None  # no engine pid known: no line at all
        if host.engine is not None:
            engine.set_text(escape(host.engine.describe()))


class GpuPanel(Vertical):
    DEFAULT_CSS = "GpuPanel { height: auto; } GpuPanel #gpu-none { color: $text-muted; }"
    HEADER = "[b]GPUs[/b] (NVML, 1 Hz)"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine_pid: int | None = None
        """The engine process's pid, set by the panel's owner (the engine's `hello` carries it). The
        sampling thread reads it before each poll, to mark the engine's process on a GPU or, without a
        GPU, to show its CPU and memory. None: no engine known, no engine line."""
        self.memory_reports: dict[int, Memory] = {}

    def compose(self) -> ComposeResult:
        yield Line(self.HEADER, id="gpu-header")
        yield Line("reading NVML…", id="gpu-none")
        host = HostGauge(id="host-gauge")
        host.display = False
        yield host
        yield Static("", id="gpu-memory-report")

    def show(self, snapshots: list[GpuSnapshot] | tuple[GpuSnapshot, ...], reason: str | None,
             host: HostSnapshot | None = None) -> None:
        none = self.query_one("#gpu-none", Line)
        host_gauge = self.query_one(HostGauge)
        if not snapshots:
            none.set_text(escape(f"{reason or 'no NVIDIA GPU found'}; training and everything else still work."))
            none.display = True
            if host is not None:
                self.query_one("#gpu-header", Line).set_text("[b]CPU and memory[/b] (psutil, 1 Hz)")
                host_gauge.display = True
                host_gauge.update_host(host)
            return
        none.display = False
        host_gauge.display = False
        self.query_one("#gpu-header", Line).set_text(self.HEADER)
        for snap in snapshots:
            found = self.query(f"#gpu-{snap.index}")
            if found:
                gauge = found.first(GpuGauge)
            else:
                gauge = GpuGauge(snap.index)
                self.mount(gauge, before=self.query_one("#gpu-memory-report"))
            ranks = sorted(m.rank for m in self.memory_reports.values() if m.ranks > 1 and m.gpu_index == snap.index)
            gauge.call_after_refresh(gauge.update_snapshot, snap, ranks)  # a new gauge has no children until then

    def show_memory(self, m: Memory) -> None:
        """The trainer's memory report; on several ranks, a line per rank (each its newest report)."""
        self.memory_reports = {r: old for r, old in self.memory_reports.items() if r < m.ranks}
        self.memory_reports[m.rank] = m
        self.query_one("#gpu-memory-report", Static).update(memory_report_markup(list(self.memory_reports.values())))
