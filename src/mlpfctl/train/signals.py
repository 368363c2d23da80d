"""Stop requests: SIGTERM / SIGUSR1 (what SLURM sends before a time limit) mean "finish the current
step, write a checkpoint and exit with ``EXIT_CHECKPOINTED`` (3) so that the job can requeue".

The handler only sets a flag; the training loop polls it between steps and all ranks agree on it
through the per-step all-reduce, so every rank stops at the same step.

Inside a SLURM job the warning is SIGUSR1, delivered by ``scancel --signal=USR1`` to every process
of every job step: torchrun's agent, an HPO driver, DataLoader workers, Python's resource tracker.
The job starts each step through ``mlpfctl.systems.step``, which *blocks* SIGUSR1 (the blocked mask
survives fork and exec). A process that never asks for it keeps the signal pending and harmless
instead of dying of it; the training loop unblocks it in ``catch_stop_signals`` and receives a
warning that arrived while it was still starting (importing torch, loading data) instead of losing
it; an HPO worker between trials sees it with ``stop_requested`` before it claims the next one.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)
# the time-limit warning of an mlpfctl SLURM job (what the job script sends to its steps)
WARNING_SIGNAL = signal.SIGUSR1

_caught: list[int] = []  # stop signals any StopFlag of this process has received


class StopFlag:
    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def set(self) -> bool:
        return self.signum is not None

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum
        _caught.append(signum)


def _record(signum: int, _frame: FrameType | None) -> None:
    _caught.append(signum)


def block_warning_signal() -> None:
    """Keep the warning signal pending in this process and every process it starts (job steps)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {WARNING_SIGNAL})


def stop_requested() -> bool:
    """Whether this process was asked to stop: a caught stop signal, or a blocked, pending warning."""
    return bool(_caught) or WARNING_SIGNAL in signal.sigpending()


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[StopFlag]:
    """Turn SIGTERM/SIGUSR1 into a flag for the duration of the block (main thread only).

    A warning that is pending because the job step blocked it is delivered on entry.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {sig: signal.signal(sig, flag.handler) for sig in STOP_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, set(STOP_SIGNALS))
    try:
        yield flag
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, old in previous.items():
            if sig in mask and old in (signal.SIG_DFL, None):
                # A job step (the warning was blocked): threads started inside the block have it
                # unblocked, so a late warning must stay a recorded request, never the default
                # action (termination) while the process writes its results.
                old = _record
            signal.signal(sig, old)
