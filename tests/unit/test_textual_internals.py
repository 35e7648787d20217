"""The Textual, textual-plotext and Rich internals the UI relies on still exist in the installed versions:
an upgrade that drops one fails here, loudly, instead of quietly breaking the screen."""

from __future__ import annotations

from workbench.ui import textual_internals


def test_every_internal_the_ui_uses_is_there() -> None:
    assert textual_internals.missing() == []


def test_the_check_names_what_is_missing(monkeypatch) -> None:
    from textual_plotext.plot import Plot

    owner = next(c for c in Plot.__mro__ if "_set_size" in vars(c))  # plotext's figure class defines it
    monkeypatch.delattr(owner, "_set_size")
    assert textual_internals.missing() == ["Plot._set_size"]


def test_a_radio_button_draws_its_state_as_a_glyph() -> None:
    from textual.app import App

    from workbench.ui.widgets.toggles import StateRadioButton

    class One(App[None]):
        def compose(self):  # type: ignore[no-untyped-def]
            yield StateRadioButton("on", value=True, id="on")
            yield StateRadioButton("off", value=False, id="off")

    async def check() -> None:
        app = One()
        async with app.run_test() as pilot:
            await pilot.pause()
            assert "●" in str(app.query_one("#on", StateRadioButton).render())
            assert "○" in str(app.query_one("#off", StateRadioButton).render())

    import asyncio

    asyncio.run(check())


def test_esc_and_a_digit_from_the_terminal_are_alt_and_the_digit() -> None:
    """What a terminal sends for Alt+6 (tmux's M-6, xterm's metaSendsEscape): ESC then "6". Textual's own
    table read it as "§" (macOS Option+6), which the Chat box then typed; the pane binding never fired."""
    from textual._xterm_parser import XTermParser

    import workbench.ui.app  # noqa: F401  (the App's module makes the change)

    for digit in "0123456789":
        parser = XTermParser()
        keys = [getattr(e, "key", None) for e in [*parser.feed(f"\x1b{digit}"), *parser.feed("")]]
        assert keys == [f"alt+{digit}"], (digit, keys)
    parser = XTermParser()
    assert [e.key for e in parser.feed("§")] == ["section_sign"]  # the character itself still types
