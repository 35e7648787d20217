"""The Eval pane, driven with keys and clicks against the scripted engine, on real eval folders (written by
evaluation.py's writers): an eval listed and opened, rows sorted by the gap (a key, a header click), the
row view, another run's eval compared on the same rows, and an eval started, followed and stopped."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text
from textual.widgets import DataTable, Input, ProgressBar, Select, Static

from tests.ui import scenarios
from tests.ui.conftest import wait_for
from tests.ui.scripted import Emit, ScriptedEngine, scripted_app_factory
from workbench import eval_view as view
from workbench import evaluation as ev
from workbench import requests as rq
from workbench.protocol import EvalProgress
from workbench.runs import RunDir
from workbench.ui.app import WorkbenchApp
from workbench.ui.panes.eval_pane import EvalPane
from workbench.ui.widgets.eval_row import RowView
from workbench.ui.widgets.key_bar import KeyBar


@pytest.fixture(autouse=True)
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the run's own config says runs_dir = "runs"
    return tmp_path


def by_gap(row: int, conversation: str, reference: str) -> tuple[str, str]:
    """The tuned model answers with the reference (ROUGE-L 100) every time; the base model with all of it
    (row 1: gap 0), nothing (row 2: gap 100), its first half (row 3: F1 2/3, gap 33) or its first quarter
    (row 4: F1 2/5, gap 60)."""
    words = reference.split()
    base = {1: reference, 2: "", 3: " ".join(words[: len(words) // 2]), 4: " ".join(words[: len(words) // 4])}[row]
    return reference, base


def text(app: WorkbenchApp, selector: str) -> str:
    """What a Static shows, as plain text (a Rich table included), at its width on screen."""
    widget = app.screen.query_one(selector, Static)  # the row view is a screen of its own
    content = widget.content
    if isinstance(content, str | Text):
        return str(content)
    console = Console(width=max(widget.size.width, 40), file=io.StringIO(), record=True)
    console.print(content)
    return console.export_text()


def table_rows(app: WorkbenchApp) -> list[int]:
    table = app.query_one("#eval-table", DataTable)
    return [int(str(table.get_row_at(i)[0])) for i in range(table.row_count)]


async def open_pane(pilot, folder: Path | None = None) -> EvalPane:
    app: WorkbenchApp = pilot.app
    await app.panes_mounted()
    await wait_for(pilot, lambda: app.engine_ready, 10, "the engine's hello")
    await pilot.press("6")
    pane = app.query_one(EvalPane)
    if folder is not None:
        await wait_for(pilot, lambda: pane.loaded is not None and pane.loaded.folder == folder, 20, f"{folder} open")
        await pilot.pause()
    return pane


def app_on(run: RunDir, script: dict | None = None) -> tuple[WorkbenchApp, list[ScriptedEngine]]:
    factory, engines = scripted_app_factory(script)
    return WorkbenchApp(config_path="unused.toml", attach=str(run.path), engine_factory=factory), engines


async def test_the_active_runs_eval_is_listed_and_shown_base_vs_tuned():
    run = scenarios.finished_run(Path("runs"), "judged")
    folder = scenarios.write_eval(run.path, rows=8)
    app, _engines = app_on(run)
    async with app.run_test(size=(160, 45)) as pilot:
        pane = await open_pane(pilot, folder.absolute())
        pick = app.query_one("#eval-pick", Select)
        assert pick.value == str(folder.absolute())
        [info] = pane.infos
        assert info.label() == "final-adapter-8rows-vs-base · 8/8 rows · complete · final adapter · vs base"
        summary = text(app, "#eval-summary")
        for word in ("ROUGE-1 F1", "ROUGE-2 F1", "ROUGE-L F1", "chrF++ (row mean)", "length ratio",
                     "Devanagari share", "repetition loop (rows)", "copies input (rows)", "unfinished (rows)",
                     "tuned", "base", "95% interval", "excl. 0"):
            assert word in summary, word
        # the numbers are the report's: tuned minus base on ROUGE-L with its interval
        d = next(d for d in pane.loaded.report.differences if d.metric == "rougeL")
        assert f"{d.mean:+.1f}" in summary and f"[{d.low:+.1f}, {d.high:+.1f}]" in summary
        assert table_rows(app) == [1, 2, 3, 4, 5, 6, 7, 8]
        assert "final adapter (step 150) · 8 of 8 rows scored" in text(app, "#eval-about")
        assert app.query_one("#eval-against", Select).value == "base"
        # the highlighted row's texts beside the scores
        first = pane.loaded.records[0]
        await pilot.pause()
        preview = text(app, "#eval-preview")
        assert "row 1" in preview and first.reference in preview and first.outputs["tuned"].text in preview


async def test_rows_sort_by_the_gap_with_a_key_and_by_a_header_click():
    run = scenarios.finished_run(Path("runs"), "judged")
    folder = scenarios.write_eval(run.path, rows=4, answers=by_gap)
    app, _engines = app_on(run)
    async with app.run_test(size=(160, 45)) as pilot:
        pane = await open_pane(pilot, folder.absolute())
        assert app.focused is app.query_one("#eval-table")
        keys = {k.key: k.description for k in app.query_one(KeyBar).keys}
        assert keys["s"] == "Sort (or click a header)" and keys["g"] == "Sort by gap"
        await pilot.press("g")
        assert table_rows(app) == pane.rows_shown() == [2, 4, 3, 1], "biggest gain first"
        await pilot.press("g")
        assert table_rows(app) == [1, 3, 4, 2], "g again: smallest first"
        await pilot.press("s")  # the next column after the gap: back to row order
        assert table_rows(app) == [1, 2, 3, 4]
        # a click on the "base R-L" header sorts by the base model's score, best first
        table = app.query_one("#eval-table", DataTable)
        columns = list(table.columns.values())
        index = next(i for i, c in enumerate(columns) if str(c.key.value) == "other")
        x = sum(c.get_render_width(table) for c in columns[:index]) + 2
        await pilot.click("#eval-table", offset=(x, 0))
        await pilot.pause()
        assert pane.sort_key == "other"
        assert table_rows(app) == [1, 3, 4, 2]  # base R-L 100, 66.7, 40, 0
        assert "base R-L ▼" in str(table.columns[table.ordered_columns[index].key].label)
        await pilot.click("#eval-table", offset=(x, 0))  # the same header again: reversed
        await pilot.pause()
        assert table_rows(app) == [2, 4, 3, 1]
        await pilot.press("m")  # the gap on chrF++ now
        assert "Δ chrF++" in [str(c.label) for c in table.ordered_columns][6]


async def test_enter_opens_the_row_whole_and_n_walks_the_rows():
    run = scenarios.finished_run(Path("runs"), "judged")
    folder = scenarios.write_eval(run.path, rows=4, answers=by_gap)
    app, _engines = app_on(run)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_pane(pilot, folder.absolute())
        await pilot.press("g", "enter")  # the top row: row 2, whose base answer was empty
        await wait_for(pilot, lambda: isinstance(app.screen, RowView), 5, "the row view")
        record = next(r.record for r in pane.loaded.report.rows if r.record.row == 2)
        assert "row 2" in text(app, "#row-view-title") and "1 of 4" in text(app, "#row-view-title")
        assert record.input in text(app, "#row-view-conversation")
        assert record.reference in text(app, "#row-view-reference")
        assert "R-L 100.0" in text(app, "#row-view-tuned")
        assert "(empty)" in text(app, "#row-view-other") and "flags: empty" in text(app, "#row-view-other")
        await pilot.press("n")  # the next row in the table's order: row 4
        assert "row 4" in text(app, "#row-view-title")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, RowView)


async def test_another_runs_eval_on_the_same_rows_takes_the_base_models_place():
    first = scenarios.finished_run(Path("runs"), "first")
    second = scenarios.finished_run(Path("runs"), "second")
    mine = scenarios.write_eval(first.path, rows=4, answers=by_gap)
    # the second run's tuned model answered as the first's base model did
    theirs = scenarios.write_eval(second.path, rows=4, base=False,
                                  answers=lambda row, conv, ref: (by_gap(row, conv, ref)[1], ""))
    app, _engines = app_on(first)
    async with app.run_test(size=(160, 45)) as pilot:
        pane = await open_pane(pilot, mine.absolute())
        against = app.query_one("#eval-against", Select)
        labels = [str(label) for label, _value in against._options]
        assert "vs second / final-adapter-4rows · 4 shared rows" in labels
        await pilot.press("c")  # the picker opens
        await pilot.pause()
        assert against.expanded
        await pilot.press("escape")
        against.value = str(theirs.absolute())
        await wait_for(pilot, lambda: pane.other is not None, 10, "the other eval")
        await pilot.pause()
        summary = text(app, "#eval-summary")
        assert "vs: second (final-adapter-4rows)" in summary and "over the 4 rows both scored" in summary
        table = app.query_one("#eval-table", DataTable)
        assert [str(c.label).split(" ▲")[0] for c in table.ordered_columns][5:7] == ["vs R-L", "Δ R-L"]
        await pilot.press("g")
        assert table_rows(app) == [2, 4, 3, 1]  # the same gaps as against this run's own base model
        comparisons = {c.metric: c for c in view.compare(pane.loaded, pane.other)}
        assert f"{comparisons['rougeL'].difference.mean:+.1f}" in summary


async def test_an_eval_started_here_shows_its_progress_then_opens():
    run = scenarios.finished_run(Path("runs"), "judged")
    held: list[tuple[rq.Evaluate, str, Emit]] = []

    def evaluate(args: rq.Evaluate, rid: str, emit: Emit) -> None:
        held.append((args, rid, emit))  # answered by the test, batch by batch

    app, engines = app_on(run, {rq.Evaluate: evaluate})
    async with app.run_test(size=(160, 45)) as pilot:
        pane = await open_pane(pilot)
        await wait_for(pilot, lambda: pane.listed > 0, 10, "the listing")
        assert "No eval of this run yet" in text(app, "#eval-about")
        rows = app.query_one("#eval-rows", Input)
        rows.value = "8"
        await pilot.press("e")
        await wait_for(pilot, lambda: held, 5, "the request")
        args, rid, emit = held[0]
        assert (args.run_dir, args.rows, args.base, args.resume) == (str(run.path), 8, True, False)
        assert "Starting" in text(app, "#eval-status")
        assert app.query_one("#eval-stop").disabled is False and app.query_one("#eval-start").disabled is True
        folder = (run.path / "evals" / "final-adapter-8rows-vs-base").absolute()  # as the engine names it
        emit(EvalProgress(done=4, total=8, folder=str(folder)))
        await wait_for(pilot, lambda: "4/8 rows" in text(app, "#eval-status"), 5, "progress")
        assert "rows/s" in text(app, "#eval-status") and "ETA" in text(app, "#eval-status")
        bar = app.query_one("#eval-progress", ProgressBar)
        assert (bar.progress, bar.total) == (4, 8)
        scenarios.write_eval(run.path, rows=8)
        engines[0].answer(rid, rq.EvalFinished(folder=str(folder), complete=True, rows_done=8, rows_total=8))
        await wait_for(pilot, lambda: pane.loaded is not None and pane.loaded.folder == folder, 20, "the new eval")
        assert "Finished: 8/8 rows" in text(app, "#eval-status")
        assert len(pane.infos) == 1 and table_rows(app) == list(range(1, 9))
        assert app.query_one("#eval-start").disabled is False


async def test_stop_keeps_the_rows_made_and_resume_continues_the_eval():
    run = scenarios.finished_run(Path("runs"), "judged")
    held: list[tuple[rq.Evaluate, str]] = []

    def evaluate(args: rq.Evaluate, rid: str, emit: Emit) -> None:
        held.append((args, rid))

    app, engines = app_on(run, {rq.Evaluate: evaluate})
    async with app.run_test(size=(160, 45)) as pilot:
        pane = await open_pane(pilot)
        app.query_one("#eval-rows", Input).value = "8"
        await pilot.press("e")
        await wait_for(pilot, lambda: held, 5, "the request")
        await pilot.press("x")
        await pilot.pause()
        assert [c.target for c in engines[0].requests(rq.Cancel)] == [held[0][1]]
        assert "Stopping" in text(app, "#eval-status")
        folder = scenarios.write_eval(run.path, rows=8, complete=False)  # the first batch only
        engines[0].answer(held[0][1], rq.EvalFinished(folder=str(folder), complete=False, rows_done=4, rows_total=8))
        await wait_for(pilot, lambda: pane.loaded is not None, 20, "the stopped eval")
        assert "Stopped with 4/8 rows kept" in text(app, "#eval-status")
        assert "4/8 rows · incomplete" in pane.infos[0].label() and "incomplete: r resumes it" in text(app, "#eval-about")
        assert app.query_one("#eval-resume").disabled is False
        await pilot.press("r")
        await wait_for(pilot, lambda: len(held) == 2, 5, "the resume request")
        args = held[1][0]
        assert (args.resume, args.name, args.rows, args.base, args.checkpoint) == (True, folder.name, 8, True, None)


async def test_the_scripted_engine_writes_the_eval_and_a_second_start_is_refused_with_its_message():
    run = scenarios.finished_run(Path("runs"), "judged")
    app, _engines = app_on(run)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_pane(pilot)
        app.query_one("#eval-rows", Input).value = "6"
        await pilot.press("e")
        await wait_for(pilot, lambda: pane.loaded is not None, 20, "the eval made and opened")
        assert pane.loaded.folder.name == "final-adapter-6rows-vs-base" and len(pane.loaded.records) == 6
        assert "Finished: 6/6 rows" in text(app, "#eval-status")
        await pilot.press("e")
        await wait_for(pilot, lambda: "already holds an eval" in text(app, "#eval-status"), 5, "the refusal")
        assert "Resume" in text(app, "#eval-status") and "Traceback" not in text(app, "#eval-status")
        assert app.query_one("#eval-start").disabled is False


async def test_without_a_run_the_pane_says_what_to_do():
    factory, _engines = scripted_app_factory()
    app = WorkbenchApp(config_path="unused.toml", engine_factory=factory)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_pane(pilot)
        await pilot.pause()
        assert "No run yet" in text(app, "#eval-about")
        await pilot.press("e")
        assert "No run to evaluate" in text(app, "#eval-status")
        await pilot.press("g")
        assert pane.loaded is None


async def test_a_damaged_eval_is_a_message_not_a_traceback():
    run = scenarios.finished_run(Path("runs"), "judged")
    folder = scenarios.write_eval(run.path, rows=4)
    app, _engines = app_on(run)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await open_pane(pilot, folder.absolute())
        (folder / ev.REPORT_FILE).write_text('{"plan": {"run": 1}}', encoding="utf-8")  # damaged after listing
        pane._load(str(folder))
        await wait_for(pilot, lambda: "not a readable eval" in text(app, "#eval-status"), 10, "the message")
        assert app.is_running
