"""workbench.gpu with a fake pynvml module: snapshots, partial failures, no driver, polling, the processes on
each GPU (owners from a fake psutil and from the real one), the `workbench gpus` text, peak TFLOP/s."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from workbench.gpu import (
    GIB,
    MIB,
    GpuProcess,
    GpuSnapshot,
    Nvml,
    Reading,
    gpus_report,
    peak_tflops,
    poll_gpus,
    sample_gpus,
)


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):  # the class name pynvml uses
    pass


class FakeNvml:
    """Two devices: an H100 that answers everything and a card whose power reading is not supported.

    A device's "compute" / "graphics" entry is a list of (pid, bytes or None), or an exception to raise;
    a device without them has no processes."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, devices: list[dict[str, Any]] | None = None, init_error: Exception | None = None) -> None:
        self.devices = devices if devices is not None else [
            {"name": b"NVIDIA H100 80GB HBM3", "used": 10 * GIB, "total": 80 * GIB, "util": 87, "temp": 61,
             "power": 312_500, "limit": 700_000},
            {"name": "NVIDIA L4", "used": 1 * GIB, "total": 24 * GIB, "util": 3, "temp": 40,
             "power": NVMLError("Not Supported"), "limit": 72_000},
        ]
        self.init_error = init_error
        self.init_calls = 0
        self.shutdown_calls = 0
        self.memory_calls = 0

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def _get(self, handle: int, key: str) -> Any:
        value = self.devices[handle][key]
        if isinstance(value, Exception):
            raise value
        return value

    def nvmlDeviceGetName(self, h: int) -> Any:
        return self._get(h, "name")

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        self.memory_calls += 1
        used, total = self._get(h, "used"), self._get(h, "total")
        return SimpleNamespace(used=used, total=total, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=self._get(h, "util"), memory=0)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._get(h, "temp")

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._get(h, "power")

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return self._get(h, "limit")

    def _procs(self, h: int, key: str) -> list[SimpleNamespace]:
        found = self.devices[h].get(key, [])
        if isinstance(found, Exception):
            raise found
        return [SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF) for pid, used in found]

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[SimpleNamespace]:
        return self._procs(h, "compute")

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: int) -> list[SimpleNamespace]:
        return self._procs(h, "graphics")


class FakeNvmlWithoutProcessCalls(FakeNvml):
    """An old pynvml that has no process calls at all."""

    def __getattribute__(self, name: str) -> Any:
        if name.endswith("RunningProcesses"):
            raise AttributeError(name)
        return super().__getattribute__(name)


class NoSuchProcess(Exception):
    pass


class AccessDenied(Exception):
    pass


class FakePsutil:
    """The part of psutil that Owners uses. `table`: pid -> {"user", "name", "parent"}; a value that is
    an exception is raised when read; a pid not in the table does not exist (another PID namespace)."""

    def __init__(self, table: dict[int, dict[str, Any]]) -> None:
        self.table = table
        self.process_calls: list[int] = []

    def Process(self, pid: int) -> Any:
        self.process_calls.append(pid)
        if pid not in self.table:
            raise NoSuchProcess(pid)
        info = self.table[pid]

        def read(key: str) -> Any:
            value = info.get(key)
            if isinstance(value, Exception):
                raise value
            return value

        def parents() -> list[SimpleNamespace]:
            chain, parent = [], read("parent")
            while parent is not None:
                chain.append(SimpleNamespace(pid=parent))
                parent = self.table.get(parent, {}).get("parent")
            return chain

        return SimpleNamespace(username=lambda: read("user"), name=lambda: read("name"), parents=parents)


def test_sample_two_devices() -> None:
    fake = FakeNvml()
    nvml = Nvml(fake)
    snaps = nvml.sample()
    assert snaps == [
        GpuSnapshot(index=0, name="NVIDIA H100 80GB HBM3", memory_used=10 * GIB, memory_total=80 * GIB,
                    utilization=87, temperature=61, power_w=312.5, power_limit_w=700.0, processes=()),
        GpuSnapshot(index=1, name="NVIDIA L4", memory_used=1 * GIB, memory_total=24 * GIB, utilization=3,
                    temperature=40, power_w=None, power_limit_w=72.0, processes=()),
    ]
    assert nvml.error is None
    assert snaps[0].memory_fraction == 0.125
    nvml.sample()
    assert fake.init_calls == 1  # initialised once
    nvml.close()
    nvml.close()
    assert fake.shutdown_calls == 1


