"""Renaming and deleting runs (runs.py): names are checked, a live run is refused, a delete is never half
done, and every failure is a UserError that says why."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from workbench.errors import UserError
from workbench.protocol import Done, Log, TrainStart
from workbench.runs import (
    COMPLETE_MARKER,
    TRASH_PREFIX,
    RunDir,
    check_run_name,
    delete_run,
    list_runs,
    rename_run,
    run_inventory,
)


def make_run(runs: Path, name: str, steps: int = 3) -> RunDir:
    run = RunDir.create(runs, name)
    run.config_path.write_text('[model]\nname = "tiny"\n', encoding="utf-8")
    run.append(TrainStart(t=1.0, run=name, total_steps=steps, run_dir=str(run.path), train_rows=4, effective_batch=1))
    for s in range(1, steps + 1):
        run.append(Log(t=1.0 + s, run=name, step=s, total_steps=steps, loss=2.0 / s))
    run.append(Done(t=9.0, run=name, status="completed", step=steps, total_steps=steps, final_loss=2.0 / steps,
                    message="done"))
    return run


def live(run: RunDir) -> None:
    """Mark the run as trained by a live engine: this very process."""
    run.write_engine_info(os.getpid(), None)


@pytest.mark.parametrize("name, ok", [
    ("run-2", True), ("Gemma_9b.v2", True), ("a", True), ("x" * 100, True),
    ("", False), (".hidden", False), ("-dash", False), ("a/b", False), ("a b", False), ("नाम", False),
    ("x" * 101, False), ("ok\n", False), ("..", False),
])
def test_run_names(name: str, ok: bool) -> None:
    assert (check_run_name(name) is None) == ok, check_run_name(name)


def test_rename_moves_the_folder_and_keeps_everything(tmp_path: Path) -> None:
    run = make_run(tmp_path, "first")
    renamed = rename_run(run, "second")
    assert renamed.path == tmp_path / "second" and not run.path.exists()
    assert [ev.step for ev in renamed.events() if isinstance(ev, Log)] == [1, 2, 3]
    assert [r.name for r in list_runs(tmp_path)] == ["second"]


@pytest.mark.parametrize("new, kind", [("first", "bad_name"), ("bad name", "bad_name"), ("taken", "name_taken"),
                                       ("empty-dir", "name_taken")])
def test_rename_refusals_leave_the_run(tmp_path: Path, new: str, kind: str) -> None:
    run = make_run(tmp_path, "first")
    make_run(tmp_path, "taken")
    (tmp_path / "empty-dir").mkdir()  # os.rename would silently replace an empty folder
    with pytest.raises(UserError) as err:
        rename_run(run, new)
    assert err.value.type == kind and err.value.message
    assert run.path.is_dir() and (tmp_path / "empty-dir").is_dir()


def test_a_live_run_is_neither_renamed_nor_deleted(tmp_path: Path) -> None:
    run = make_run(tmp_path, "busy")
    live(run)
    for act in (lambda: rename_run(run, "other"), lambda: delete_run(run)):
        with pytest.raises(UserError) as err:
            act()
        assert err.value.type == "run_live" and str(os.getpid()) in err.value.message
    assert run.path.is_dir() and run_inventory(run).live_pid == os.getpid()
    run.clear_engine_info()  # the engine ended: now it can go
    assert delete_run(run).leftover is None and not run.path.exists()


def test_a_failed_rename_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path, "first")

    def denied(*args: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "rename", denied)
    with pytest.raises(UserError, match="permission denied"):
        rename_run(run, "second")
    assert run.path.is_dir()


def test_delete_removes_the_run_and_lists_what_is_lost(tmp_path: Path) -> None:
    run = make_run(tmp_path, "old", steps=5)
    for step in (2, 4):
        folder = run.checkpoints_dir / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / COMPLETE_MARKER).write_text(str(step), encoding="utf-8")
        (folder / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    run.adapter_dir.mkdir()
    (run.adapter_dir / "adapter_config.json").write_text("{}", encoding="utf-8")
    (run.path / "export-lora").mkdir()
    inventory = run_inventory(run)
    assert (inventory.steps, inventory.checkpoints, inventory.has_adapter, inventory.exports) == (5, 2, True, ("export-lora",))
    assert inventory.bytes > 8192 and inventory.live_pid is None
    text = inventory.describe()
    assert "5 steps" in text and "2 checkpoints" in text and "final adapter" in text and "export-lora" in text
    result = delete_run(run)
    assert result.leftover is None and not run.path.exists()
    assert list(tmp_path.iterdir()) == [], "nothing left aside"


def test_a_delete_that_cannot_rename_touches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path, "kept")

    def denied(*args: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "rename", denied)
    with pytest.raises(UserError, match="permission denied") as err:
        delete_run(run)
    assert "Nothing was removed" in err.value.hint
    assert [r.name for r in list_runs(tmp_path)] == ["kept"] and len(run.events()) == 5


def test_a_delete_cut_short_is_out_of_the_list_not_half_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path, "half")
    make_run(tmp_path, "other")
    real_rmtree = shutil.rmtree

    def fails_midway(path: str | Path, *args: object, **kwargs: object) -> None:
        (Path(path) / "config.toml").unlink()  # some files went, then:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(shutil, "rmtree", fails_midway)
    result = delete_run(run)
    assert result.leftover is not None and result.leftover.name.startswith(TRASH_PREFIX)
    assert result.reason == "permission denied"
    assert [r.name for r in list_runs(tmp_path)] == ["other"], "the half-removed run is not listed"
    assert (result.leftover / "events.jsonl").exists(), "what could not be removed is kept aside, not lost track of"
    real_rmtree(result.leftover)


def test_loss_curve_reads_each_step_once(tmp_path: Path) -> None:
    run = make_run(tmp_path, "curve", steps=4)
    run.append(Log(t=20.0, run="curve", step=4, total_steps=8, loss=9.9))  # a resume logs step 4 again
    run.append(Log(t=21.0, run="curve", step=5, total_steps=8, loss=float("nan")))
    run.append(Log(t=22.0, run="curve", step=6, total_steps=8, loss=0.25))
    assert run.loss_curve() == ([1.0, 2.0, 3.0, 4.0, 6.0], [2.0, 1.0, 2.0 / 3, 0.5, 0.25])
