"""Pilot tests of the gauge column: without a GPU it shows the CPU, RAM and the engine process (real psutil);
with GPUs (fake NVML) the processes on each, the engine's marked. No engine process is started: the
engine's `hello` is handed to the Train pane as the bridge would, with the pid of a stand-in process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Sparkline, Static

from tests.ui import scenarios
from tests.ui.conftest import FOREIGN_PIDS, FakeNvml, NoGpuNvml, wait_for
from workbench.config import load_config, save_config
from workbench.gpu import GIB, MIB, GpuProcess, GpuSnapshot, HostSnapshot, ProcessUsage, sample_gpus
from workbench.protocol import Hello, Memory
from workbench.ui.app import WorkbenchApp
from workbench.ui.messages import EngineEvent
from workbench.ui.panes.train_pane import TrainPane
from workbench.ui.widgets.gpu_panel import HISTORY, GpuGauge, GpuPanel, HostGauge, Line, process_markup

ROOT = Path(__file__).resolve().parents[2]


def text_of(app: WorkbenchApp, selector: str) -> str:
    """The widget's text, or "" while it is not mounted yet: a gauge is counted as soon as it is mounted,
    its lines a frame later (CI once asked in between and got NoMatches instead of waiting)."""
    found = app.query(selector).results(Static)
    widget = next(found, None)
    return "" if widget is None else str(widget.render())


@pytest.fixture
def stand_in_engine() -> Iterator[subprocess.Popen[bytes]]:
    """A process that plays the engine: the panel reads its CPU and memory, or finds it on a GPU."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


class EngineOnGpu0(FakeNvml):
    """The two fake H100s, with the stand-in engine also on GPU 0."""

    def __init__(self, engine_pid: int) -> None:
        self.engine_pid = engine_pid

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[SimpleNamespace]:
        found = super().nvmlDeviceGetComputeRunningProcesses(h)
        return [SimpleNamespace(pid=self.engine_pid, usedGpuMemory=7 * 1024**3), *found] if h == 0 else found


async def test_without_a_gpu_the_panel_shows_cpu_ram_and_the_engine(
    demo_config_path: Path, stand_in_engine: subprocess.Popen[bytes]
) -> None:
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False, gpu_module=NoGpuNvml())
    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        app.action_pane("train")
        pane = app.query_one(TrainPane)
        panel = pane.query_one(GpuPanel)
        host = panel.query_one(HostGauge)
        # The second sample has a CPU rate (the first cannot).
        await wait_for(pilot, lambda: host.display and "%" in text_of(app, "#host-cpu"), 10,
                       lambda: f"a CPU reading, have {text_of(app, '#host-cpu')!r}")
        assert "CPU and memory" in text_of(app, "#gpu-header")
        reason = text_of(app, "#gpu-none")
        assert "no NVIDIA GPU found" in reason and "no NVIDIA driver" in reason
        assert "NVML Shared Library Not Found" in reason  # what NVML said
        assert text_of(app, "#host-cpu").startswith("CPU ") and "core" in text_of(app, "#host-cpu")
        assert text_of(app, "#host-ram").startswith("RAM ") and text_of(app, "#host-ram").endswith(" GiB")
        assert 0 < app.query_one("#host-ram-bar").progress <= app.query_one("#host-ram-bar").total
        assert not app.query_one("#host-engine").display  # no engine pid known: no engine line
        assert not panel.query(GpuGauge)

        app.post_message(EngineEvent(Hello(pid=stand_in_engine.pid, device="cpu")))  # as the engine says it
        await pilot.pause()
        assert panel.engine_pid == stand_in_engine.pid
        engine_line = f"engine pid {stand_in_engine.pid}: CPU "
        await wait_for(pilot, lambda: app.query_one("#host-engine").display
                       and text_of(app, "#host-engine").startswith(engine_line)
                       and "…" not in text_of(app, "#host-engine"), 10,
                       lambda: f"the engine line, have {text_of(app, '#host-engine')!r}")
        text = text_of(app, "#host-engine")
        assert "RSS " in text and " MiB" in text and "thread" in text

        # Updated in place every second, never rebuilt; the CPU history grows.
        widgets = list(panel.query("*"))
        history = list(app.query_one("#host-cpu-history", Sparkline).data or [])
        await pilot.pause(2.2)
        assert list(panel.query("*")) == widgets
        assert list(app.query_one("#host-cpu-history", Sparkline).data or []) != history

        stand_in_engine.kill()
        stand_in_engine.wait()
        await wait_for(pilot, lambda: text_of(app, "#host-engine")
                       == f"engine pid {stand_in_engine.pid} is not running", 10, "the engine gone")


