"""SIGTERM / SIGUSR1 (what SLURM sends before a time limit, ``--signal=USR1@120``): finish the
current step, write a checkpoint and exit with ``EXIT_CHECKPOINTED`` (3) so the job can requeue.

The handler only sets a flag; the training loop polls it between steps and all ranks agree on it
through the per-step all-reduce, so every rank stops at the same step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)


class StopFlag:
    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def set(self) -> bool:
        return self.signum is not None

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[StopFlag]:
    """Turn SIGTERM/SIGUSR1 into a flag for the duration of the block (main thread only)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {sig: signal.signal(sig, flag.handler) for sig in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
