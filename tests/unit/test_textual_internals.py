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
