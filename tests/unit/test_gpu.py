"""workbench.gpu with a fake pynvml module: snapshots, partial failures, no driver, polling, peak TFLOP/s."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from workbench.gpu import GIB, GpuSnapshot, Nvml, peak_tflops, poll_gpus, sample_gpus


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):  # the class name pynvml uses
    pass


class FakeNvml:
    """Two devices: an H100 that answers everything and a card whose power reading is not supported."""

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


def test_sample_two_devices() -> None:
    fake = FakeNvml()
    nvml = Nvml(fake)
    snaps = nvml.sample()
    assert snaps == [
        GpuSnapshot(index=0, name="NVIDIA H100 80GB HBM3", memory_used=10 * GIB, memory_total=80 * GIB,
                    utilization=87, temperature=61, power_w=312.5, power_limit_w=700.0),
        GpuSnapshot(index=1, name="NVIDIA L4", memory_used=1 * GIB, memory_total=24 * GIB, utilization=3,
                    temperature=40, power_w=None, power_limit_w=72.0),
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
    fake = FakeNvml([{"name": err, "used": err, "total": err, "util": err, "temp": err, "power": err, "limit": err}])
    (snap,) = Nvml(fake).sample()
    assert snap == GpuSnapshot(index=0, name="NVIDIA GPU")
    assert snap.memory_fraction is None
    assert snap.describe() == "GPU 0: NVIDIA GPU  mem n/a  util n/a  temp n/a  power n/a"


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
    seen: list[tuple[int, str | None]] = []

    def on_sample(snaps: list[GpuSnapshot], reason: str | None) -> None:
        seen.append((len(snaps), reason))
        if len(seen) == 5:
            stop.set()

    worker = threading.Thread(target=poll_gpus, args=(on_sample, stop, 0.01, fake))
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert seen == [(2, None)] * 5
    assert fake.memory_calls == 2 * 5
    assert fake.shutdown_calls == 1


def test_poll_returns_at_once_without_a_driver() -> None:
    stop = threading.Event()
    seen: list[tuple[int, str | None]] = []
    poll_gpus(lambda s, r: seen.append((len(s), r)), stop, 0.01, FakeNvml(init_error=NVMLError("Driver Not Loaded")))
    assert len(seen) == 1
    assert seen[0][0] == 0 and seen[0][1] is not None and "no NVIDIA GPU" in seen[0][1]
    assert not stop.is_set()


def test_poll_does_nothing_when_already_stopped() -> None:
    stop = threading.Event()
    stop.set()
    seen: list[Any] = []
    poll_gpus(lambda s, r: seen.append(s), stop, 0.01, FakeNvml())
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