async def test_with_gpus_the_panel_lists_the_processes_on_each(
    demo_config_path: Path, stand_in_engine: subprocess.Popen[bytes]
) -> None:
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False,
                       gpu_module=EngineOnGpu0(stand_in_engine.pid))
    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        app.action_pane("train")
        pane = app.query_one(TrainPane)
        panel = pane.query_one(GpuPanel)
        await wait_for(pilot, lambda: len(panel.query(GpuGauge)) == 2 and "pid" in text_of(app, "#gpu-1 #gpu-procs"),
                       10, "two gauges with processes")
        assert not panel.query_one(HostGauge).display
        assert not app.query_one("#gpu-none").display
        # Someone else's 30 GiB on GPU 1 (owner unreadable: a pid psutil cannot see), biggest first; a
        # process whose memory NVML does not report; graphics processes NotSupported on that GPU.
        assert text_of(app, "#gpu-1 #gpu-procs").splitlines() == [
            f" 30.0 GiB  user n/a  pid {FOREIGN_PIDS[1]}",
            f"      n/a  user n/a  pid {FOREIGN_PIDS[2]}",
        ]
        # Before the engine says hello its process is just another user's (this user's) process.
        gpu0 = text_of(app, "#gpu-0 #gpu-procs").splitlines()
        assert gpu0[0] == f" 11.0 GiB  user n/a  pid {FOREIGN_PIDS[0]}"
        assert f"pid {stand_in_engine.pid}" in gpu0[1] and "engine" not in gpu0[1]

        app.post_message(EngineEvent(Hello(pid=stand_in_engine.pid, device="cuda:0 (NVIDIA H100 80GB HBM3)")))
        await wait_for(pilot, lambda: text_of(app, "#gpu-0 #gpu-procs").startswith("  7.0 GiB  engine"), 10,
                       lambda: f"the engine marked, have {text_of(app, '#gpu-0 #gpu-procs')!r}")
        gpu0 = text_of(app, "#gpu-0 #gpu-procs").splitlines()
        assert len(gpu0) == 2
        assert gpu0[0].startswith(f"  7.0 GiB  engine  pid {stand_in_engine.pid}  python")  # the engine first
        assert gpu0[1] == f" 11.0 GiB  user n/a  pid {FOREIGN_PIDS[0]}"
        assert app.query_one("#gpu-0 #gpu-procs", Line)._shown.startswith("[b $success]")  # it stands out
        assert not panel.query_one(HostGauge).display  # with GPUs the host lines stay hidden


async def test_unchanged_lines_are_not_updated(demo_config_path: Path) -> None:
    """The fake GPUs read the same every second: their lines must not be re-rendered (a layout pass each)."""
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False, gpu_module=FakeNvml())
    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        panel = app.query_one(TrainPane).query_one(GpuPanel)
        await wait_for(pilot, lambda: len(panel.query(GpuGauge)) == 2 and "GiB" in text_of(app, "#gpu-1 #gpu-line"),
                       10, "two gauges")
        updates: list[str] = []
        for line in panel.query(Line):
            original = line.update

            def counting(content: object = "", *, layout: bool = True, _id: str = str(line.id),
                         _original: object = original) -> None:
                updates.append(_id)
                _original(content, layout=layout)  # type: ignore[operator]

            line.update = counting  # type: ignore[method-assign]
        panel.show([], "no NVIDIA GPU found")  # one real change, to show the counting works
        await pilot.pause(2.5)  # two more samples, identical to the last
        assert updates == ["gpu-none"]


# ------------------------------------------------------------------------------------------ snapshots


def _snap_app(tmp_path: Path, gpu_module: object) -> WorkbenchApp:
    config = load_config(ROOT / "configs" / "demo.toml")
    config.output.runs_dir = str(tmp_path / "runs")
    path = tmp_path / "configs" / "demo.toml"
    save_config(config, path)
    app = WorkbenchApp(config_path=path, start_engine=False, gpu_module=gpu_module)
    app.config_path = Path("configs/demo.toml")  # the status bar shows a stable path
    return app


async def _train_pane_with_gauges_stopped(pilot: Pilot[int], tmp_path: Path, with_memory_report: bool) -> Any:
    """The Train pane mid-run, its sampler stopped: what the gauges show is then set by the test alone."""
    app = pilot.app
    await app.panes_mounted()
    app.device = "cpu"
    app.set_engine_state("ready")
    app.action_pane("train")
    await pilot.pause()
    pane = app.query_one(TrainPane)
    for event in scenarios.training_events(str(tmp_path / "runs" / "demo")):
        if with_memory_report or not isinstance(event, Memory):  # no trainer GPU memory on a CPU
            pane.handle_event(event)
    await pilot.pause(1.5)  # real samples arrive and build the widgets
    pane._gpu_stop.set()
    await pilot.pause(0.3)
    pane.query_one("#loss-chart").draw_now()
    return pane


