"""Workers live no longer than their driver, and one driver at a time works a study.

* A worker started by ``mlpfctl hpo run`` finds the driver's pid in its environment and asks the
  kernel for a signal when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``), relayed as one
  SIGTERM, so a killed driver (SIGKILL, the OOM killer) takes its workers with it; SIGTERM makes a
  worker fail and re-queue its running trial, as on a SLURM preemption. Where prctl is missing,
  the worker polls its parent pid instead.
* The driver holds an exclusive ``flock`` on ``<workdir>/.driver.lock`` and hands the locked
  descriptor to its workers, so the lock is free only when the driver *and* all its workers are
  gone. A second ``hpo run --resume`` therefore never starts workers next to the old ones: it waits
  (briefly) for dying workers to finish their shutdown, and refuses while another driver runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from mlpfctl.console import log
from mlpfctl.errors import UsageError

DRIVER_PID_ENV = "MLPFCTL_HPO_DRIVER_PID"
LOCK_NAME = ".driver.lock"
_PR_SET_PDEATHSIG = 1


# The kernel sends the parent-death signal at every reparenting of the worker: once per thread of
# the driver that exits after the one that started it. A second SIGTERM would cut short the
# worker's shutdown (failing and re-queuing its trial), so the kernel's signal is this relay, which
# turns the first delivery into one SIGTERM and ignores the rest.
_DEATH_SIGNAL = signal.SIGUSR2
_relayed = threading.Event()


def _relay(signum: int, frame: object) -> None:
    if not _relayed.is_set():
        _relayed.set()
        os.kill(os.getpid(), signal.SIGTERM)


def bind_to_driver(env: Mapping[str, str] | None = None) -> None:
    """In a worker: stop (one SIGTERM) when the driver that started it dies; nothing for others."""
    env = os.environ if env is None else env
    text = env.get(DRIVER_PID_ENV, "")
    if not text.isdigit():
        return  # a SLURM job step or a worker started by hand: its parent is not a driver
    driver = int(text)
    signal.signal(_DEATH_SIGNAL, _relay)
    if not _parent_death_signal(_DEATH_SIGNAL):
        _watch_parent(driver)
    if os.getppid() != driver:  # the driver died before the signal was armed
        _relay(_DEATH_SIGNAL, None)


def _parent_death_signal(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        # The symbols already loaded into this process (libc among them): find_library("c")
        # would spawn ldconfig, a fork of this worker, for nothing.
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(driver: int, interval: float = 1.0) -> None:
    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(interval)
        os.kill(os.getpid(), _DEATH_SIGNAL)

    threading.Thread(target=watch, name="driver-watch", daemon=True).start()


@contextlib.contextmanager
def driver_lock(workdir: Path, study: str, wait: float = 60.0) -> Iterator[int]:
    """Hold the study's driver lock for the block; yields the descriptor the workers inherit."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, study, wait)
        _write(fd, [os.getpid()])
        yield fd
    finally:
        os.close(fd)  # the workers' inherited copies keep the lock until they exit too


def record_workers(fd: int, pids: list[int]) -> None:
    """Note the workers in the lock file: a later driver waits until these processes are gone."""
    _write(fd, [os.getpid(), *pids])


def _write(fd: int, pids: list[int]) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (" ".join(map(str, pids)) + "\n").encode(), 0)


def _acquire(fd: int, path: Path, study: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            pass
        holder = _holder(path)
        if holder is not None and _alive(holder):
            raise UsageError(
                f"study '{study}' is being run by another 'mlpfctl hpo run' (pid {holder})",
                f"wait for it to finish, or stop it first (kill {holder}); its workers stop with it",
            )
        if time.monotonic() > deadline:
            raise UsageError(
                f"workers of an earlier driver of study '{study}' are still running after {wait:.0f} s",
                f"stop them (see: fuser -v {path}), then run again with --resume",
            )
        if not said:
            log("waiting for the workers of the previous driver to stop ...")
            said = True
        time.sleep(0.2)
    # A worker drops the lock when its files close, a moment before the process is gone: wait for
    # the processes themselves (bounded: a pid may have been reused meanwhile).
    old_workers = _pids(path)[1:]
    while any(_alive(pid) for pid in old_workers) and time.monotonic() < deadline:
        time.sleep(0.05)


def _pids(path: Path) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        return [int(word) for word in path.read_text().split()]
    return []


def _holder(path: Path) -> int | None:
    pids = _pids(path)
    return pids[0] if pids else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed driver its parent has not reaped yet is a zombie: dead for our purposes.
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True
