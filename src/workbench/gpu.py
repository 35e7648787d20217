"""NVIDIA GPU gauges from NVML (`pynvml`, from the nvidia-ml-py package).

One snapshot per device per poll; every field is optional because NVML answers "not supported" for
some of them on some boards (power on many consumer cards, utilization under MIG). A machine with no
NVIDIA driver gives an empty list and a reason, never an exception. The module is passed in (or
imported lazily), so tests can inject a fake.

Each GPU's snapshot lists the processes on it (NVML's compute and graphics process lists), with the
owner and command name from psutil, so a user sees another user's job on "their" GPU. Without a GPU
the poller reads the host instead (CPU, RAM, the engine process) so the gauge column still says
something useful on a laptop or the CPU demo. psutil, like pynvml, is imported lazily: this module is
on the UI's start-up path and those imports are not.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any, NamedTuple

GIB = 1024**3
MIB = 1024**2
MAX_PROCESS_LINES = 5
"""Processes listed per GPU (the engine's first, then by GPU memory); the rest become one summary line."""


def human_bytes(n: int) -> str:
    """GiB with one decimal, or MiB below 1 GiB (a 300 MiB process is not "0.3 GiB" at a glance)."""
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"


@dataclass(frozen=True)
class GpuProcess:
    """A process with a context on a GPU.

    `user` and `name` are None when they cannot be read: another user's process under `hidepid`, or a
    pid from another PID namespace (NVML reports the host's pids, so in a container the processes of
    other containers are not visible). `gpu_memory` is None when NVML does not say (MIG, some drivers).
    """

    pid: int
    gpu_memory: int | None = None
    """Bytes."""
    user: str | None = None
    name: str | None = None
    engine: bool = False
    """The workbench engine that this UI drives (or a process it started, e.g. a torchrun worker)."""

    def describe(self) -> str:
        mem = "n/a" if self.gpu_memory is None else human_bytes(self.gpu_memory)
        who = "engine" if self.engine else (self.user or "user n/a")
        line = f"{mem:>9}  {who}  pid {self.pid}"
        return f"{line}  {self.name}" if self.name else line


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
    processes: tuple[GpuProcess, ...] | None = None
    """None when NVML cannot list them (not supported, no permission); () when there are none."""

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

    def process_rows(self, limit: int | None = MAX_PROCESS_LINES) -> list[tuple[str, str]]:
        """The process lines of this GPU with their kind ("engine", "other" or "note"): the engine's
        processes first, then the biggest; at most `limit` + 1 lines (None: all of them)."""
        if self.processes is None:
            return [("processes n/a (NVML cannot list them here)", "note")]
        if not self.processes:
            return [("no processes", "note")]
        ordered = sorted(self.processes, key=lambda p: (not p.engine, -(p.gpu_memory or 0), p.pid))
        shown = ordered if limit is None else ordered[:limit]
        rows = [(p.describe(), "engine" if p.engine else "other") for p in shown]
        rest = ordered[len(shown):]
        if rest:
            mem = sum(p.gpu_memory or 0 for p in rest)
            rows.append((f"{human_bytes(mem):>9}  +{len(rest)} more processes", "note"))
        return rows

    def process_lines(self, limit: int | None = MAX_PROCESS_LINES) -> list[str]:
        return [line for line, _ in self.process_rows(limit)]


class _Owner(NamedTuple):
    user: str | None
    name: str | None
    ancestors: tuple[int, ...]


class LazyPsutil:
    """psutil, imported on first use (it stays off the UI's start-up path), or a stand-in given by tests;
    None when it is not installed."""

    def __init__(self, module: ModuleType | Any | None = None) -> None:
        self._module = module
        self.imported = module is not None

    def get(self) -> Any:
        if not self.imported:
            self.imported = True
            try:
                import psutil

                self._module = psutil
            except ImportError:
                self._module = None
        return self._module

    @property
    def missing(self) -> bool:
        return self.imported and self._module is None


class Owners:
    """Who runs a pid and what it is, read with psutil once per process (a few /proc reads) and kept
    while the pid stays on a GPU, so a 1 Hz poll costs nothing for processes it has already seen."""

    def __init__(self, psutil_module: ModuleType | Any | None = None) -> None:
        self._psutil = LazyPsutil(psutil_module).get  # without psutil, every owner is simply unknown
        self._cache: dict[int, _Owner] = {}

    def get(self, pid: int) -> _Owner:
        cached = self._cache.get(pid)
        if cached is not None:
            return cached
        owner = _Owner(None, None, ())
        ps = self._psutil()
        if ps is not None:
            try:
                proc = ps.Process(pid)
            except Exception:  # NoSuchProcess: not in this PID namespace (another container) or gone
                proc = None
            if proc is not None:
                # Each read may fail alone: under hidepid the owner can be hidden while the name is not.
                owner = _Owner(
                    _attempt(proc.username),
                    _attempt(proc.name),
                    tuple(a.pid for a in _attempt(proc.parents) or ()),
                )
        self._cache[pid] = owner
        return owner

    def keep_only(self, pids: set[int]) -> None:
        """Forget processes that left the GPUs (their pid may be reused by another user's process)."""
        for pid in [p for p in self._cache if p not in pids]:
            del self._cache[pid]


def _attempt(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # psutil.AccessDenied / NoSuchProcess / ZombieProcess, NVMLError_*
        return None


class Nvml:
    """A thin, fault-tolerant reader over a pynvml module."""

    def __init__(self, module: ModuleType | Any | None = None, psutil_module: ModuleType | Any | None = None) -> None:
        self._nv: Any = module  # a pynvml module (or a stand-in): untyped
        self.error: str | None = None
        self._handles: list[Any] = []
        self._names: list[str] = []
        self._initialised = False
        self._owners = Owners(psutil_module)

    @property
    def unavailable(self) -> bool:
        """NVML could not start (no driver, no pynvml): asking again in a second will not help."""
        return not self._initialised and self.error is not None

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
        return _attempt(fn)

    def _processes(self, handle: Any, engine_pid: int | None) -> tuple[GpuProcess, ...] | None:
        """Compute and graphics processes on one device, merged by pid; None if NVML lists neither."""
        memory: dict[int, int | None] = {}
        listed = False
        for fn_name in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            fn = getattr(self._nv, fn_name, None)
            found = self._try(partial(fn, handle)) if fn is not None else None
            if found is None:  # NotSupported, NoPermission, or a pynvml without the call
                continue
            listed = True
            for info in found:
                pid = getattr(info, "pid", None)
                if not isinstance(pid, int):
                    continue
                used = getattr(info, "usedGpuMemory", None)  # None: NVML_VALUE_NOT_AVAILABLE
                used = used if isinstance(used, int) else None
                # A process with both a compute and a graphics context is listed twice with the same memory.
                known = memory.get(pid)
                memory[pid] = used if known is None else max(known, used or 0)
        if not listed:
            return None
        procs = []
        for pid, used in memory.items():
            owner = self._owners.get(pid)
            is_engine = engine_pid is not None and (pid == engine_pid or engine_pid in owner.ancestors)
            procs.append(GpuProcess(pid=pid, gpu_memory=used, user=owner.user, name=owner.name, engine=is_engine))
        return tuple(procs)

    def sample(self, engine_pid: int | None = None) -> list[GpuSnapshot]:
        if not self.start():
            return []
        nv = self._nv
        snapshots = []
        for index, handle in enumerate(self._handles):
            # each call on its own: NVML answers "not supported" for some of them on some boards
            mem = self._try(partial(nv.nvmlDeviceGetMemoryInfo, handle))
            util = self._try(partial(nv.nvmlDeviceGetUtilizationRates, handle))
            temp = self._try(partial(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU))
            power = self._try(partial(nv.nvmlDeviceGetPowerUsage, handle))
            limit = self._try(partial(nv.nvmlDeviceGetEnforcedPowerLimit, handle))
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
                    processes=self._processes(handle, engine_pid),
                )
            )
        self._owners.keep_only({p.pid for s in snapshots for p in s.processes or ()})
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
        return f"no NVIDIA GPU found (no NVIDIA driver: {text})"  # NVML's own words, for a search
    return f"no NVIDIA GPU found ({text})"


