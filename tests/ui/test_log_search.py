"""The Train pane's log, driven with keys: it takes the focus and scrolls, stays put while new lines
arrive when scrolled up, and `/` searches it (matches highlighted, n / N between them, esc closes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static

from tests.ui import scenarios
from tests.ui.conftest import wait_for
from workbench.protocol import Log
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.train_pane import TrainPane
from workbench.ui.widgets.key_bar import KeyBar
from workbench.ui.widgets.search_log import SearchLog, match_spans

T0 = scenarios.T0


def keys(app: WorkbenchApp) -> list[str]:
    return [k.description for k in app.query_one(KeyBar).keys]


def status(app: WorkbenchApp) -> str:
    return str(app.query_one("#log-search-status", Static).render())


def highlighted(log: SearchLog, absolute: int) -> list[tuple[str, object]]:
    """The (text, background) of the highlighted pieces of a line as the log draws it."""
    strip = log._render_line(absolute - log._start_line, 0, log.scrollable_content_region.width)
    return [(seg.text, seg.style.bgcolor.name) for seg in strip
            if seg.style and seg.style.bgcolor and seg.style.bgcolor.name in ("yellow", "dark_orange")]


def in_view(log: SearchLog, absolute: int) -> bool:
    return 0 <= absolute - log._start_line - log.scroll_y < log.scrollable_content_region.height


def test_smart_case():
    assert match_spans("eval loss 5.1 at step 25, Eval again", "eval") == [(0, 4), (26, 30)]
    assert match_spans("eval loss 5.1 at step 25, Eval again", "Eval") == [(26, 30)]
    assert match_spans("anything", "") == []


async def test_search_highlights_and_moves_between_matches(demo_config_path: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    run = scenarios.finished_run(Path("runs"))  # 150 steps, an eval line every 25
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        train = app.query_one(TrainPane)
        train.replay(run.path)
        await pilot.press("3")
        await wait_for(pilot, lambda: train.last_done is not None, 10, "the history")
        log = app.query_one("#train-log", SearchLog)
        assert {"Zoom", "Smoothing", "Search log"} <= set(keys(app)) and "Next match" not in keys(app)
        await pilot.press("slash")
        box = app.query_one("#log-search", Input)
        assert box.has_focus and box.region.height == 1, "the search box, open and one line high"
        await pilot.press(*"eval at")
        await pilot.pause()
        evals = [i + log._start_line for i, strip in enumerate(log.lines) if strip.text.startswith("eval")]
        assert len(evals) == 6 and log.matches == evals, "every eval line, and nothing else"
        assert log.current == evals[-1], "starting from the newest"
        assert status(app).startswith("6 of 6")
        assert highlighted(log, evals[-1]) == [("eval at", "dark_orange")], "the current match"

        await pilot.press("enter")  # to the log: n / N move
        assert log.has_focus and "Next match" in keys(app)
        await pilot.press("N", "N")
        assert log.current == evals[3] and status(app).startswith("4 of 6")
        assert highlighted(log, evals[3]) == [("eval at", "dark_orange")]
        assert in_view(log, evals[3]) and not in_view(log, evals[5]), "the view went to it"
        assert highlighted(log, evals[4]) == [("eval at", "yellow")], "the others are highlighted too"
        assert highlighted(log, evals[4] + 1) == [], "and only the matches"
        await pilot.press("n", "n", "n")  # 5, 6, then round to the oldest
        assert log.current == evals[0] and status(app).startswith("1 of 6") and in_view(log, evals[0])
        assert highlighted(log, evals[0]) == [("eval at", "dark_orange")]

        await pilot.press("escape")  # closes the search: no highlights, the log keeps the focus
        assert not log.matches and not log.search_query and log.has_focus and box.region.height == 0
        assert highlighted(log, evals[0]) == []
        await pilot.press("escape")  # and leaves the log, as esc leaves any field
        assert app.query_one("#train-start").has_focus or app.query_one("#train-stop").has_focus

        await pilot.press("slash", *"no such text")
        assert status(app) == "no match" and log.matches == []
        await pilot.press("escape")


async def test_the_log_scrolls_and_stays_put_while_lines_arrive(demo_config_path: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    run = scenarios.finished_run(Path("runs"))
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        train = app.query_one(TrainPane)
        train.replay(run.path)
        await pilot.press("3")
        await wait_for(pilot, lambda: train.last_done is not None, 10, "the history")
        log = app.query_one("#train-log", SearchLog)
        await pilot.press("l")  # the log takes the focus
        assert log.has_focus and log.following and log.scroll_y == log.max_scroll_y > 0
        await pilot.press("up", "up", "pageup")
        top = log.scroll_y
        assert top < log.max_scroll_y - 2 and not log.following
        first_line = log.lines[int(top)].text
        train.handle_event(Log(t=T0 + 900, run=run.name, step=151, total_steps=150, loss=5.0))
        await pilot.pause()
        assert log.scroll_y == top and log.lines[int(log.scroll_y)].text == first_line, "not yanked to the end"
        await pilot.press("end")
        assert log.following
        train.handle_event(Log(t=T0 + 901, run=run.name, step=152, total_steps=150, loss=5.0))
        await pilot.pause()
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y and log.lines[-1].text.startswith("step 152"), "following again"


async def test_a_scrolled_log_keeps_its_lines_in_view_when_old_ones_go(demo_config_path: Path):
    app = WorkbenchApp(config_path=demo_config_path, start_engine=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await app.panes_mounted()
        await pilot.press("3")
        log = app.query_one("#train-log", SearchLog)
        for i in range(TrainPane.LOG_LINES):
            log.write(f"line {i}")
        await pilot.pause()
        await pilot.press("l", "home", "pagedown")
        shown = log.lines[int(log.scroll_y)].text
        for i in range(5):  # the log is full: each new line drops the oldest
            log.write(f"new {i}")
        await pilot.pause()
        assert log._start_line == 5 and log.lines[int(log.scroll_y)].text == shown
