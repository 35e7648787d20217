"""The UI's garbage-collection schedule: full collections wait for a pause in the user's input, but
never longer than the maximum interval."""

from __future__ import annotations

import gc

from workbench.ui.gc_schedule import IdleCollector


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[IdleCollector, Clock, list[int]]:
    clock, collected = Clock(), []
    collector = IdleCollector(quiet_s=0.5, full_interval_s=10, max_full_interval_s=60, clock=clock,
                              collect=lambda gen: collected.append(gen) or 0)
    return collector, clock, collected


def test_young_generations_every_tick_and_full_only_when_quiet() -> None:
    collector, clock, collected = make()
    for _ in range(50):  # 12.5 s of typing, a key every 0.25 s
        clock.now += 0.25
        collector.user_input()
        collector.tick()
    assert set(collected) == {1}, "no full collection while the user types"
    clock.now += 0.6  # a pause
    assert collector.tick() == 2
    assert collector.tick() == 1, "the next full one waits for the interval again"


def test_full_collection_is_not_postponed_forever() -> None:
    collector, clock, collected = make()
    for _ in range(4 * 61):
        clock.now += 0.25
        collector.user_input()
        collector.tick()
    assert collected.count(2) == 1
    assert collector.full_collections == 1


def test_start_and_stop_hand_the_collector_over() -> None:
    collector = IdleCollector()
    was = gc.isenabled()
    try:
        collector.start()
        assert not gc.isenabled()
        collector.stop()
        assert gc.isenabled()
    finally:
        gc.enable() if was else gc.disable()
