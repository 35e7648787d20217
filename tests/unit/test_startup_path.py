"""What runs before the TUI's first frame, checked without a clock (CI has no quiet machine).

The start-up path's cost is mostly imports and pydantic classes: each module or model that joins it costs
milliseconds on a 2-core machine, and nothing else would notice until the first-paint benchmark
(benchmarks/ui/first_paint.py: timed, not run in CI) does. So a child process starts the real console
script (`workbench.launch.main`, `workbench demo`) headless and reports, at the first frame (Textual's
`Ready` event), which modules are loaded, which pydantic models have their validators built, whether
anything read the installed distributions' metadata, and whether any workbench source was read
(pydantic's `use_attribute_docstrings` reads and tokenizes it). A module or model added to this path
must be added here on purpose.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import workbench.config as config_module

ROOT = Path(__file__).resolve().parents[2]

# The workbench modules loaded when the first frame is drawn. The other panes, the Config form's lower
# sections and the engine client's requests come after it.
STARTUP_MODULES = {
    "workbench", "workbench.launch", "workbench.cli", "workbench.settings", "workbench.config",
    "workbench.errors", "workbench.protocol", "workbench.client", "workbench.runs",
    "workbench.textwidth", "workbench.ui", "workbench.ui.app", "workbench.ui.bridge", "workbench.ui.commands",
    "workbench.ui.gc_schedule", "workbench.ui.messages", "workbench.ui.panes", "workbench.ui.panes.config_pane",
    "workbench.ui.widgets", "workbench.ui.widgets.deferred", "workbench.ui.widgets.focus_scroll",
    "workbench.ui.widgets.key_bar",
    "workbench.ui.widgets.one_line",
    "workbench.ui.widgets.state_switch",  # the model section, drawn first, has two on/off fields
    "workbench.ui.textual_internals",  # Esc+digit read as Alt+digit before the first key (read_esc_digit_as_alt)
}
# Never before the first frame: the ML stack (the engine's), and what only a later pane or screen needs.
NOT_AT_STARTUP = (
    "torch", "transformers", "unsloth", "trl", "peft", "datasets", "tokenizers", "numpy",
    "plotext", "textual_plotext",  # the Train pane's chart
    "pygments", "markdown_it",  # the help screen's Markdown
    "workbench.requests", "workbench.data", "workbench.templates", "workbench.engine",
    "workbench.ui.panes.data_pane", "workbench.ui.panes.train_pane", "workbench.ui.panes.chat_pane",
    "workbench.ui.panes.save_pane", "workbench.ui.help",
    "workbench.ui.panes.eval_pane", "workbench.ui.widgets.eval_row", "workbench.eval_view", "workbench.evaluation", "workbench.scores",
    "rouge_score", "sacrebleu", "nltk",  # the Eval pane's scores
)
# The only models whose validators are built before the first frame: the run configuration (the form shows
# it). The protocol's events are built when the first one arrives from the engine (defer_build).
BUILT_MODELS = {"_Section", "ModelSection", "LoraSection", "DataSection", "TrainingSection", "OutputSection", "EvalSection",
                "RunConfig"}

CHILD = r"""
import importlib.metadata, json, linecache, os, sys

OUT = sys.argv[1]
calls = []
for name in ("entry_points", "distributions", "distribution", "version", "metadata", "packages_distributions"):
    def spy(*args, _name=name, _real=getattr(importlib.metadata, name), **kwargs):
        calls.append(_name)
        return _real(*args, **kwargs)
    setattr(importlib.metadata, name, spy)

import textual.app

_run = textual.app.App.run

def run(self, *args, **kwargs):  # headless and without an engine process, as the UI tests run it
    kwargs.update(headless=True, size=(160, 50))
    self.start_engine = False
    return _run(self, *args, **kwargs)

