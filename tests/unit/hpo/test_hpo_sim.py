"""The virtual clock behind the simulated workers of benchmarks/hpo_quality.py."""

from __future__ import annotations

import pytest
from benchmarks.hpo_sim import BudgetSpent, VirtualClock


def test_threads_interleave_in_virtual_time_one_at_a_time() -> None:
    clock = VirtualClock(budget=1e9)
    events: list[tuple[float, str]] = []

    def worker(name: str, durations: list[float]) -> None:
        for duration in durations:
            events.append((clock.monotonic(), f"{name} starts {duration:g}"))
            clock.work(duration)
            events.append((clock.monotonic(), f"{name} ends"))

    errors = clock.run([lambda: worker("a", [3, 1]), lambda: worker("b", [2, 2])])
    assert errors == [None, None]
    # b's second job starts at 2 (when its first ends), before a's first ends at 3; ties keep
    # the order in which the workers went to sleep.
    assert events == [
        (0.0, "a starts 3"),
        (0.0, "b starts 2"),
        (2.0, "b ends"),
        (2.0, "b starts 2"),
        (3.0, "a ends"),
        (3.0, "a starts 1"),
        (4.0, "b ends"),
        (4.0, "a ends"),
    ]
    assert clock.busy() == pytest.approx(8.0)


def test_an_idle_worker_wakes_after_the_next_event_of_another() -> None:
    clock = VirtualClock(budget=1e9)
    seen: list[float] = []
    state = {"done": False}

    def busy() -> None:
        clock.work(5)
        state["done"] = True

    def waiter() -> None:
        while not state["done"]:
            clock.idle(0.01)  # real workers poll; here the clock jumps to the next event
            seen.append(clock.monotonic())

    clock.run([busy, waiter])
    assert seen == [5.0]
    assert clock.busy() == pytest.approx(5.0)  # idling is not charged to the budget


def test_the_budget_stops_every_worker() -> None:
    clock = VirtualClock(budget=10)
    finished: list[str] = []

    def worker(name: str) -> None:
        for _ in range(100):
            clock.work(3)
            finished.append(name)

    assert clock.run([lambda: worker("a"), lambda: worker("b")]) == [None, None]
    # Two workers, 3 units per job: at t = 3 six units are used, at t = 6 twelve would be.
    assert finished == ["a", "b"]
    with pytest.raises(BudgetSpent):
        clock.work(1)  # the clock stays stopped


def test_an_error_in_one_worker_is_returned_and_stops_the_others() -> None:
    clock = VirtualClock(budget=1e9)

    def broken() -> None:
        clock.work(1)
        raise ValueError("objective bug")

    def forever() -> None:
        while True:
            clock.work(1)

    errors = clock.run([broken, forever])
    assert isinstance(errors[0], ValueError) and errors[1] is None
