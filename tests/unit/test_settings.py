"""Every environment variable the code reads is listed in workbench.settings, and the README lists them all."""

from __future__ import annotations

import re
from pathlib import Path

from workbench import settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_lists_every_variable() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in settings.VARIABLES if f"`{name}`" not in readme]
    assert missing == []


def test_no_workbench_variable_is_read_outside_settings() -> None:
    for path in (ROOT / "src" / "workbench").rglob("*.py"):
        if path.name == "settings.py":
            continue
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r"[\"'](WORKBENCH_[A-Z_]+)[\"']", text):
            assert name in settings.VARIABLES, f"{path.name} reads {name}, which settings.VARIABLES does not list"
        assert not re.search(r"os\.environ(\.get)?\([\"']WORKBENCH_", text), f"{path.name} reads os.environ itself"
