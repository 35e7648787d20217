"""On CPU the engine leaves a core to the UI; an explicit setting wins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workbench.engine.boot import limit_cpu_threads, usable_cpus

pytestmark = pytest.mark.engine
torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A clean environment for each case, and torch's thread count put back after it."""
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("WORKBENCH_ENGINE_THREADS", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    torch.set_num_threads(usable_cpus())  # what torch picks by itself on this machine
    yield
    torch.set_num_threads(before)


def test_on_cpu_one_core_stays_free() -> None:
    expected = max(1, usable_cpus() - 1)
    assert limit_cpu_threads() == expected
    assert torch.get_num_threads() == expected


def test_on_a_gpu_threads_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert limit_cpu_threads() is None
    assert torch.get_num_threads() == usable_cpus()


def test_the_users_omp_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    torch.set_num_threads(3)  # as torch reads it at start-up
    assert limit_cpu_threads() is None
    assert torch.get_num_threads() == 3


def test_workbench_engine_threads_sets_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("WORKBENCH_ENGINE_THREADS", "1")
    assert limit_cpu_threads() == 1
    assert torch.get_num_threads() == 1


def test_a_bad_value_falls_back_to_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_ENGINE_THREADS", "lots")
    assert limit_cpu_threads() == max(1, usable_cpus() - 1)


def test_an_unreachable_hub_turns_offline_mode_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.engine.boot import choose_offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens there
    note = choose_offline()
    assert note is not None and "offline" in note
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_the_users_offline_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.engine.boot import choose_offline

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert choose_offline() is None
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "0"
