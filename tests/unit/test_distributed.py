"""Which GPUs a config asks for, and the torchrun commands that start its ranks (no torch needed)."""

from __future__ import annotations

import shlex

import pytest

from workbench.distributed import LaunchError, LaunchPlan, Topology, launch_lines, resolve_gpus


def test_a_count_a_list_and_all():
    assert resolve_gpus(2, 4) == [0, 1]
    assert resolve_gpus([1, 3], 4) == [1, 3]
    assert resolve_gpus("all", 3) == [0, 1, 2]


@pytest.mark.parametrize(("spec", "available", "says"), [
    (4, 2, "training.gpus = 4, but this machine has 2 NVIDIA GPUs"),
    (2, 1, "has 1 NVIDIA GPU"),
    (2, 0, "training.gpus = 2, but this machine has no NVIDIA GPU"),
    ([0, 5], 2, "no GPU 5 on this machine (it has 2: 0-1)"),
    ("all", 0, "has no NVIDIA GPU"),
    ([0], 0, "has no NVIDIA GPU"),
])
def test_gpus_the_machine_lacks_are_named(spec, available, says):
    with pytest.raises(LaunchError, match=says.replace("(", r"\(").replace(")", r"\)")):
        resolve_gpus(spec, available)


def test_one_node_is_standalone_and_names_its_gpus():
    plan = LaunchPlan(nproc_per_node=2, gpu_ids=[2, 3], strategy="fsdp2")
    command = plan.command("/runs/a", resume=True, python="python")
    assert command[:4] == ["python", "-m", "torch.distributed.run", "--nproc-per-node=2"]
    assert "--standalone" in command and command[-3:] == ["workbench.engine.rank", "/runs/a", "--resume"]
    assert plan.env() == {"CUDA_VISIBLE_DEVICES": "2,3", "UNSLOTH_FSDP2": "1"}
    assert plan.world == 2 and not plan.cpu


def test_cpu_ranks_hide_the_gpus():
    plan = LaunchPlan(nproc_per_node=2)
    assert plan.cpu and plan.env()["CUDA_VISIBLE_DEVICES"] == ""


def test_print_launch_gives_each_node_its_rank_and_the_same_rendezvous():
    plan = LaunchPlan(nproc_per_node=4, gpu_ids=[0, 1, 2, 3], nnodes=2, rdzv_endpoint="10.0.0.1:29500")
    lines = launch_lines(plan, "/shared/runs/big")
    assert len(lines) == 2
    for node, text in enumerate(lines):
        header, command = text.splitlines()
        assert header == f"# node {node} of 2"
        words = shlex.split(command)
        assert f"--node-rank={node}" in words and "--nnodes=2" in words
        assert "--rdzv-endpoint=10.0.0.1:29500" in words and "--standalone" not in words
        assert words[-1] == "/shared/runs/big" and "CUDA_VISIBLE_DEVICES=0,1,2,3" in words


def test_topology_from_torchruns_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    from workbench.distributed import current

    assert current() == Topology(rank=3, local_rank=1, world=4)
    assert not current().is_main and current().distributed


def snapshot(index: int, free_gib: float, total_gib: float = 80.0, processes=()):
    from workbench.gpu import GIB, GpuSnapshot

    return GpuSnapshot(index=index, name="NVIDIA H100", memory_used=int((total_gib - free_gib) * GIB),
                       memory_total=int(total_gib * GIB), processes=tuple(processes))


def test_the_gpu_check_against_fake_nvml_readings():
    from workbench.distributed import check_gpus
    from workbench.gpu import GIB, GpuProcess

    two = [snapshot(0, 70.0), snapshot(1, 69.0)]
    fine = check_gpus(2, two, need_gib=9.0)
    assert fine.ok and fine.line == "2 GPUs (0, 1): 70 / 69 GiB free, 9.0 GiB needed on each"
    lacking = check_gpus(4, two, need_gib=9.0)
    assert not lacking.ok and "training.gpus = 4, but this machine has 2 NVIDIA GPUs" in lacking.line
    busy = [snapshot(0, 70.0), snapshot(1, 4.0, processes=[GpuProcess(pid=4242, gpu_memory=int(75 * GIB),
                                                                      user="asha", name="python train.py")])]
    short = check_gpus([0, 1], busy, need_gib=9.0)
    assert not short.ok
    assert short.line.startswith("GPU 1 has 4.0 GiB free; the forecast needs 9.0 GiB on each GPU")
    assert "pid 4242 python train.py 75.0 GiB" in short.line
    uneven = check_gpus("all", [snapshot(0, 70.0), snapshot(1, 30.0)], need_gib=9.0)
    assert uneven.ok and "uneven free memory" in uneven.line


def test_the_cli_checks_the_gpus_before_a_launch_and_names_who_holds_one(monkeypatch, tmp_path, capsys):
    """`workbench train --gpus 2` on a box whose GPU 1 another user's job fills: the forecast (from the demo
    model's shape) against each GPU's free memory, said before the launch; `--print-launch` stops there."""
    from workbench import cli, gpu
    from workbench.gpu import GIB, GpuProcess

    busy = [snapshot(0, 70.0), snapshot(1, 0.01, processes=[GpuProcess(pid=4242, gpu_memory=int(79 * GIB),
                                                                       user="asha", name="python train.py")])]
    monkeypatch.setattr(gpu, "sample_gpus", lambda *a, **k: (busy, None))
    code = cli.main(["train", "--config", "configs/demo.toml", "--gpus", "2", "--print-launch"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "warning: GPU 1 has 0.0 GiB free; the forecast needs" in err and "pid 4242 python train.py" in err
    assert "--nproc-per-node=2" in out and "CUDA_VISIBLE_DEVICES=0,1" in out
    monkeypatch.setattr(gpu, "sample_gpus", lambda *a, **k: ([snapshot(0, 70.0), snapshot(1, 20.0)], None))
    assert cli.main(["train", "--config", "configs/demo.toml", "--gpus", "all", "--print-launch"]) == 0
    out, err = capsys.readouterr()
    assert "warning: 2 GPUs (0, 1): 70 / 20 GiB free" in err and "uneven free memory" in err