def on_ready(self, event):  # Textual's Ready: the first frame has been displayed
    import gc
    from pydantic import BaseModel

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    report = {
        "modules": sorted(sys.modules),
        "models": {c.__name__: bool(c.__pydantic_complete__) for c in subclasses(BaseModel)
                   if c.__module__.startswith("workbench")},
        "metadata_calls": calls,
        "sources_read": sorted(p for p in linecache.cache if "workbench" in p),
        "gc_enabled": gc.isenabled(),
        "plugins_env": os.environ.get("PYDANTIC_DISABLE_PLUGINS"),
        "config_pane_shown": self.query_one("#config-pane").region.area > 0,
    }
    with open(OUT, "w") as f:
        json.dump(report, f)
    self.exit()

textual.app.App.run = run
textual.app.App.on_ready = on_ready
sys.argv = ["workbench", "demo"]
from workbench.launch import main
main()
"""


@pytest.fixture(scope="module")
def at_first_frame(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("startup") / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}  # the launcher sets it
    proc = subprocess.run([sys.executable, "-c", CHILD, str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.read_text())
    assert report["config_pane_shown"]
    return report


def test_the_workbench_modules_before_the_first_frame_are_the_known_ones(at_first_frame: dict[str, Any]) -> None:
    loaded = {m for m in at_first_frame["modules"] if m == "workbench" or m.startswith("workbench.")}
    assert loaded - STARTUP_MODULES == set(), "new on the start-up path: defer it, or add it here on purpose"
    assert STARTUP_MODULES - loaded == set(), "no longer on the start-up path: take it off the list"


def test_nothing_heavy_or_later_is_loaded_before_the_first_frame(at_first_frame: dict[str, Any]) -> None:
    loaded = set(at_first_frame["modules"])
    assert [m for m in NOT_AT_STARTUP if m in loaded] == []


def test_only_the_run_configuration_is_validated_before_the_first_frame(at_first_frame: dict[str, Any]) -> None:
    models = at_first_frame["models"]
    assert {name for name, built in models.items() if built} == BUILT_MODELS
    assert models.get("Log") is False  # the protocol's models exist; their validators wait for an event


def test_no_metadata_scan_and_no_source_read_before_the_first_frame(at_first_frame: dict[str, Any]) -> None:
    # pydantic scans every installed distribution's entry points for plugins unless told not to (the
    # launcher tells it); an environment with the ML stack has ~130 distributions.
    assert at_first_frame["plugins_env"] == "__all__"
    assert at_first_frame["metadata_calls"] == []
    # pydantic's use_attribute_docstrings reads (linecache) and tokenizes each model's source on Python < 3.13
    assert at_first_frame["sources_read"] == []


def test_the_garbage_collector_stays_off_until_the_first_frame(at_first_frame: dict[str, Any]) -> None:
    assert at_first_frame["gc_enabled"] is False


# -- the field descriptions: config.py sets them from the docstrings itself --------------------------------

def _reference_config(tmp_path: Path) -> Any:
    """config.py built with pydantic's own `use_attribute_docstrings=True`: the reference."""
    source = Path(config_module.__file__).read_text(encoding="utf-8")
    ours = 'model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)'
    assert source.count(ours) == 1 and source.count("_FIELD_DOCS = _attribute_docstrings()") == 1
    source = source.replace(ours, ours.replace("ConfigDict(", "ConfigDict(use_attribute_docstrings=True, "))
    source = source.replace("_FIELD_DOCS = _attribute_docstrings()", "_FIELD_DOCS: dict[str, dict[str, str]] = {}")
    path = tmp_path / "reference_config.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("reference_config", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["reference_config"] = module  # pydantic finds a class's source through its module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["reference_config"]
    return module


def _fields(run_config: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, info in run_config.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        out[section] = (info.description, model.__name__)
        for name, field in model.model_fields.items():
            out[f"{section}.{name}"] = (field.description, repr(field.annotation), repr(field.default),
                                        repr(field.metadata), field.default_factory is not None)
    return out


def test_every_field_description_is_what_use_attribute_docstrings_gives(tmp_path: Path) -> None:
    reference = _reference_config(tmp_path)
    ours = _fields(config_module.RunConfig)
    assert ours == _fields(reference.RunConfig)
    assert all(value[0] for value in ours.values()), "every field has a docstring"
    assert config_module.RunConfig.model_json_schema() == reference.RunConfig.model_json_schema()
