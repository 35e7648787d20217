"""Per-GPU gauges from NVML: memory used / total as a bar, utilization, temperature, power, and a short
utilization and memory history; plus the engine's memory report (before / peak / for LoRA)."""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Sparkline, Static

from workbench.gpu import GIB, GpuSnapshot
from workbench.protocol import Memory

HISTORY = 60


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
        yield Static(id="gpu-title")
        yield ProgressBar(total=100, show_eta=False, show_percentage=False, id="gpu-mem")
        yield Static(id="gpu-line")
        yield Sparkline(list(self.util_history), id="gpu-util-history")

    def update_snapshot(self, snap: GpuSnapshot) -> None:
        self.query_one("#gpu-title", Static).update(f"[b]GPU {snap.index}[/b] {snap.name}")
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
        self.query_one("#gpu-line", Static).update(
            f"mem {mem}  util {na(snap.utilization, '{}%')}  temp {na(snap.temperature, '{}°C')}  power {power}"
        )
        self.util_history.append(float(snap.utilization or 0))
        self.mem_history.append(100.0 * (snap.memory_fraction or 0.0))
        self.query_one("#gpu-util-history", Sparkline).data = list(self.util_history)


class GpuPanel(Vertical):
    DEFAULT_CSS = "GpuPanel { height: auto; } GpuPanel #gpu-none { color: $text-muted; }"

    def compose(self) -> ComposeResult:
        yield Static("[b]GPUs[/b] (NVML, 1 Hz)", id="gpu-header")
        yield Static("reading NVML…", id="gpu-none")
        yield Static("", id="gpu-memory-report")

    def show(self, snapshots: list[GpuSnapshot], reason: str | None) -> None:
        none = self.query_one("#gpu-none", Static)
        if not snapshots:
            none.update(f"{reason or 'no NVIDIA GPU found'}; training and everything else still work.")
            none.display = True
            return
        none.display = False
        for snap in snapshots:
            found = self.query(f"#gpu-{snap.index}")
            if found:
                gauge = found.first(GpuGauge)
            else:
                gauge = GpuGauge(snap.index)
                self.mount(gauge, before=self.query_one("#gpu-memory-report"))
            gauge.call_after_refresh(gauge.update_snapshot, snap)

    def show_memory(self, m: Memory) -> None:
        self.query_one("#gpu-memory-report", Static).update(
            f"[b]Trainer memory[/b] ({m.gpu_name}, {m.total_gib:.1f} GiB): reserved before training "
            f"{m.reserved_before_gib:.2f} GiB · peak {m.peak_gib:.2f} GiB ({m.peak_pct:.1f}%) · "
            f"for LoRA {m.lora_gib:.2f} GiB ({m.lora_pct:.1f}%)"
        )
