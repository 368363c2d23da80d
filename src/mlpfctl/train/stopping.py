"""Stop requests every rank agrees on: SIGTERM/SIGUSR1 (SLURM's time-limit warning, preemption)
and the run's wall-clock budget (``train.max_time``).

Each step every rank starts an asynchronous MAX all-reduce of its own request (host tensor
through gloo, so it never waits for the accelerator) and reads the result one step later, when
it has long arrived. All ranks read the same value at the same step, so they stop at the same
step; a request costs at most one more training step.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from mlpfctl.durations import parse_duration
from mlpfctl.train.signals import catch_stop_signals

if TYPE_CHECKING:
    from mlpfctl.launch.process_group import Collectives, Pending

NONE, TIME_LIMIT, SIGNAL = 0, 1, 2  # larger wins: a signal asks for the fastest exit


class StopControl:
    def __init__(self, dist: Collectives, max_time: str | None, started: float) -> None:
        self.dist = dist
        self.budget_s = parse_duration(max_time) if max_time else None
        self.max_time = max_time
        self.started = started
        self.reserve_s = 0.0  # the time the final validation and checkpoint will take
        self._pending: Pending | None = None
        self._signals: Any = None
        self._flag: Any = None

    def __enter__(self) -> StopControl:
        self._signals = catch_stop_signals()
        self._flag = self._signals.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.drain()
        finally:
            self._signals.__exit__(*exc)

    def reserve(self, seconds: float) -> None:
        """The last validation or checkpoint took ``seconds``: keep that much of the budget."""
        self.reserve_s = max(self.reserve_s, seconds)

    def _local(self) -> int:
        if self._flag is not None and self._flag.set:
            return SIGNAL
        if self.budget_s is not None and time.monotonic() - self.started + self.reserve_s >= self.budget_s:
            return TIME_LIMIT
        return NONE

    def poll(self) -> int:
        """The request agreed on from the previous step (NONE, TIME_LIMIT or SIGNAL); starts the
        agreement on this step's."""
        agreed = int(self._pending.wait()[0].item()) if self._pending is not None else NONE
        import torch

        self._pending = self.dist.all_reduce_async(self.dist.host_tensor([self._local()], torch.int64), "max")
        return agreed

    def drain(self) -> None:
        """Wait for the agreement in flight (before the process group goes away)."""
        if self._pending is not None:
            with contextlib.suppress(Exception):
                self._pending.wait()
            self._pending = None

    def describe(self, code: int, step: int) -> str:
        if code == SIGNAL:
            return f"stopped by a signal (SIGTERM/SIGUSR1) at step {step}"
        return f"train.max_time={self.max_time} reached at step {step}"
