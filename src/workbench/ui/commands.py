"""Command palette entries (ctrl+p) for every action of the workbench."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from workbench.config import all_fields

PANES = (("config", "1 Config"), ("data", "2 Data"), ("train", "3 Train"), ("chat", "4 Chat"), ("save", "5 Save/Runs"),
         ("eval", "6 Eval"))

FIELD_TITLE_HELP = 48
"""Characters of a field's help in its palette title (the whole help is the line under it)."""

# (title, pane, the pane's action, help): each runs `action_<action>` of that pane.
PANE_ACTIONS = (
    ("Start training", "train", "start", "train with the current config"),
    ("Stop training", "train", "stop", "stop at the step boundary and checkpoint"),
    ("Resume training", "train", "resume", "continue from the newest checkpoint"),
    ("Zoom in on the loss chart", "train", "zoom_in", "all steps, last 1000, 200, 50 (+)"),
    ("Zoom out of the loss chart", "train", "zoom_out", "back towards all steps (-)"),
    ("Loss smoothing", "train", "smoothing", "cycle the EMA weight: 0.6, 0.9, off (s)"),
    ("Search the training log", "train", "search_log", "highlight lines; n / N between them (/)"),
    ("Save config", "config", "save", "write the config TOML"),
    ("Load config", "config", "load", "read the TOML named in the path box"),
    ("Next data row", "data", "next_row", "Data pane"),
    ("Previous data row", "data", "previous_row", "Data pane"),
    ("Dataset statistics", "data", "stats", "recompute over every row"),
    ("Send chat", "chat", "send", "generate a summary"),
    ("Fill chat from held-out row", "chat", "fill_heldout", "Chat pane"),
    ("Save model", "save", "save", "save adapter / merged / GGUF"),
    ("Refresh runs", "save", "refresh_runs", "Save/Runs pane"),
    ("Compare with the selected run", "save", "compare_run", "overlay its loss curve on the active run's (c)"),
    ("Rename the selected run", "save", "rename_run", "Save/Runs pane (r)"),
    ("Delete the selected run", "save", "delete_run", "asks first; refused while it trains (d)"),
    ("Evaluate the active run", "eval", "start", "summarize held-out rows, tuned and base, and score them (e)"),
    ("Stop the eval", "eval", "stop", "after the batch in progress; finished rows are kept (x)"),
    ("Resume the eval", "eval", "resume", "continue the picked incomplete eval (r)"),
    ("Sort eval rows", "eval", "sort", "by the next column: row, R-1, R-2, R-L, chrF++, other, gap (s)"),
    ("Sort eval rows by the gap", "eval", "sort_gap", "tuned minus base (or the compared run), again reverses (g)"),
    ("Reverse the eval rows' order", "eval", "reverse", "Eval pane (o)"),
    ("Gap metric", "eval", "metric", "the score the gap is taken on: R-1, R-2, R-L, chrF++ (m)"),
    ("Compare with another run's eval", "eval", "compare", "pick an eval on the same rows in place of base (c)"),
)


def field_title(section: str, name: str, help_text: str) -> str:
    """"Field: lora.r — LoRA rank: the size of the low-rank…": the name, and the help's start to match on."""
    short = help_text if len(help_text) <= FIELD_TITLE_HELP else help_text[:FIELD_TITLE_HELP - 1].rstrip() + "…"
    return f"Field: {section}.{name} — {short}"


def go_to_field(app: Any, field: str) -> None:
    """Open the Config pane with the focus in `field`'s editor."""
    app.action_pane("config")
    app.pane("config").focus_field(field)


class WorkbenchCommands(Provider):
    """Command palette entries for every action."""

    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        app: Any = self.app

        def pane_action(pane: str, action: str) -> None:
            getattr(app.pane(pane), f"action_{action}")()

        cmds: list[tuple[str, Callable[[], Any], str]] = [
            (f"Go to {title[2:]}", partial(app.action_pane, pane), f"switch to the {title[2:]} pane")
            for pane, title in PANES
        ]
        cmds += [(title, partial(pane_action, pane, action), help_text)
                 for title, pane, action, help_text in PANE_ACTIONS]
        cmds += [
            ("Restart engine", app.action_restart_engine, "start a fresh engine process"),
            ("Help", app.action_help, "key bindings"),
        ]
        # Every field of the form, so that one can be reached by name or by what its help says.
        cmds += [(field_title(section, name, help_text), partial(go_to_field, app, f"{section}.{name}"), help_text)
                 for section, name, help_text in all_fields()]
        return cmds

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
