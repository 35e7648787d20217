"""Command palette entries (ctrl+p) for every action of the workbench."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

PANES = (("config", "1 Config"), ("data", "2 Data"), ("train", "3 Train"), ("chat", "4 Chat"), ("save", "5 Save/Runs"))


class WorkbenchCommands(Provider):
    """Command palette entries for every action."""

    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        app: Any = self.app
        cmds: list[tuple[str, Callable[[], Any], str]] = [
            (f"Go to {title[2:]}", partial(app.action_pane, pane), f"switch to the {title[2:]} pane")
            for pane, title in PANES
        ]
        cmds += [
            ("Start training", lambda: app.pane("train").action_start(), "train with the current config"),
            ("Stop training", lambda: app.pane("train").action_stop(), "stop at the step boundary and checkpoint"),
            ("Resume training", lambda: app.pane("train").action_resume(), "continue from the newest checkpoint"),
            ("Save config", lambda: app.pane("config").action_save(), "write the config TOML"),
            ("Load config", lambda: app.pane("config").action_load(), "read the TOML named in the path box"),
            ("Next data row", lambda: app.pane("data").action_next_row(), "Data pane"),
            ("Previous data row", lambda: app.pane("data").action_previous_row(), "Data pane"),
            ("Dataset statistics", lambda: app.pane("data").action_stats(), "recompute over every row"),
            ("Send chat", lambda: app.pane("chat").action_send(), "generate a summary"),
            ("Fill chat from held-out row", lambda: app.pane("chat").action_fill_heldout(), "Chat pane"),
            ("Save model", lambda: app.pane("save").action_save(), "save adapter / merged / GGUF"),
            ("Refresh runs", lambda: app.pane("save").action_refresh_runs(), "Save/Runs pane"),
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
