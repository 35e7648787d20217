"""`workbench demo` needs nothing from the hub: it runs offline unless the user says otherwise, so its engine
neither probes the hub at start nor covers the pane with a toast about it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workbench import cli


@pytest.fixture
def tui_started(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    started: list[Path] = []
    monkeypatch.setattr(cli, "_run_tui", lambda config_path, attach=None: started.append(config_path) or 0)
    return started


def test_the_demo_runs_offline(monkeypatch: pytest.MonkeyPatch, tui_started: list[Path]) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert cli.main(["demo"]) == 0
    assert tui_started and tui_started[0].name == "demo.toml"
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_the_users_choice_stands(monkeypatch: pytest.MonkeyPatch, tui_started: list[Path]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert cli.main(["demo"]) == 0
    assert os.environ["HF_HUB_OFFLINE"] == "0"


def test_the_tui_on_a_config_probes_the_hub_as_before(monkeypatch: pytest.MonkeyPatch, tui_started: list[Path]) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert cli.main([]) == 0
    assert "HF_HUB_OFFLINE" not in os.environ
