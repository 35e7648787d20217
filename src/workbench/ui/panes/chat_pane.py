"""Chat pane: put a conversation to the model (rendered with the training template) and stream the
summary; side by side with the base model (adapter off); fill the input from a held-out row."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Button, Input, Label, Static, Switch, TextArea

from workbench import requests as rq
from workbench.config import RunConfig, set_field
from workbench.protocol import ChatPath, Error, Event, Token
from workbench.ui.bridge import EngineBridge
from workbench.ui.widgets.focus_scroll import FocusScroll


class Reply(Static):
    """One streamed answer; text is appended as tokens arrive."""

    def __init__(self, title: str, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.title_text = title
        self.text = ""

    def append(self, piece: str) -> None:
        self.text += piece
        self.update(Text.assemble((self.title_text + "\n", "bold"), self.text))


class ChatPane(Vertical):
    # ctrl+enter is not sent by most terminals (tmux included); ctrl+g is.
    BINDINGS = [("ctrl+g", "send", "Send"), ("ctrl+enter", "send", "Send"), ("escape", "cancel", "Cancel")]

    config: reactive[RunConfig] = reactive(RunConfig, always_update=True, init=False)
    run_dir: reactive[str | None] = reactive(None, init=False)
    """The active run: chat uses its weights (final adapter, else newest checkpoint) and its own config."""
    engine_ready: reactive[bool] = reactive(False, init=False)

    def __init__(self, engine: EngineBridge, config: RunConfig, run_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.set_reactive(ChatPane.config, config)
        self.set_reactive(ChatPane.run_dir, run_dir)
        self._request: str | None = None
        self._replies: dict[str, Reply] = {}
        self._fill_seq = 0
        self._prepared_for: tuple[str | None, str, str] | None = None
        """What the engine was last asked to prepare (run, model, chat path): asked again when it changes."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="chat-controls"):
            yield Label("temperature")
            yield Input("0.7", id="chat-temperature", type="number")
            yield Label("top-p")
            yield Input("0.9", id="chat-top-p", type="number")
            yield Label("max new")
            yield Input("256", id="chat-max-new", type="integer")
            yield Label("side by side")
            yield Switch(value=False, id="chat-compare")
        with Horizontal(id="chat-heldout"):
            yield Label("summarize held-out row")
            yield Input("1", id="chat-heldout-row", type="integer")
            yield Button("Fill", id="chat-fill")
            yield Static("", id="chat-reference")
        with FocusScroll(id="chat-transcript"):
            yield Static("Type a conversation below; the model answers with its summary, prompted with the "
                         "same template it was trained with.", id="chat-intro")
        yield TextArea(id="chat-input", soft_wrap=True)
        with Horizontal(id="chat-buttons"):
            yield Button("Send (ctrl+g)", id="chat-send", variant="primary")
            yield Button("Cancel", id="chat-cancel")
            yield Static("", id="chat-status")

    def on_mount(self) -> None:
        self.engine.subscribe(self._engine_event)

    # -- the model Chat answers with: loaded and its fast decoder built when the pane is first shown --
    def on_show(self) -> None:
        self._prepare()

    def watch_engine_ready(self, ready: bool) -> None:
        if not ready:
            self._prepared_for = None  # a new engine has nothing loaded
            return
        self._prepare()

    def watch_run_dir(self, run_dir: str | None) -> None:
        self._prepare()

    def watch_config(self, config: RunConfig) -> None:
        self._prepare()  # asks again only when the model or the chat path changed

    def _prepare(self) -> None:
        wanted = (self.run_dir, self.config.model.name, self.config.model.chat_path)
        if not (self.engine_ready and self.display and self.is_attached) or wanted == self._prepared_for:
            return
        self._prepared_for = wanted
        self._show_path("loading the model for chat…")
        self.engine.request(rq.PrepareChat(config=self.config, run_dir=self.run_dir),
                            on_answer=lambda answer: self._show_path(answer.fast_chat),
                            on_error=self._prepare_failed)

    def _prepare_failed(self, error: Error) -> None:
        self._prepared_for = None  # asked again next time the pane is shown
        self._show_path(f"chat model not loaded yet: {error.message}")

    def _engine_event(self, event: Event) -> None:
        if isinstance(event, ChatPath):
            self._show_path(event.line)

    def _show_path(self, line: str) -> None:
        self.query_one("#chat-transcript", VerticalScroll).border_subtitle = line

    def _number(self, wid: str, default: float, lo: float, hi: float) -> float:
        try:
            value = float(self.query_one(wid, Input).value)
        except ValueError:
            return default
        return min(max(value, lo), hi)

    @on(Button.Pressed, "#chat-send")
    def action_send(self) -> None:
        text = self.query_one("#chat-input", TextArea).text.strip()
        if not text or self._request:
            return
        compare = self.query_one("#chat-compare", Switch).value
        transcript = self.query_one("#chat-transcript", VerticalScroll)
        transcript.mount(Static(Text.assemble(("you\n", "bold magenta"), text), classes="chat-user"))
        row = Horizontal(classes="chat-replies")
        transcript.mount(row)
        streams = ["tuned", "base"] if compare else ["tuned"]
        self._replies = {}
        for s in streams:
            reply = Reply("tuned model" if s == "tuned" else "base model (adapter off)", classes=f"chat-reply {s}")
            self._replies[s] = reply
            row.mount(reply)
        transcript.scroll_end(animate=False)
        request = rq.Generate(
            config=self.config,
            run_dir=self.run_dir,
            conversation=text,
            temperature=self._number("#chat-temperature", 0.7, 0.0, 5.0),
            top_p=self._number("#chat-top-p", 0.9, 0.01, 1.0),
            max_new_tokens=int(self._number("#chat-max-new", 256, 1, 8192)),
            compare=compare,
        )
        self.query_one("#chat-status", Static).update("generating…")
        self._request = self.engine.request(request, on_answer=self._done, on_error=self._generation_failed,
                                            on_stream=self._token)

    def _token(self, event: Event) -> None:
        if isinstance(event, Token):
            reply = self._replies.get(event.stream)
            if reply is not None:
                reply.append(event.text)
                self.query_one("#chat-transcript", VerticalScroll).scroll_end(animate=False)

    def _done(self, answer: rq.Generated) -> None:
        self._request = None
        parts = []
        for stream, r in answer.results.items():
            ttft, tps = r.time_to_first_token_s, r.decode_tokens_per_s
            parts.append(f"{stream}: {r.new_tokens} tokens"
                         + (f", first token {ttft * 1000:.0f} ms" if ttft else "")
                         + (f", {tps:.0f} tok/s" if tps else "")
                         + (f" ({r.path})" if r.path else ""))
        if not answer.has_adapter:
            parts.append("no adapter yet: this is the base model")
            tuned = self._replies.get("tuned")
            if tuned is not None:
                tuned.title_text = "base model (no adapter yet: train, or open a run)"
                tuned.append("")
        self.query_one("#chat-status", Static).update(" · ".join(parts))
        if answer.fast_chat:
            self._show_path(answer.fast_chat)

    def _show_error(self, error: Error) -> None:
        self.query_one("#chat-status", Static).update(Text(f"{error.message} {error.hint}", style="red"))

    def _generation_failed(self, error: Error) -> None:
        self._request = None
        self._show_error(error)

    def action_cancel(self) -> None:
        """Esc: stop the reply being generated; with none, leave the input box (the chat pane opens in
        it), so that the digits and keys act again instead of being typed."""
        if self._request:
            self.engine.request(rq.Cancel(target=self._request))
        else:
            self.query_one("#chat-transcript").focus(scroll_visible=False)

    @on(Button.Pressed, "#chat-cancel")
    def _cancel(self) -> None:
        self.action_cancel()

    @on(Button.Pressed, "#chat-fill")
    def action_fill_heldout(self) -> None:
        try:
            n = int(self.query_one("#chat-heldout-row", Input).value)
        except ValueError:
            n = 1
        config = self.config
        if config.data.source.startswith("builtin:"):
            config = set_field(config, "data", "split", "heldout")
        self._fill_seq += 1
        seq = self._fill_seq
        # Its own error handler: a failed fill must not touch the generation in progress (its id is what
        # esc cancels).
        self.engine.request(rq.Preview(config=config, positions=[max(0, n - 1)]),
                            on_answer=lambda answer: self._filled(seq, n, answer),
                            on_error=lambda error: self._show_error(error) if seq == self._fill_seq else None)

    def _filled(self, seq: int, n: int, answer: rq.PreviewAnswer) -> None:
        if seq != self._fill_seq:
            return
        item = answer.items[0] if answer.items else None
        if item is None:
            self.query_one("#chat-status", Static).update(
                f"There is no held-out row {n}: there are {answer.rows_total}.")
            return
        if not item.conversation:
            self.query_one("#chat-status", Static).update(f"Held-out row {n} has no usable conversation: {item.issue}")
            return
        self.query_one("#chat-input", TextArea).text = item.conversation
        self.query_one("#chat-reference", Static).update(Text.assemble(("reference: ", "bold"), item.summary or ""))