def test_every_reading_may_fail_alone() -> None:
    err = NVMLError("Not Supported")
    fake = FakeNvml([{"name": err, "used": err, "total": err, "util": err, "temp": err, "power": err, "limit": err,
                      "compute": err, "graphics": NVMLError("No Permission")}])
    (snap,) = Nvml(fake).sample()
    assert snap == GpuSnapshot(index=0, name="NVIDIA GPU")
    assert snap.memory_fraction is None
    assert snap.processes is None  # unknown, which is not the same as "none"
    assert snap.describe() == "GPU 0: NVIDIA GPU  mem n/a  util n/a  temp n/a  power n/a"
    assert snap.process_lines() == ["processes n/a (NVML cannot list them here)"]


@pytest.mark.parametrize(
    ("error", "reason_part"),
    [
        (NVMLError_LibraryNotFound("NVML Shared Library Not Found"), "no NVIDIA driver"),
        (NVMLError("Driver Not Loaded"), "no NVIDIA driver"),
        (ImportError("No module named 'pynvml'"), "pynvml is not installed"),
        (NVMLError("Unknown Error"), "Unknown Error"),
    ],
)
def test_init_failure_gives_no_snapshots_and_a_reason(error: Exception, reason_part: str) -> None:
    nvml = Nvml(FakeNvml(init_error=error))
    assert nvml.sample() == []
    assert nvml.error is not None
    assert "no NVIDIA GPU" in nvml.error and reason_part in nvml.error
    snaps, reason = sample_gpus(FakeNvml(init_error=error))
    assert snaps == []
    assert reason is not None and "no NVIDIA GPU" in reason


def test_sample_gpus_reads_once_and_shuts_down() -> None:
    fake = FakeNvml()
    snaps, reason = sample_gpus(fake)
    assert reason is None and len(snaps) == 2
    assert fake.shutdown_calls == 1


def test_zero_devices() -> None:
    snaps, reason = sample_gpus(FakeNvml(devices=[]))
    assert snaps == [] and reason == "no NVIDIA GPU found"


def test_poll_calls_on_sample_until_stopped() -> None:
    fake = FakeNvml()
    stop = threading.Event()
    seen: list[tuple[int, str | None, object]] = []
    asked: list[int] = []

    def on_sample(reading: Reading) -> None:
        seen.append((len(reading.gpus), reading.reason, reading.host))
        if len(seen) == 5:
            stop.set()

    def engine_pid() -> int:
        asked.append(1)
        return 4242

    worker = threading.Thread(target=poll_gpus, args=(on_sample, stop, 0.01, fake),
                              kwargs={"engine_pid": engine_pid})
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert seen == [(2, None, None)] * 5  # with GPUs the host is not read
    assert fake.memory_calls == 2 * 5
    assert fake.shutdown_calls == 1
    assert len(asked) == 5  # the engine's pid is asked for before every poll: it may change


def test_poll_without_a_driver_reads_the_host_until_stopped() -> None:
    fake = FakeNvml(init_error=NVMLError("Driver Not Loaded"))
    stop = threading.Event()
    seen: list[Reading] = []

    def on_sample(reading: Reading) -> None:
        seen.append(reading)
        if len(seen) == 3:
            stop.set()

    poll_gpus(on_sample, stop, 0.01, fake, engine_pid=os.getpid)
    assert len(seen) == 3
    for reading in seen:
        assert reading.gpus == ()
        assert reading.reason is not None and "no NVIDIA driver" in reading.reason
        assert reading.host is not None and reading.host.engine is not None
        assert reading.host.engine.pid == os.getpid()
    assert fake.init_calls == 1  # NVML is not asked again every second


