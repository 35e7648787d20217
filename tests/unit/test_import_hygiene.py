"""The light modules never pull in the ML stack (or the TUI), so the CLI starts fast and the unit tier
runs without torch."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "unsloth", "trl", "peft")
LIGHT_MODULES = (
    "workbench.cli",
    "workbench.config",
    "workbench.protocol",
    "workbench.runs",
    "workbench.gpu",
    "workbench.data",
    "workbench.templates",
    "workbench.client",
    "workbench.tokenview",
    "workbench.eval_view",
)
NO_TUI_MODULES = (
    "workbench.config",
    "workbench.data",
    "workbench.protocol",
    "workbench.runs",
    "workbench.gpu",
    "workbench.templates",
    "workbench.eval_view",  # the Eval pane's tables: plain data, laid out by ui/panes/eval_pane.py
)


def _loaded_after_import(modules: tuple[str, ...], watch: tuple[str, ...]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"watch = {list(watch)!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in watch)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_light_modules_do_not_import_the_ml_stack() -> None:
    assert _loaded_after_import(LIGHT_MODULES, HEAVY) == []


def test_core_modules_do_not_import_textual() -> None:
    assert _loaded_after_import(NO_TUI_MODULES, ("textual",)) == []


def test_the_check_itself_can_fail() -> None:
    # the same probe does see a module that is imported (json is always there)
    assert _loaded_after_import(("workbench.config",), ("json", "pydantic")) != []