# ------------------------------------------------------------------------------------------ the host


@dataclass(frozen=True)
class ProcessUsage:
    """CPU and memory of one process (the engine), from psutil."""

    pid: int
    name: str | None = None
    cpu_percent: float | None = None
    """100 per busy core, as top shows it; None on the first reading (a rate needs two)."""
    rss: int | None = None
    """Resident memory, bytes."""
    threads: int | None = None
    running: bool = True

    def describe(self) -> str:
        if not self.running:
            return f"engine pid {self.pid} is not running"
        cpu = "…" if self.cpu_percent is None else f"{self.cpu_percent:.0f}%"
        rss = "n/a" if self.rss is None else human_bytes(self.rss)
        threads = "threads n/a" if self.threads is None else f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return f"engine pid {self.pid}: CPU {cpu} · RSS {rss} · {threads}"


@dataclass(frozen=True)
class HostSnapshot:
    """The machine's CPU and RAM, and the engine process when its pid is known."""

    cpu_percent: float | None = None
    """All cores together, 0-100; None on the first reading."""
    cpu_count: int | None = None
    memory_used: int | None = None
    """Bytes: total minus available, i.e. what programs hold, not the page cache (as htop shows it)."""
    memory_total: int | None = None
    engine: ProcessUsage | None = None

    @property
    def memory_fraction(self) -> float | None:
        if self.memory_used is None or not self.memory_total:
            return None
        return self.memory_used / self.memory_total

    def cpu_line(self) -> str:
        pct = "…" if self.cpu_percent is None else f"{self.cpu_percent:.0f}%"
        cores = "" if not self.cpu_count else f" of {self.cpu_count} core{'s' if self.cpu_count != 1 else ''}"
        return f"CPU {pct}{cores}"

    def memory_line(self) -> str:
        if self.memory_used is None or not self.memory_total:
            return "RAM n/a"
        return f"RAM {self.memory_used / GIB:.1f}/{self.memory_total / GIB:.1f} GiB"

    def describe(self) -> str:
        line = f"{self.cpu_line()}  {self.memory_line()}"
        return f"{line}\n{self.engine.describe()}" if self.engine is not None else line


