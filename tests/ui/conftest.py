from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from workbench.config import save_config

# Above the kernel's largest possible pid (PID_MAX_LIMIT, 2**22): psutil never finds these, so their owner is
# "n/a" on every machine and the snapshots stay the same everywhere.
FOREIGN_PIDS = (5_000_001, 5_000_002, 5_000_003)


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):  # the class name pynvml uses
    pass


class FakeNvml:
    """Stands in for pynvml on machines without an NVIDIA GPU: two H100s with fixed readings. GPU 0 has
    one process on it; GPU 1 has someone else's 30 GiB job and one whose memory NVML does not report,
    and answers NotSupported for graphics processes."""

    NVML_TEMPERATURE_GPU = 0

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetMemoryInfo(self, h: int):
        return SimpleNamespace(used=(12 + 30 * h) * 1024**3, total=80 * 1024**3, free=0)

    def nvmlDeviceGetUtilizationRates(self, h: int):
        return SimpleNamespace(gpu=87 - 40 * h, memory=30)

    def nvmlDeviceGetTemperature(self, h: int, kind: int) -> int:
        return 61 + h

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 512_000 - 200_000 * h

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return 700_000

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[SimpleNamespace]:
        if h == 0:
            return [SimpleNamespace(pid=FOREIGN_PIDS[0], usedGpuMemory=11 * 1024**3)]
        return [SimpleNamespace(pid=FOREIGN_PIDS[1], usedGpuMemory=30 * 1024**3),
                SimpleNamespace(pid=FOREIGN_PIDS[2], usedGpuMemory=None)]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: int) -> list[SimpleNamespace]:
        if h == 1:
            raise NVMLError("Not Supported")
        return []


class NoGpuNvml:
    """pynvml on a machine without the NVIDIA driver: nvmlInit raises as the real one does."""

    def nvmlInit(self) -> None:
        raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None: ...


@pytest.fixture
def demo_config_path(demo_config, tmp_path: Path) -> Path:
    path = tmp_path / "demo.toml"
    save_config(demo_config, path)
    return path


async def wait_for(pilot, condition, timeout: float = 120.0, what: str = "") -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what or condition}")
        await pilot.pause(0.1)
