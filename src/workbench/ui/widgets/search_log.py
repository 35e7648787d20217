"""The Train pane's log: scrolled with the keys once it has the focus, and searched with `/`.

`SearchLog` is a RichLog that
- follows new lines only while its view is at the bottom: scrolled up (to read, or to a match), it stays
  put while training writes on, and even keeps the same lines in view when the oldest are dropped
  (a RichLog keeps 2000). Back at the bottom (End), it follows again.
- highlights the lines that match a search, and moves between them (n: newer, N: older, both wrap).

It searches the lines as shown (its Strips), one line at a time: a match across a wrapped line's break
is not found. Log lines are shorter than the log is wide (and RichLog never wraps narrower than 78
columns), so only long status messages wrap. Matching is smart-case, as in less and vim: a query in
lower case ignores case, one with a capital letter does not. Plain text, not a regular expression: a
half-typed pattern is never an error.

Cost on the UI thread: a search scans the 2000 lines once (a few ms); while a search is open each
written line is scanned as it arrives; only the lines on screen are highlighted, when drawn.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import pairwise
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.strip import Strip
from textual.widgets import Input, RichLog, Static

MATCH = Style(color="black", bgcolor="yellow")
CURRENT = Style(color="black", bgcolor="dark_orange", bold=True)


def match_spans(text: str, query: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of every occurrence of `query` in `text`, smart-case."""
    if not query:
        return []
    haystack, needle = (text.lower(), query) if query == query.lower() else (text, query)
    spans, start = [], haystack.find(needle)
    while start >= 0:
        spans.append((start, start + len(needle)))
        start = haystack.find(needle, start + len(needle))
    return spans


def highlight(strip: Strip, spans: list[tuple[int, int]], style: Style) -> Strip:
    """`strip` with `style` laid over the characters in `spans` (character offsets into strip.text)."""
    out: list[Segment] = []
    position = 0
    for segment in strip:
        text, seg_style, control = segment
        if control or not text:
            out.append(segment)
            continue
        start, end = position, position + len(text)
        position = end
        cuts = sorted({start, end, *(max(start, min(end, b)) for span in spans for b in span)})
        for a, b in pairwise(cuts):
            piece = text[a - start:b - start]
            inside = any(s <= a < e for s, e in spans)
            out.append(Segment(piece, (seg_style + style) if inside and seg_style else style if inside else seg_style))
    return Strip(out, strip.cell_length)