def _busy_total(times: Any) -> tuple[float, float]:
    """Busy and total CPU seconds from psutil.cpu_times() (the same accounting as psutil.cpu_percent)."""
    total = sum(times)
    # Linux counts guest time inside user time too.
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


class HostSampler:
    """CPU utilization, RAM and the engine process from psutil; each call compares with the last one.

    It keeps its own previous readings instead of calling psutil.cpu_percent(), whose state is global to
    the process and would be disturbed by any other caller."""

    def __init__(self, psutil_module: ModuleType | Any | None = None) -> None:
        self._lazy = LazyPsutil(psutil_module)
        self.error: str | None = None
        self._last_cpu: tuple[float, float] | None = None
        self._proc: Any = None
        self._proc_pid: int | None = None
        self._proc_last: tuple[float, float] | None = None
        """The engine's CPU seconds and the monotonic time they were read."""

    def _psutil(self) -> Any:
        module = self._lazy.get()
        if module is None:
            self.error = "psutil is not installed"
        return module

    @property
    def unavailable(self) -> bool:
        return self._lazy.missing

    def sample(self, engine_pid: int | None = None) -> HostSnapshot | None:
        ps = self._psutil()
        if ps is None:
            return None
        cpu_percent = None
        times = _attempt(ps.cpu_times)
        if times is not None:
            busy, total = _busy_total(times)
            if self._last_cpu is not None and total > self._last_cpu[1]:
                cpu_percent = 100.0 * (busy - self._last_cpu[0]) / (total - self._last_cpu[1])
                cpu_percent = min(100.0, max(0.0, cpu_percent))
            self._last_cpu = (busy, total)
        vm = _attempt(ps.virtual_memory)
        total_mem = getattr(vm, "total", None)
        available = getattr(vm, "available", None)
        return HostSnapshot(
            cpu_percent=cpu_percent,
            cpu_count=_attempt(ps.cpu_count),
            memory_used=total_mem - available if total_mem is not None and available is not None else None,
            memory_total=total_mem,
            engine=self._engine(ps, engine_pid) if engine_pid is not None else None,
        )

    def _engine(self, ps: Any, pid: int) -> ProcessUsage:
        if pid != self._proc_pid:  # a new engine (restarted): its rate starts over
            self._proc_pid, self._proc, self._proc_last = pid, None, None
            try:
                self._proc = ps.Process(pid)
            except Exception:
                return ProcessUsage(pid=pid, running=False)
        proc = self._proc
        if proc is None or not _attempt(proc.is_running):
            self._proc_pid = None  # look again next time: the pid may come back as a new engine
            return ProcessUsage(pid=pid, running=False)
        cpu = mem = threads = name = status = None
        with contextlib.suppress(Exception), proc.oneshot():  # one /proc read for the values below
            status = _attempt(proc.status)
            cpu = _attempt(proc.cpu_times)
            mem = _attempt(proc.memory_info)
            threads = _attempt(proc.num_threads)
            name = _attempt(proc.name)
        if status == "zombie":  # psutil.STATUS_ZOMBIE: it ended, its parent has not reaped it yet
            return ProcessUsage(pid=pid, name=name, running=False)
        now = time.monotonic()
        cpu_percent = None
        if cpu is not None:
            seconds = cpu.user + cpu.system
            if self._proc_last is not None and now > self._proc_last[1]:
                cpu_percent = max(0.0, 100.0 * (seconds - self._proc_last[0]) / (now - self._proc_last[1]))
            self._proc_last = (seconds, now)
        return ProcessUsage(pid=pid, name=name, cpu_percent=cpu_percent, rss=getattr(mem, "rss", None),
                            threads=threads)


