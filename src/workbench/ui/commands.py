"""Command palette entries (ctrl+p) for every action of the workbench."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

PANES = (("config", "1 Config"), ("data", "2 Data"), ("train", "3 Train"), ("chat", "4 Chat"), ("save", "5 Save/Runs"))

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
)


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
