"""Answers that arrive late, out of order or after a cancel never overwrite what the user asked for
since, and a failure of one request never disturbs another in flight."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Label, Static, TextArea

from tests.ui import scenarios
from tests.ui.conftest import wait_for
from tests.ui.scripted import scripted_app_factory
from workbench import requests as rq
from workbench.protocol import Error
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.chat_pane import ChatPane
from workbench.ui.panes.data_pane import DataPane

LEAVE = {rq.Preview: lambda args, rid, emit: None, rq.Statistics: lambda args, rid, emit: None}
"""Previews and statistics left unanswered: the test answers them, in the order it chooses."""


def pending(engine, kind: type[rq.Args]) -> list[tuple[str, rq.Args]]:
    return [(rid, args) for rid, args in engine.ids.items() if isinstance(args, kind)]


async def test_an_older_preview_answering_last_does_not_replace_the_newer_row(demo_config_path: Path):
    factory, engines = scripted_app_factory(LEAVE)
    app = WorkbenchApp(config_path=demo_config_path, engine_factory=factory)
    async with app.run_test(size=(140, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 10, "engine")
        await pilot.press("2")
        await pilot.pause()
        engine = engines[0]
        start_id, start = pending(engine, rq.Preview)[-1]
        assert isinstance(start, rq.Preview)
        engine.answer(start_id, scenarios.preview_answer(start.config, start.positions))  # row 1 shown
        await pilot.pause()
        await pilot.press("n", "g", "5", "enter")  # row 2, then (before it is answered) row 5
        await pilot.pause()
        (first_id, first), (second_id, second) = pending(engine, rq.Preview)[-2:]
        assert isinstance(first, rq.Preview) and isinstance(second, rq.Preview)
        # each engine thread answers when it is done: here the newer request finishes first
        engine.answer(second_id, scenarios.preview_answer(second.config, second.positions))
        await pilot.pause()
        engine.answer(first_id, scenarios.preview_answer(first.config, first.positions))
        await pilot.pause()
        pane = app.query_one(DataPane)
        assert pane.position == second.positions[0] == 4
        assert "row 5 of" in str(app.query_one("#data-position", Label).render())


async def test_a_cancelled_statistics_request_neither_shows_nor_forgets_the_newer_one(demo_config_path: Path):
    factory, engines = scripted_app_factory(LEAVE)
    app = WorkbenchApp(config_path=demo_config_path, engine_factory=factory)
    async with app.run_test(size=(140, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 10, "engine")
        await pilot.press("2", "s")  # statistics asked at start, then again: the first is cancelled
        await pilot.pause()
        engine = engines[0]
        (old_id, old), (new_id, _new) = pending(engine, rq.Statistics)[-2:]
        assert [c.target for c in engine.requests(rq.Cancel)] == [old_id]
        partial = scenarios.stats_answer(old.config)
        partial.stats.complete = False
        partial.stats.valid_rows = 7
        engine.answer(old_id, partial)  # the engine still answers the cancelled one, with what it had
        await pilot.pause()
        pane = app.query_one(DataPane)
        assert pane.stats is None, "the cancelled request's partial statistics are not shown"
        await pilot.press("s")  # the newer request is still the one to cancel
        await pilot.pause()
        assert [c.target for c in engine.requests(rq.Cancel)] == [old_id, new_id]


async def test_a_failed_fill_leaves_the_running_reply_cancellable(demo_config_path: Path):
    factory, engines = scripted_app_factory({rq.Generate: lambda args, rid, emit: None, **LEAVE})
    app = WorkbenchApp(config_path=demo_config_path, engine_factory=factory)
    async with app.run_test(size=(140, 40)) as pilot:
        await app.panes_mounted()
        await wait_for(pilot, lambda: app.engine_ready, 10, "engine")
        await pilot.press("4")
        app.query_one("#chat-input", TextArea).text = "राम: नमस्ते"
        await pilot.press("ctrl+g")  # a reply starts, and is not finished
        app.query_one(ChatPane).action_fill_heldout()  # meanwhile a fill fails
        await pilot.pause()
        engine = engines[0]
        fill_id = pending(engine, rq.Preview)[-1][0]
        engine.answer(fill_id, Error(type="data", message="no such file"))
        await pilot.pause()
        assert "no such file" in str(app.query_one("#chat-status", Static).render())
        await pilot.press("escape")  # esc still cancels the reply in progress
        await pilot.pause()
        generation_id = pending(engine, rq.Generate)[-1][0]
        assert [c.target for c in engine.requests(rq.Cancel)] == [generation_id]