def test_train_pane_without_a_gpu(snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    async def before(pilot: Pilot[int]) -> None:
        pane = await _train_pane_with_gauges_stopped(pilot, tmp_path, with_memory_report=False)
        panel = pane.query_one(GpuPanel)
        host = panel.query_one(HostGauge)
        # A fixed history: busy while training, a dip at each evaluation.
        host.cpu_history.extend(40.0 if i % 25 in (23, 24) else 88.0 + (i * 7) % 9 for i in range(HISTORY))
        _, reason = sample_gpus(NoGpuNvml())
        panel.show([], reason, HostSnapshot(
            cpu_percent=93.0, cpu_count=2, memory_used=int(5.4 * GIB), memory_total=int(23.5 * GIB),
            engine=ProcessUsage(pid=4242, name="python", cpu_percent=187.0, rss=1380 * MIB, threads=9)))
        await pilot.pause()
    assert snap_compare(_snap_app(tmp_path, NoGpuNvml()), terminal_size=(160, 45), run_before=before)


def test_train_pane_with_other_users_on_the_gpus(snap_compare: Callable[..., bool], tmp_path: Path) -> None:
    async def before(pilot: Pilot[int]) -> None:
        pane = await _train_pane_with_gauges_stopped(pilot, tmp_path, with_memory_report=True)
        for gauge in pane.query(GpuGauge):
            gauge.util_history.extend([0.0] * HISTORY)
        gpu0, gpu1 = sample_gpus(FakeNvml())[0]
        gpu0 = replace(gpu0, processes=(
            GpuProcess(pid=4242, gpu_memory=int(7.5 * GIB), user="me", name="python", engine=True),
            GpuProcess(pid=5120, gpu_memory=int(4.2 * GIB), user="bob", name="jupyter-kernel"),
        ))
        gpu1 = replace(gpu1, processes=(
            GpuProcess(pid=31337, gpu_memory=30 * GIB, user="alice", name="python3"),
            GpuProcess(pid=FOREIGN_PIDS[1], gpu_memory=12 * GIB),  # another container's: owner unknown
        ))
        pane.query_one(GpuPanel).show([gpu0, gpu1], None)
        await pilot.pause()
    assert snap_compare(_snap_app(tmp_path, FakeNvml()), terminal_size=(160, 45), run_before=before)


def test_process_markup_styles_every_engine_line_and_escapes_names() -> None:
    snap = GpuSnapshot(index=0, name="g", processes=(
        GpuProcess(pid=1, gpu_memory=GIB, engine=True, name="python"),
        GpuProcess(pid=2, gpu_memory=GIB, engine=True, name="python"),
        GpuProcess(pid=3, gpu_memory=2 * GIB, user="alice", name="[b]worker"),  # markup in a name stays text
    ))
    lines = process_markup(snap).splitlines()
    assert lines[0].startswith("[b $success]") and lines[1].startswith("[b $success]")
    assert lines[2] == r"  2.0 GiB  alice  pid 3  \[b]worker"
    assert process_markup(GpuSnapshot(index=0, name="g")) == "[$text-muted]processes n/a (NVML cannot list them here)[/]"


async def test_a_line_asks_for_a_layout_only_when_its_height_may_change() -> None:
    from textual.app import App, ComposeResult

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield Line("CPU 12% of 2 cores", id="line")

    app = One()
    async with app.run_test(size=(40, 10)) as pilot:
        line = app.query_one(Line)
        layouts: list[bool] = []
        original = line.update

        def recording(content: object = "", *, layout: bool = True) -> None:
            layouts.append(layout)
            original(content, layout=layout)  # type: ignore[arg-type]

        line.update = recording  # type: ignore[method-assign]
        line.set_text("CPU 97% of 2 cores")  # a number changed: same height
        line.set_text("CPU 97% of 2 cores")  # nothing changed: no update at all
        line.set_text("CPU 97% of 2 cores\nengine pid 1")  # one more line
        line.set_text("x" * 45)  # wider than the widget: it wraps
        await pilot.pause()
        assert layouts == [False, True, True]
        assert line.size.height == 2  # the wrapped line was laid out


async def test_a_run_on_two_gpus_names_its_rank_on_each_gauge_and_reports_memory_per_rank(tmp_path: Path) -> None:
    """Rank 0 writes one memory report per rank (each rank's own GPU, gathered): the report has a line per
    rank, and each GPU's gauge says which rank of the run trains on it."""
    app = _snap_app(tmp_path, FakeNvml())
    async with app.run_test(size=(160, 45)) as pilot:
        pane = await _train_pane_with_gauges_stopped(pilot, tmp_path, with_memory_report=False)
        for rank in (0, 1):
            pane.handle_event(Memory(run="demo", phase="step", gpu_name="NVIDIA H100 80GB HBM3", total_gib=79.1,
                                     reserved_before_gib=5.9, reserved_gib=7.0, peak_gib=7.5 + rank,
                                     lora_gib=1.6 + rank, rank=rank, ranks=2, gpu_index=rank))
        gpus, _ = sample_gpus(FakeNvml())
        pane.query_one(GpuPanel).show(gpus, None)
        await pilot.pause(0.3)
        report = text_of(app, "#gpu-memory-report")
        assert "Trainer memory, 2 ranks" in report
        assert "rank 0 · GPU 0 NVIDIA H100 80GB HBM3" in report and "rank 1 · GPU 1" in report
        assert "8.50 GiB" in report  # rank 1's own peak, not rank 0's
        assert "rank 0 of the run" in text_of(app, "#gpu-0 #gpu-title")
        assert "rank 1 of the run" in text_of(app, "#gpu-1 #gpu-title")
