"""NVIDIA GPU gauges from NVML (`pynvml`, from the nvidia-ml-py package).

One snapshot per device per poll; every field is optional because NVML answers "not supported" for
some of them on some boards (power on many consumer cards, utilization under MIG). A machine with no
NVIDIA driver gives an empty list and a reason, never an exception. The module is passed in (or
imported lazily), so tests can inject a fake.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

GIB = 1024**3


@dataclass(frozen=True)
class GpuSnapshot:
    index: int
    name: str
    memory_used: int | None = None
    """Bytes."""
    memory_total: int | None = None
    utilization: int | None = None
    """Percent of time a kernel ran over the last sample period."""
    temperature: int | None = None
    """Degrees Celsius."""
    power_w: float | None = None
    power_limit_w: float | None = None

    @property
    def memory_fraction(self) -> float | None:
        if self.memory_used is None or not self.memory_total:
            return None
        return self.memory_used / self.memory_total

    def describe(self) -> str:
        def na(value: object, fmt: str) -> str:
            return "n/a" if value is None else fmt.format(value)

        mem = (
            f"{self.memory_used / GIB:.1f}/{self.memory_total / GIB:.1f} GiB"
            if self.memory_used is not None and self.memory_total
            else "n/a"
        )
        power = na(self.power_w, "{:.0f} W")
        if self.power_w is not None and self.power_limit_w:
            power += f"/{self.power_limit_w:.0f} W"
        return (
            f"GPU {self.index}: {self.name}  mem {mem}  util {na(self.utilization, '{}%')}  "
            f"temp {na(self.temperature, '{}°C')}  power {power}"
        )


class Nvml:
    """A thin, fault-tolerant reader over a pynvml module."""

    def __init__(self, module: ModuleType | Any | None = None) -> None:
        self._nv = module
        self.error: str | None = None
        self._handles: list[Any] = []
        self._names: list[str] = []
        self._initialised = False

    def start(self) -> bool:
        if self._initialised:
            return True
        try:
            if self._nv is None:
                import pynvml

                self._nv = pynvml
            self._nv.nvmlInit()
            count = self._nv.nvmlDeviceGetCount()
            self._handles = [self._nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._names = [self._name(h) for h in self._handles]
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError...
            self.error = _reason(exc)
            return False
        self._initialised = True
        if not self._handles:
            self.error = "no NVIDIA GPU found"
        return True

    def _name(self, handle: Any) -> str:
        try:
            name = self._nv.nvmlDeviceGetName(handle)
        except Exception:
            return "NVIDIA GPU"
        return name.decode() if isinstance(name, bytes) else str(name)

    def _try(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception:
            return None

    def sample(self) -> list[GpuSnapshot]:
        if not self.start():
            return []
        nv = self._nv
        snapshots = []
        for index, handle in enumerate(self._handles):
            mem = self._try(lambda h=handle: nv.nvmlDeviceGetMemoryInfo(h))
            util = self._try(lambda h=handle: nv.nvmlDeviceGetUtilizationRates(h))
            temp = self._try(lambda h=handle: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
            power = self._try(lambda h=handle: nv.nvmlDeviceGetPowerUsage(h))
            limit = self._try(lambda h=handle: nv.nvmlDeviceGetEnforcedPowerLimit(h))
            snapshots.append(
                GpuSnapshot(
                    index=index,
                    name=self._names[index],
                    memory_used=getattr(mem, "used", None),
                    memory_total=getattr(mem, "total", None),
                    utilization=getattr(util, "gpu", None),
                    temperature=temp,
                    power_w=power / 1000.0 if power is not None else None,
                    power_limit_w=limit / 1000.0 if limit is not None else None,
                )
            )
        return snapshots

    def close(self) -> None:
        if self._initialised:
            self._try(self._nv.nvmlShutdown)
            self._initialised = False


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ImportError):
        return "no NVIDIA GPU found (pynvml is not installed)"
    if "LibraryNotFound" in type(exc).__name__ or "not found" in text.lower() or "Driver Not Loaded" in text:
        return "no NVIDIA GPU found (no NVIDIA driver on this machine)"
    return f"no NVIDIA GPU found ({text})"


def sample_gpus(module: ModuleType | Any | None = None) -> tuple[list[GpuSnapshot], str | None]:
    """One reading of every GPU and, when there is none, the reason."""
    nvml = Nvml(module)
    try:
        snaps = nvml.sample()
        return snaps, None if snaps else (nvml.error or "no NVIDIA GPU found")
    finally:
        nvml.close()


def poll_gpus(
    on_sample: Callable[[list[GpuSnapshot], str | None], None],
    stop: threading.Event,
    interval_s: float = 1.0,
    module: ModuleType | Any | None = None,
) -> None:
    """Call `on_sample` every interval until `stop` is set (runs in the caller's thread)."""
    nvml = Nvml(module)
    try:
        while not stop.is_set():
            snaps = nvml.sample()
            on_sample(snaps, None if snaps else (nvml.error or "no NVIDIA GPU found"))
            if not snaps and nvml.error and not nvml._initialised:
                return  # no driver: nothing will change while we run
            stop.wait(interval_s)
    finally:
        nvml.close()


# Dense bf16 tensor-core peak in TFLOP/s, for MFU. Matched by substring of the NVML / torch name.
PEAK_BF16_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
)


def peak_tflops(gpu_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS:
        if key in gpu_name:
            return value
    return None
