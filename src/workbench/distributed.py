"""Training on several processes: which GPUs, and the torchrun command that starts one rank per GPU.

The workbench does not run a distributed system of its own: a run on several GPUs (or, for trying the path
anywhere, several CPU ranks over gloo) is `torchrun` starting `python -m workbench.engine.rank RUN_DIR` once
per rank. unsloth and the HF Trainer do the rest under torchrun's environment (each rank's `device_map`,
DDP over NCCL or gloo). Rank 0 alone writes the run's files (events, checkpoint markers, the adapter); a
stop asked of the run reaches every rank at the same step boundary (`engine.rank`).

Pure: no torch import, so the CLI and the Config pane can check a request before anything loads.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.gpu import GpuSnapshot

GIB = 1024**3
UNEVEN = 0.2
"""Free memory differing by more than this share of the largest between the GPUs of a run: said."""

LAUNCH_CONFIG = "launch.toml"
"""The config the launcher hands its ranks (rank 0 checks a resume against the run's config.toml with it,
then saves it as config.toml, as a run on one process does)."""
ENGINE_SOCKET_ENV = "WORKBENCH_ENGINE_SOCKET"
"""Set for ranks an engine started: the socket of that engine (it relays the ranks' events and takes Stop),
which rank 0 names in the run's engine.json so that `workbench attach RUN` reaches it."""
STOP_REQUEST = "stop-request"
"""A file in the run folder: its presence asks every rank to stop at the next step boundary."""


@dataclass(frozen=True)
class Topology:
    """Where this process stands among the ranks (torchrun's environment; one rank without it)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def current() -> Topology:
    env = os.environ
    return Topology(rank=int(env.get("RANK", "0")), local_rank=int(env.get("LOCAL_RANK", "0")),
                    world=int(env.get("WORLD_SIZE", "1")))


class LaunchError(ValueError):
    """A launch the machine cannot run; the message names the field or option to change."""


def resolve_gpus(spec: int | list[int] | str, available: int, field_name: str = "training.gpus") -> list[int]:
    """The GPU indices `spec` asks for (a count, a list of indices, or "all") on a machine with `available`
    GPUs; a LaunchError naming `field_name` when they are not there."""
    if spec == "all":
        if available == 0:
            raise LaunchError(f'{field_name} = "all", but this machine has no NVIDIA GPU')
        return list(range(available))
    if isinstance(spec, int):
        if spec > available:
            has = "no NVIDIA GPU" if available == 0 else f"{available} NVIDIA GPU{'' if available == 1 else 's'}"
            raise LaunchError(f"{field_name} = {spec}, but this machine has {has}")
        return list(range(spec))
    if isinstance(spec, list):
        missing = [i for i in spec if i >= available]
        if missing:
            raise LaunchError(f"{field_name} = {spec}: no GPU {', '.join(map(str, missing))} on this machine "
                              f"(it has {available}: 0-{available - 1})" if available else
                              f"{field_name} = {spec}, but this machine has no NVIDIA GPU")
        return list(spec)
    raise LaunchError(f"{field_name} = {spec!r}: give a count, a list of GPU indices, or \"all\"")


@dataclass(frozen=True)
class LaunchPlan:
    """How to start the ranks of one run on this node."""

    nproc_per_node: int
    gpu_ids: list[int] = field(default_factory=list)
    """The GPUs of this node, in rank order; empty: CPU ranks over gloo."""
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str = ""
    """host:port of the rendezvous (multi-node); one node uses a free local port."""
    strategy: str = "ddp"

    @property
    def cpu(self) -> bool:
        return not self.gpu_ids

    @property
    def world(self) -> int:
        return self.nproc_per_node * self.nnodes

    def env(self) -> dict[str, str]:
        """What the ranks' environment needs beyond the caller's."""
        extra: dict[str, str] = {}
        if self.gpu_ids:
            extra["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpu_ids))
        else:
            extra["CUDA_VISIBLE_DEVICES"] = ""  # CPU ranks: gloo, even on a machine with GPUs
        if self.strategy == "fsdp2":
            extra["UNSLOTH_FSDP2"] = "1"
        return extra

    def command(self, run_dir: str, resume: bool = False, python: str | None = None) -> list[str]:
        """torchrun (as `python -m torch.distributed.run`, the same interpreter) starting every rank of this
        node on `run_dir`."""
        args = [python or sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={self.nproc_per_node}"]
        if self.nnodes == 1:
            args += ["--standalone"]
        else:
            args += [f"--nnodes={self.nnodes}", f"--node-rank={self.node_rank}", "--rdzv-backend=c10d",
                     f"--rdzv-endpoint={self.rdzv_endpoint}", "--rdzv-id=workbench"]
        args += ["-m", "workbench.engine.rank", run_dir]
        return args + (["--resume"] if resume else [])


def launch_lines(plan: LaunchPlan, run_dir: str, resume: bool = False) -> list[str]:
    """The exact shell command for every node of `plan` (what `workbench train --print-launch` prints)."""
    lines = []
    for node in range(plan.nnodes):
        node_plan = LaunchPlan(plan.nproc_per_node, plan.gpu_ids, plan.nnodes, node, plan.rdzv_endpoint, plan.strategy)
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(node_plan.env().items()))
        command = " ".join(shlex.quote(a) for a in node_plan.command(run_dir, resume, python="python"))
        lines.append(f"# node {node} of {plan.nnodes}\n{env} {command}")
    return lines


@dataclass(frozen=True)
class GpuCheck:
    ok: bool
    line: str
    """What the Config pane shows about the GPUs a run on several asks for."""
    uneven: bool = False
    """Their free memory differs by more than UNEVEN (said in `line`)."""


def check_gpus(spec: int | list[int] | str, gpus: list[GpuSnapshot], need_gib: float) -> GpuCheck:
    """The GPUs `spec` asks for against what NVML sees: there, each with the memory the forecast needs per
    GPU (the processes named on one that lacks it), and how even their free memory is."""
    try:
        ids = resolve_gpus(spec, len(gpus))
    except LaunchError as exc:
        return GpuCheck(False, str(exc))
    by_index = {g.index: g for g in gpus}
    free = {i: (by_index[i].memory_total or 0) - (by_index[i].memory_used or 0) for i in ids}
    short = [i for i in ids if free[i] < need_gib * GIB]
    if short:
        worst = short[0]
        others = [p for p in (by_index[worst].processes or ()) if not p.engine]
        held = ", ".join(f"pid {p.pid}{' ' + p.name if p.name else ''} {(p.gpu_memory or 0) / GIB:.1f} GiB"
                         for p in sorted(others, key=lambda p: -(p.gpu_memory or 0))[:3])
        return GpuCheck(False, f"GPU {worst} has {free[worst] / GIB:.1f} GiB free; the forecast needs "
                               f"{need_gib:.1f} GiB on each GPU" + (f" (held by {held})" if held else ""))
    line = (f"{len(ids)} GPUs ({', '.join(map(str, ids))}): "
            f"{' / '.join(f'{free[i] / GIB:.0f}' for i in ids)} GiB free, {need_gib:.1f} GiB needed on each")
    most = max(free.values())
    uneven = bool(most) and (most - min(free.values())) / most > UNEVEN
    if uneven:
        line += "; uneven free memory: the GPU with least sets the pace"
    return GpuCheck(True, line, uneven)
