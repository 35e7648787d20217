"""The Eval pane's row view: one held-out row whole, the conversation, the reference and each model's
summary with its scores, Devanagari wrapped as the terminal draws it (the app aligns Rich's widths with
`workbench.textwidth`). n / p walk the rows in the table's order."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from workbench import eval_view as view
from workbench import evaluation as ev

COMPACT_BELOW = 110
"""Columns: below this the Eval pane stacks its parts and the row view its summaries."""


class RowView(ModalScreen[None]):
    """One row whole: the conversation, the reference, and each model's summary with its scores. n / p walk
    the rows in the table's order."""

    BINDINGS = [("escape,q", "dismiss", "Close"), ("n", "next", "Next row"), ("p", "previous", "Previous row")]

    def __init__(self, results: list[ev.RowResult], index: int, other: dict[int, ev.RowResult],
                 other_title: str | None) -> None:
        super().__init__()
        self.results = results
        self.index = index
        self.other = other
        """The compared eval's rows (its tuned model), when one is compared."""
        self.other_title = other_title

    def compose(self) -> ComposeResult:
        with Vertical(id="row-view-dialog"):
            yield Static("", id="row-view-title")
            with VerticalScroll(id="row-view-body"):
                yield Static("", id="row-view-conversation", classes="row-view-part")
                with Horizontal(id="row-view-summaries"):
                    yield Static("", id="row-view-reference", classes="row-view-part")
                    yield Static("", id="row-view-tuned", classes="row-view-part")
                    yield Static("", id="row-view-other", classes="row-view-part")

    def on_mount(self) -> None:
        self.set_class(self.size.width < COMPACT_BELOW, "narrow")
        self.show()
        self.query_one("#row-view-body").focus()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < COMPACT_BELOW, "narrow")

    @staticmethod
    def _part(title: str, body: str, note: str = "", style: str = "bold") -> Text:
        text = Text.assemble((title, style), "\n", body or Text("(empty)", style="dim italic"))
        if note:
            text.append(f"\n{note}", style="dim")
        return text

    def _answer(self, title: str, result: ev.RowResult | None, style: str) -> Text:
        if result is None or "tuned" not in result.record.outputs:
            return self._part(title, "", "not made on this row", style)
        model: ev.Model = "tuned"
        output = result.record.outputs[model]
        return self._part(title, output.text, f"{view.scores_line(result.scores[model])}\n{view.output_note(output)}",
                          style)

    def show(self) -> None:
        result = self.results[self.index]
        record = result.record
        cut = f" (its first {record.cut_tokens} tokens cut to fit max_seq_length)" if record.cut_tokens else ""
        self.query_one("#row-view-title", Static).update(Text.assemble(
            (f"row {record.row}", "bold"), f" · {self.index + 1} of {len(self.results)} in the table's order"
            " · n / p next / previous · esc closes"))
        self.query_one("#row-view-conversation", Static).update(
            self._part(f"conversation ({record.prompt_tokens} prompt tokens{cut})", record.input))
        self.query_one("#row-view-reference", Static).update(self._part("reference", record.reference))
        self.query_one("#row-view-tuned", Static).update(self._answer("tuned", result, "bold cyan"))
        other = self.query_one("#row-view-other", Static)
        if self.other_title is not None:
            other.display = True
            other.update(self._answer(self.other_title, self.other.get(record.row), "bold magenta"))
        elif "base" in record.outputs:
            other.display = True
            base = record.outputs["base"]
            other.update(self._part("base (adapter off)", base.text,
                                    f"{view.scores_line(result.scores['base'])}\n{view.output_note(base)}"
                                    if "base" in result.scores else view.output_note(base), "bold yellow"))
        else:
            other.display = False
        self.query_one("#row-view-body", VerticalScroll).scroll_home(animate=False)

    def action_next(self) -> None:
        if self.index + 1 < len(self.results):
            self.index += 1
            self.show()

    def action_previous(self) -> None:
        if self.index > 0:
            self.index -= 1
            self.show()
