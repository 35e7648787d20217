"""workbench.gpu without a GPU: the host's CPU, RAM and the engine process, with the real psutil on this
machine (structure and ranges) and with a fake one (exact arithmetic, unreadable values)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import namedtuple
from contextlib import nullcontext
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from workbench import gpu
from workbench.gpu import GIB, MIB, HostSampler, HostSnapshot, ProcessUsage, Reading, gpus_report, sample_all


class NVMLError_LibraryNotFound(Exception):  # the class name pynvml uses
    pass


class NoDriver:
    def nvmlInit(self) -> None:
        raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


# ------------------------------------------------------------------------------------- real psutil


def test_real_host_structure_and_ranges() -> None:
    sampler = HostSampler()
    first = sampler.sample(engine_pid=os.getpid())
    assert first is not None
    assert first.cpu_percent is None  # a rate needs two readings
    assert first.engine is not None and first.engine.cpu_percent is None
    _spin(0.2)  # this process is the "engine": make it busy
    second = sampler.sample(engine_pid=os.getpid())
    assert second is not None
    assert second.cpu_percent is not None and 0.0 <= second.cpu_percent <= 100.0
    assert second.cpu_count is not None and second.cpu_count >= 1
    assert second.memory_total is not None and second.memory_total > 64 * MIB
    assert second.memory_used is not None and 0 < second.memory_used <= second.memory_total
    fraction = second.memory_fraction
    assert fraction is not None and 0.0 < fraction <= 1.0
    engine = second.engine
    assert engine is not None and engine.running and engine.pid == os.getpid()
    assert engine.cpu_percent is not None
    # Spinning for 0.2 s of a ~0.2 s window: well above idle, and at most a few cores' worth.
    assert 20.0 <= engine.cpu_percent <= 100.0 * (second.cpu_count + 1)
    assert engine.rss is not None and 1 * MIB < engine.rss < second.memory_total
    assert engine.threads is not None and engine.threads >= 1
    assert engine.name
    assert second.cpu_line().startswith("CPU ") and "core" in second.cpu_line()
    assert second.memory_line().startswith("RAM ") and second.memory_line().endswith(" GiB")
    assert engine.describe().startswith(f"engine pid {os.getpid()}: CPU ")


def test_an_engine_that_ends_and_one_that_never_was() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    sampler = HostSampler()
    try:
        host = sampler.sample(engine_pid=child.pid)
        assert host is not None and host.engine is not None and host.engine.running
    finally:
        child.kill()
        child.wait()
    host = sampler.sample(engine_pid=child.pid)
    assert host is not None and host.engine == ProcessUsage(pid=child.pid, running=False)
    assert host.engine.describe() == f"engine pid {child.pid} is not running"
    gone = HostSampler().sample(engine_pid=5_000_001)  # above the kernel's pid limit
    assert gone is not None and gone.engine is not None and not gone.engine.running


def test_no_engine_pid_no_engine() -> None:
    host = HostSampler().sample()
    assert host is not None and host.engine is None
    assert "\n" not in host.describe()


def test_sample_all_without_a_gpu_reads_the_cpu_rate() -> None:
    reading = sample_all(NoDriver(), engine_pid=os.getpid(), cpu_window_s=0.05)
    assert reading.gpus == ()
    assert reading.reason is not None and "no NVIDIA driver" in reading.reason
    assert "NVML Shared Library Not Found" in reading.reason  # NVML's own words too
    host = reading.host
    assert host is not None and host.cpu_percent is not None and 0.0 <= host.cpu_percent <= 100.0
    assert host.engine is not None and host.engine.cpu_percent is not None
    lines = gpus_report(reading).splitlines()
    assert lines[0] == reading.reason
    assert lines[1].startswith("CPU ") and "RAM " in lines[1]
    assert lines[2].startswith(f"engine pid {os.getpid()}: ")


def test_without_psutil_there_is_no_host_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` raises ImportError
    sampler = HostSampler()
    assert sampler.sample(os.getpid()) is None
    assert sampler.unavailable and sampler.error == "psutil is not installed"
    reading = sample_all(NoDriver(), cpu_window_s=0.0)
    assert reading.host is None
    assert gpus_report(reading) == reading.reason


# ------------------------------------------------------------------------------------- fake psutil

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")


class AccessDenied(Exception):
    pass


class FakePsutil:
    def __init__(self) -> None:
        self.times = [CpuTimes(10, 0, 10, 70, 10, 0, 0, 0, 0, 0)]
        self.engine_cpu = [SimpleNamespace(user=1.0, system=0.5)]
        self.memory_info: Any = SimpleNamespace(rss=300 * MIB)
        self.status = "running"

    def cpu_times(self) -> CpuTimes:
        return self.times.pop(0)

    def cpu_count(self) -> int:
        return 1

    def virtual_memory(self) -> SimpleNamespace:
        return SimpleNamespace(total=16 * GIB, available=10 * GIB, used=3 * GIB, free=1 * GIB)

    def Process(self, pid: int) -> SimpleNamespace:
        def memory_info() -> Any:
            if isinstance(self.memory_info, Exception):
                raise self.memory_info
            return self.memory_info

        return SimpleNamespace(
            pid=pid, is_running=lambda: True, oneshot=nullcontext, name=lambda: "python", status=lambda: self.status,
            cpu_times=lambda: self.engine_cpu.pop(0), memory_info=memory_info, num_threads=lambda: 1,
        )


def test_cpu_and_engine_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    ps = FakePsutil()
    # busy = total - idle - iowait; guest time is inside user time and is not counted twice.
    ps.times.append(CpuTimes(30, 0, 20, 80, 10, 0, 0, 0, 20, 0))  # busy 20 -> 50, total 100 -> 140
    ps.engine_cpu.append(SimpleNamespace(user=2.0, system=1.0))  # 1.5 CPU seconds...
    clock = iter([100.0, 102.0])  # ...in 2 s of wall time
    monkeypatch.setattr(gpu.time, "monotonic", lambda: next(clock))
    sampler = HostSampler(ps)
    first = sampler.sample(engine_pid=7)
    assert first == HostSnapshot(cpu_percent=None, cpu_count=1, memory_used=6 * GIB, memory_total=16 * GIB,
                                 engine=ProcessUsage(pid=7, name="python", rss=300 * MIB, threads=1))
    second = sampler.sample(engine_pid=7)
    assert second is not None
    assert second.cpu_percent == pytest.approx(100.0 * 30 / 40)
    assert second.engine is not None and second.engine.cpu_percent == pytest.approx(75.0)
    assert second.cpu_line() == "CPU 75% of 1 core"
    assert second.memory_line() == "RAM 6.0/16.0 GiB"  # total - available, not psutil's "used"
    assert second.describe() == "CPU 75% of 1 core  RAM 6.0/16.0 GiB\nengine pid 7: CPU 75% · RSS 300 MiB · 1 thread"


def test_a_new_engine_pid_starts_its_rate_over() -> None:
    ps = FakePsutil()
    ps.times.append(ps.times[0])
    ps.engine_cpu.append(SimpleNamespace(user=9.0, system=9.0))
    sampler = HostSampler(ps)
    sampler.sample(engine_pid=7)
    restarted = sampler.sample(engine_pid=8)  # the engine was restarted: no rate against the old one
    assert restarted is not None and restarted.engine is not None
    assert restarted.engine.pid == 8 and restarted.engine.cpu_percent is None


def test_unreadable_engine_values() -> None:
    ps = FakePsutil()
    ps.memory_info = AccessDenied(7)
    host = HostSampler(ps).sample(engine_pid=7)
    assert host is not None and host.engine is not None
    assert host.engine.rss is None and host.engine.threads == 1
    assert host.engine.describe() == "engine pid 7: CPU … · RSS n/a · 1 thread"


def test_host_lines_when_nothing_is_known() -> None:
    empty = HostSnapshot()
    assert empty.cpu_line() == "CPU …"
    assert empty.memory_line() == "RAM n/a"
    assert empty.memory_fraction is None
    assert HostSnapshot(cpu_percent=12.4, cpu_count=16).cpu_line() == "CPU 12% of 16 cores"


def test_reading_defaults() -> None:
    assert Reading(()) == Reading(gpus=(), reason=None, host=None)


def test_importing_gpu_imports_neither_psutil_nor_pynvml() -> None:
    """Both load in the sampling thread, on first use: the module is on the UI's start-up path."""
    code = (
        "import json, sys\n"
        "import workbench.gpu, workbench.ui.widgets.gpu_panel, workbench.ui.messages\n"
        "print(json.dumps(sorted(m for m in ('psutil', 'pynvml') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    # The same probe sees psutil once a sample was taken (so the check above can fail).
    code = code.replace("print(", "workbench.gpu.HostSampler().sample()\nprint(")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.strip().splitlines()[-1] == '["psutil"]'


def test_the_gpus_command_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.cli import main

    assert main(["gpus"]) == 0
    lines = capsys.readouterr().out.splitlines()
    if lines[0].startswith("GPU 0: "):  # a machine with a GPU: each GPU, then its processes, indented
        assert all(line.startswith(("GPU ", "  ")) for line in lines)
    else:
        assert lines[0].startswith("no NVIDIA GPU found")
        assert lines[1].startswith("CPU ") and " of " in lines[1] and "RAM " in lines[1]


def test_an_engine_that_ended_but_was_not_reaped_is_not_running() -> None:
    ps = FakePsutil()
    ps.status = "zombie"
    host = HostSampler(ps).sample(engine_pid=7)
    assert host is not None and host.engine is not None and not host.engine.running
    assert host.engine.describe() == "engine pid 7 is not running"


def test_a_real_zombie() -> None:
    """A child that exited and is not waited for yet: psutil still finds it, as a zombie."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 20
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        host = HostSampler().sample(engine_pid=child.pid)
        assert host is not None and host.engine is not None and not host.engine.running
    finally:
        child.wait()