# ------------------------------------------------------------------------------------------- polling


@dataclass(frozen=True)
class Reading:
    """One poll: every GPU, or, when there is none, the reason and the host's CPU / RAM / engine."""

    gpus: tuple[GpuSnapshot, ...]
    reason: str | None = None
    host: HostSnapshot | None = None


def sample_gpus(module: ModuleType | Any | None = None) -> tuple[list[GpuSnapshot], str | None]:
    """One reading of every GPU and, when there is none, the reason."""
    nvml = Nvml(module)
    try:
        snaps = nvml.sample()
        return snaps, None if snaps else (nvml.error or "no NVIDIA GPU found")
    finally:
        nvml.close()


def sample_all(
    module: ModuleType | Any | None = None,
    psutil_module: ModuleType | Any | None = None,
    engine_pid: int | None = None,
    cpu_window_s: float = 0.25,
) -> Reading:
    """One reading for `workbench gpus`. Without a GPU it reads the host twice, `cpu_window_s` apart,
    because CPU utilization is a rate."""
    nvml = Nvml(module, psutil_module)
    try:
        snaps = nvml.sample(engine_pid)
    finally:
        nvml.close()
    if snaps:
        return Reading(tuple(snaps))
    host = HostSampler(psutil_module)
    host.sample(engine_pid)
    time.sleep(cpu_window_s)
    return Reading((), nvml.error or "no NVIDIA GPU found", host.sample(engine_pid))


def gpus_report(reading: Reading) -> str:
    """The text of `workbench gpus`: each GPU and every process on it; without a GPU, the reason and the
    host's CPU and RAM (and the engine, when a pid was given)."""
    if not reading.gpus:
        lines = [reading.reason or "no NVIDIA GPU found"]
        if reading.host is not None:
            lines.append(reading.host.describe())
        return "\n".join(lines)
    lines = []
    for snap in reading.gpus:
        lines.append(snap.describe())
        lines.extend(f"  {line}" for line in snap.process_lines(limit=None))
    return "\n".join(lines)


def poll_gpus(
    on_sample: Callable[[Reading], None],
    stop: threading.Event,
    interval_s: float = 1.0,
    module: ModuleType | Any | None = None,
    engine_pid: Callable[[], int | None] | None = None,
    psutil_module: ModuleType | Any | None = None,
) -> None:
    """Call `on_sample` every interval until `stop` is set (runs in the caller's thread).

    `engine_pid` is asked before each poll (the engine may start, restart or be attached later). The
    host is read only when there is no GPU: with GPUs the gauges say what matters and stay as cheap as
    before."""
    nvml = Nvml(module, psutil_module)
    host = HostSampler(psutil_module)
    try:
        while not stop.is_set():
            pid = engine_pid() if engine_pid is not None else None
            snaps = [] if nvml.unavailable else nvml.sample(pid)  # no driver: don't retry NVML every second
            if snaps:
                on_sample(Reading(tuple(snaps)))
            else:
                on_sample(Reading((), nvml.error or "no NVIDIA GPU found", host.sample(pid)))
                if nvml.unavailable and host.unavailable:
                    return  # no driver and no psutil: nothing will change while we run
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