class SearchLog(RichLog):
    BINDINGS = [
        Binding("n", "next_match", "Next match"),
        Binding("N", "previous_match", "Prev match"),
    ]

    class Matches(Message):
        """The matches or the current one changed (for the search bar's count)."""

        def __init__(self, log: SearchLog) -> None:
            super().__init__()
            self.log = log

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.search_query = ""
        """What the log is searched for ("": no search). Not `query`: that is every widget's DOM query."""
        self.matches: list[int] = []
        """The matching lines, as absolute line numbers (the index in `lines` plus `_start_line`, which
        grows as the oldest lines are dropped), oldest first."""
        self._match_set: set[int] = set()
        self.current: int | None = None
        """The match the view is on (absolute line number)."""
        self._scanned = 0
        """Absolute line number up to which lines were searched."""
        self._following = True

    # -- following the end ------------------------------------------------------------------------
    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Only scrolling moves this: a write grows the end without moving the view, and RichLog's own
        # scroll to the end lands on it (following again).
        self._following = new_value >= self.max_scroll_y

    @property
    def following(self) -> bool:
        """Whether new lines scroll the view (it is at the bottom)."""
        return self._following

    def write(self, content: Any, width: int | None = None, expand: bool = False, shrink: bool = True,
              scroll_end: bool | None = None, animate: bool = False) -> SearchLog:
        if scroll_end is None and not self._following:
            scroll_end = False
        dropped_before = self._start_line
        super().write(content, width, expand, shrink, scroll_end, animate)
        dropped = self._start_line - dropped_before
        if dropped and not self._following:
            # The oldest lines went and the rest moved up: move the view with them.
            self.scroll_to(y=max(0, self.scroll_y - dropped), animate=False, immediate=True)
        if self.search_query:
            self._scan()
        return self

    def clear(self) -> SearchLog:
        super().clear()
        self.matches, self._match_set, self.current, self._scanned = [], set(), None, 0
        self._following = True
        if self.search_query:
            self.post_message(self.Matches(self))
        return self

    # -- searching --------------------------------------------------------------------------------
    def search(self, query: str) -> None:
        """Highlight the lines with `query` and go to the nearest one above the bottom of the view (with
        the view at the end: the newest). An empty query ends the search."""
        self.search_query = query
        self.matches, self._match_set, self.current = [], set(), None
        self._scanned = self._start_line
        if query:
            self._scan(announce=False)
            bottom = self._start_line + int(self.scroll_y) + self.scrollable_content_region.height
            at_or_above = bisect_right(self.matches, bottom - 1)
            if self.matches:
                self.current = self.matches[at_or_above - 1] if at_or_above else self.matches[0]
                self._show_current()
        self._line_cache.clear()
        self.refresh()
        self.refresh_bindings()
        self.post_message(self.Matches(self))

    def _scan(self, announce: bool = True) -> None:
        before = len(self.matches)
        if self.matches and self.matches[0] < self._start_line:  # dropped from the log
            self.matches = self.matches[bisect_left(self.matches, self._start_line):]
            self._match_set = set(self.matches)
            if self.current is not None and self.current < self._start_line:
                self.current = self.matches[0] if self.matches else None
        first = max(self._scanned - self._start_line, 0)
        for y in range(first, len(self.lines)):
            if match_spans(self.lines[y].text, self.search_query):
                self.matches.append(self._start_line + y)
                self._match_set.add(self._start_line + y)
        self._scanned = self._start_line + len(self.lines)
        if self.current is None and self.matches:
            self.current = self.matches[-1]
        if announce and len(self.matches) != before:
            self.post_message(self.Matches(self))

    @property
    def current_index(self) -> int | None:
        """The current match's place among the matches (0 = oldest)."""
        if self.current is None or self.current not in self._match_set:
            return None
        return bisect_left(self.matches, self.current)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("next_match", "previous_match"):
            return bool(self.search_query)  # without a search, n and N are not this log's keys
        return True

    def action_next_match(self) -> None:
        self._step(+1)

    def action_previous_match(self) -> None:
        self._step(-1)

    def _step(self, direction: int) -> None:
        if not self.matches:
            self.app.bell()
            return
        if self.current is None:
            self.current = self.matches[-1]
        elif direction > 0:
            i = bisect_right(self.matches, self.current)
            self.current = self.matches[i % len(self.matches)]
        else:
            i = bisect_left(self.matches, self.current) - 1
            self.current = self.matches[i % len(self.matches)]
        self._line_cache.clear()
        self._show_current()
        self.refresh()
        self.post_message(self.Matches(self))

    def _show_current(self) -> None:
        if self.current is None:
            return
        y = self.current - self._start_line
        height = self.scrollable_content_region.height
        self.scroll_to(y=max(0, y - height // 2), animate=False, immediate=True)

    def _render_line(self, y: int, scroll_x: int, width: int) -> Strip:
        absolute = self._start_line + y
        if not self.search_query or y >= len(self.lines) or absolute not in self._match_set:
            return super()._render_line(y, scroll_x, width)
        # Cached with the other lines; the cache is cleared when the query or the current match changes.
        key = (absolute, scroll_x, width, self._widest_line_width)
        cached = self._line_cache.get(key)
        if cached is not None:
            return cached
        strip = self.lines[y]
        style = CURRENT if absolute == self.current else MATCH
        marked = highlight(strip, match_spans(strip.text, self.search_query), style)
        line = marked.crop_extend(scroll_x, scroll_x + width, self.rich_style)
        self._line_cache[key] = line
        return line


class LogView(Vertical):
    """The search bar (shown by `/`) over the log. Enter goes to the log, where n / N move between the
    matches; esc closes the search (a second esc leaves the log, as anywhere)."""

    BINDINGS = [Binding("escape", "close_search", "Close search")]

    def __init__(self, log: SearchLog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._log = log

    def compose(self) -> ComposeResult:
        with Horizontal(id="log-search-bar"):
            yield Static("/", id="log-search-label")
            yield Input(placeholder="search the log", id="log-search")
            yield Static("", id="log-search-status")
        yield self._log

    @property
    def log_widget(self) -> SearchLog:
        return self._log

    @property
    def search_open(self) -> bool:
        return self.query_one("#log-search-bar").has_class("-open")

    def open_search(self) -> None:
        self.query_one("#log-search-bar").add_class("-open")
        box = self.query_one("#log-search", Input)
        box.focus()
        self.refresh_bindings()

    def focus_log(self) -> None:
        self._log.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "close_search":
            return self.search_open  # otherwise esc does what it does elsewhere (leaves the field)
        return True

    def action_close_search(self) -> None:
        self.query_one("#log-search-bar").remove_class("-open")
        self.query_one("#log-search", Input).value = ""
        self._log.search("")
        self._log.focus()
        self.refresh_bindings()

    @on(Input.Changed, "#log-search")
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self._log.search(event.value)

    @on(Input.Submitted, "#log-search")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._log.focus()

    @on(SearchLog.Matches)
    def _matches(self, event: SearchLog.Matches) -> None:
        event.stop()
        log, status = event.log, self.query_one("#log-search-status", Static)
        if not log.search_query:
            status.update("")
        elif not log.matches:
            status.update(Text("no match", style="red"))
        else:
            index = log.current_index
            where = f"{index + 1} of {len(log.matches)}" if index is not None else f"{len(log.matches)} lines"
            status.update(Text.assemble((where, "bold"), " · enter: to the log · n newer · N older · esc: close"))