def test_poll_returns_at_once_without_a_driver_and_without_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` raises ImportError
    stop = threading.Event()
    seen: list[Reading] = []
    poll_gpus(seen.append, stop, 0.01, FakeNvml(init_error=NVMLError("Driver Not Loaded")))
    assert len(seen) == 1
    assert seen[0].gpus == () and seen[0].host is None
    assert seen[0].reason is not None and "no NVIDIA GPU" in seen[0].reason
    assert not stop.is_set()


def test_poll_does_nothing_when_already_stopped() -> None:
    stop = threading.Event()
    stop.set()
    seen: list[Any] = []
    poll_gpus(seen.append, stop, 0.01, FakeNvml())
    assert seen == []


def test_describe() -> None:
    full = GpuSnapshot(index=0, name="NVIDIA H100 80GB HBM3", memory_used=10 * GIB, memory_total=80 * GIB,
                       utilization=87, temperature=61, power_w=312.5, power_limit_w=700.0)
    assert full.describe() == (
        "GPU 0: NVIDIA H100 80GB HBM3  mem 10.0/80.0 GiB  util 87%  temp 61°C  power 312 W/700 W"
    )
    partial = GpuSnapshot(index=1, name="NVIDIA L4", memory_used=GIB, memory_total=None, utilization=None,
                          temperature=40, power_w=None, power_limit_w=72.0)
    text = partial.describe()
    assert "mem n/a" in text and "util n/a" in text and "temp 40°C" in text and "power n/a" in text
    assert "72" not in text
    no_limit = GpuSnapshot(index=2, name="x", power_w=50.0)
    assert no_limit.describe().endswith("power 50 W")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA GH200 480GB", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A10G", 70.0),
        ("NVIDIA A10", 125.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA GeForce RTX 4090", 165.0),
        ("Tesla T4", None),
        ("", None),
        ("cpu", None),
    ],
)
def test_peak_tflops(name: str, expected: float | None) -> None:
    assert peak_tflops(name) == expected


def test_peak_tflops_l40_is_not_an_l4() -> None:
    assert peak_tflops("NVIDIA L40") != peak_tflops("NVIDIA L4")


# ----------------------------------------------------------------------------- processes on the GPUs


def _device(**extra: Any) -> dict[str, Any]:
    return {"name": "NVIDIA H200", "used": 60 * GIB, "total": 141 * GIB, "util": 90, "temp": 50,
            "power": 500_000, "limit": 700_000, **extra}


PSUTIL_TABLE: dict[int, dict[str, Any]] = {
    1: {"user": "root", "name": "systemd", "parent": None},
    100: {"user": "me", "name": "python", "parent": 1},  # the engine
    101: {"user": "me", "name": "python", "parent": 100},  # a worker the engine started (torchrun)
    200: {"user": "alice", "name": "python3", "parent": 1},
    300: {"user": AccessDenied(300), "name": "vllm", "parent": 1},  # owner hidden (hidepid)
    # 400 is not in the table: a pid from another PID namespace (another container)
}


def test_processes_with_owners_engine_marked_and_nvml_errors() -> None:
    fake = FakeNvml([
        _device(compute=[(100, 20 * GIB), (101, 5 * GIB), (200, 30 * GIB), (300, 2 * GIB), (400, None)],
                graphics=[(200, 30 * GIB)]),  # alice's process has both contexts: listed once
        _device(compute=NVMLError("Not Supported"), graphics=[(200, 512 * MIB)]),
        _device(compute=NVMLError("Not Supported"), graphics=NVMLError("No Permission")),
    ])
    ps = FakePsutil(PSUTIL_TABLE)
    gpu0, gpu1, gpu2 = Nvml(fake, ps).sample(engine_pid=100)
    assert sorted(gpu0.processes or (), key=lambda p: p.pid) == [
        GpuProcess(pid=100, gpu_memory=20 * GIB, user="me", name="python", engine=True),
        GpuProcess(pid=101, gpu_memory=5 * GIB, user="me", name="python", engine=True),
        GpuProcess(pid=200, gpu_memory=30 * GIB, user="alice", name="python3"),
        GpuProcess(pid=300, gpu_memory=2 * GIB, user=None, name="vllm"),
        GpuProcess(pid=400, gpu_memory=None, user=None, name=None),
    ]
    # The engine's processes first, then by memory: a user sees at once that alice holds 30 GiB.
    assert gpu0.process_lines() == [
        " 20.0 GiB  engine  pid 100  python",
        "  5.0 GiB  engine  pid 101  python",
        " 30.0 GiB  alice  pid 200  python3",
        "  2.0 GiB  user n/a  pid 300  vllm",
        "      n/a  user n/a  pid 400",
    ]
    # Compute not supported but graphics listed: the list is what NVML could say, not "n/a".
    assert gpu1.processes == (GpuProcess(pid=200, gpu_memory=512 * MIB, user="alice", name="python3"),)
    assert gpu1.process_lines() == ["  512 MiB  alice  pid 200  python3"]
    assert gpu2.processes is None


def test_no_engine_pid_marks_nothing() -> None:
    fake = FakeNvml([_device(compute=[(100, GIB), (101, GIB)])])
    (snap,) = Nvml(fake, FakePsutil(PSUTIL_TABLE)).sample()
    assert snap.processes is not None and not any(p.engine for p in snap.processes)
    assert [p.user for p in snap.processes] == ["me", "me"]


def test_an_empty_gpu_says_so() -> None:
    (snap,) = Nvml(FakeNvml([_device(compute=[], graphics=[])]), FakePsutil({})).sample()
    assert snap.processes == ()
    assert snap.process_lines() == ["no processes"]


def test_a_pynvml_without_process_calls() -> None:
    fake = FakeNvmlWithoutProcessCalls([_device()])
    (snap,) = Nvml(fake, FakePsutil({})).sample()
    assert snap.processes is None
    assert snap.memory_used == 60 * GIB  # the rest still reads


def test_owners_are_read_once_per_process_and_forgotten_when_it_leaves() -> None:
    device = _device(compute=[(200, GIB), (400, GIB)])
    fake = FakeNvml([device])
    ps = FakePsutil(PSUTIL_TABLE)
    nvml = Nvml(fake, ps)
    for _ in range(3):
        nvml.sample()
    assert sorted(ps.process_calls) == [200, 400]  # a missing pid is not asked for again either
    device["compute"] = [(400, GIB)]
    nvml.sample()
    device["compute"] = [(200, GIB)]  # back (or a new process with a reused pid): asked again
    nvml.sample()
    assert sorted(ps.process_calls) == [200, 200, 400]


def test_process_lines_are_capped() -> None:
    procs = tuple(GpuProcess(pid=1000 + i, gpu_memory=(i + 1) * GIB, user="bob", name="x") for i in range(8))
    snap = GpuSnapshot(index=0, name="g", processes=procs)
    lines = snap.process_lines(limit=5)
    assert len(lines) == 6
    assert lines[0] == "  8.0 GiB  bob  pid 1007  x"
    assert lines[-1] == "  6.0 GiB  +3 more processes"  # 1 + 2 + 3 GiB
    assert len(snap.process_lines(limit=None)) == 8


def test_owner_of_a_real_process_with_the_real_psutil() -> None:
    """This test's own process and a child it starts, read with the real psutil on this machine."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        fake = FakeNvml([_device(compute=[(os.getpid(), 3 * GIB), (child.pid, GIB), (5_000_001, 2 * GIB)])])
        (snap,) = Nvml(fake).sample(engine_pid=os.getpid())
        by_pid = {p.pid: p for p in snap.processes or ()}
        me = pwd.getpwuid(os.getuid()).pw_name
        assert by_pid[os.getpid()] == GpuProcess(pid=os.getpid(), gpu_memory=3 * GIB, user=me,
                                                 name=by_pid[os.getpid()].name, engine=True)
        assert by_pid[os.getpid()].name  # e.g. "python"
        assert by_pid[child.pid].engine and by_pid[child.pid].user == me  # a child of the engine is the engine's
        # Above the kernel's pid limit: never a process here, as a pid from another container.
        assert by_pid[5_000_001] == GpuProcess(pid=5_000_001, gpu_memory=2 * GIB)
    finally:
        child.kill()
        child.wait()


def test_gpus_report() -> None:
    snaps = Nvml(FakeNvml([_device(compute=[(200, 30 * GIB)]), _device(compute=NVMLError("x"))]),
                 FakePsutil(PSUTIL_TABLE)).sample()
    assert gpus_report(Reading(tuple(snaps))).splitlines() == [
        "GPU 0: NVIDIA H200  mem 60.0/141.0 GiB  util 90%  temp 50°C  power 500 W/700 W",
        "   30.0 GiB  alice  pid 200  python3",
        "GPU 1: NVIDIA H200  mem 60.0/141.0 GiB  util 90%  temp 50°C  power 500 W/700 W",
        "  no processes",
    ]


def test_process_memory_in_mib_below_a_gib() -> None:
    assert GpuProcess(pid=1, gpu_memory=300 * MIB, user="u").describe() == "  300 MiB  u  pid 1"
    assert GpuProcess(pid=1, gpu_memory=GIB, user="u").describe() == "  1.0 GiB  u  pid 1"


def test_process_rows_say_which_lines_are_the_engines() -> None:
    procs = (GpuProcess(pid=1, gpu_memory=GIB, user="me", engine=True),
             GpuProcess(pid=2, gpu_memory=3 * GIB, user="me", engine=True),  # a second worker of the engine
             GpuProcess(pid=3, gpu_memory=9 * GIB, user="alice"),
             GpuProcess(pid=4, gpu_memory=GIB, user="bob"))
    rows = GpuSnapshot(index=0, name="g", processes=procs).process_rows(limit=3)
    assert rows == [("  3.0 GiB  engine  pid 2", "engine"), ("  1.0 GiB  engine  pid 1", "engine"),
                    ("  9.0 GiB  alice  pid 3", "other"), ("  1.0 GiB  +1 more processes", "note")]
    assert GpuSnapshot(index=0, name="g", processes=()).process_rows() == [("no processes", "note")]
