"""Simulated asynchronous workers: the real ``mlpfctl hpo worker`` loop on a virtual clock.

Each simulated worker is a thread running an unmodified ``mlpfctl.hpo.worker.Worker`` on one
shared Optuna study (in-memory storage). Only time is simulated: the objective calls
``work(units)`` instead of computing for ``units`` time units, and exactly one thread runs at a
time. A thread that calls ``work`` (or idles) hands control to the thread whose wake-up time is
the earliest (ties in the order they went to sleep), and the clock jumps to that time. So:

* every decision (claim, promotion, sampling, pruning) sees the study exactly as it would be at
  that moment with real workers: the other workers' jobs are RUNNING, with the parameters and
  intermediate values they have reported so far (what constant liar and the pruners read);
* sampling and storage overhead take no simulated time (budget = fidelity units only);
* runs are deterministic for a seed, whatever the load of the machine.

The simulation stops when the busy time of all workers together reaches the budget: every
thread then leaves its ``work`` call with ``BudgetSpent`` and unwinds.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class BudgetSpent(BaseException):
    """Raised in every simulated worker once the budget is used up (not an objective failure)."""


@dataclass(order=True)
class _Wake:
    time: float
    seq: int
    key: int = field(compare=False)
    idle: bool = field(compare=False)


class VirtualClock:
    """Discrete-event time shared by the worker threads of one simulation."""

    def __init__(self, budget: float) -> None:
        self._cond = threading.Condition()
        self._local = threading.local()
        self._now = 0.0
        self._heap: list[_Wake] = []
        self._seq = 0
        self._turn: int | None = None
        self._busy_done = 0.0
        self._busy_since: dict[int, float] = {}
        self.budget = budget
        self.stopped = False

    # --- the Clock protocol of mlpfctl.hpo.worker ------------------------------------------------

    def monotonic(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        self._wait(seconds, busy=False)

    def idle(self, seconds: float) -> None:
        """Wait until another worker has acted (the study can only change then)."""
        with self._cond:
            others = [w.time for w in self._heap if not w.idle]
            if not others:
                return
            self._yield(min(others) - self._now, idle=True)

    # --- what the objective calls -------------------------------------------------------------------

    def work(self, units: float) -> None:
        """Spend ``units`` of budget (one fidelity unit = one time unit of one worker)."""
        self._wait(units, busy=True)

    def busy(self) -> float:
        """Budget used so far by all workers together (finished and ongoing work)."""
        with self._cond:
            return self._busy_at(self._now)

    # --- running the threads ------------------------------------------------------------------------

    def run(self, targets: list[Callable[[], Any]]) -> list[BaseException | None]:
        """Run one thread per target to the end (or to the budget); their exceptions, if any."""
        errors: list[BaseException | None] = [None] * len(targets)

        def body(key: int, target: Callable[[], Any]) -> None:
            self._local.key = key
            try:
                with self._cond:
                    while self._turn != key and not self.stopped:
                        self._cond.wait()
                    if self.stopped:
                        raise BudgetSpent
                target()
            except BudgetSpent:
                pass
            except BaseException as exc:  # reported to the caller, never swallowed
                errors[key] = exc
                with self._cond:
                    self.stopped = True
                    self._cond.notify_all()
            finally:
                with self._cond:
                    self._busy_since.pop(key, None)
                    if self._turn == key:
                        self._dispatch()

        with self._cond:
            for key in range(len(targets)):
                self._push(0.0, key, idle=False)
            self._dispatch()
        threads = [
            threading.Thread(target=body, args=(key, target), name=f"sim-worker-{key}", daemon=True)
            for key, target in enumerate(targets)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return errors

    # --- internals (call with the condition held) -------------------------------------------------

    def _wait(self, seconds: float, busy: bool) -> None:
        with self._cond:
            if self.stopped:
                raise BudgetSpent
            key = self._local.key
            if busy:
                self._busy_since[key] = self._now
            self._yield(seconds, idle=False)
            if busy:
                self._busy_done += self._now - self._busy_since.pop(key)

    def _yield(self, seconds: float, idle: bool) -> None:
        key = self._local.key
        self._push(self._now + max(0.0, seconds), key, idle)
        self._dispatch()
        while self._turn != key and not self.stopped:
            self._cond.wait()
        if self.stopped:
            raise BudgetSpent

    def _push(self, time: float, key: int, idle: bool) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Wake(time, self._seq, key, idle))

    def _busy_at(self, time: float) -> float:
        return self._busy_done + sum(time - since for since in self._busy_since.values())

    def _dispatch(self) -> None:
        if not self._heap:
            self._turn = None
            self._cond.notify_all()
            return
        wake = heapq.heappop(self._heap)
        if self._busy_at(wake.time) >= self.budget:
            self.stopped = True
            self._cond.notify_all()
            return
        self._now = max(self._now, wake.time)
        self._turn = wake.key
        self._cond.notify_all()
