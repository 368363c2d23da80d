"""Workers live no longer than their driver, and one driver at a time works a study.

* A worker started by ``mlpfctl hpo run`` finds the driver's pid in its environment and asks the
  kernel for SIGTERM when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``), so a killed driver
  (SIGKILL, OOM killer, a closed terminal) takes its workers with it; SIGTERM makes a worker fail
  and re-queue its running trial, as on a SLURM preemption. Where prctl is missing, the worker
  polls its parent pid instead.
* The driver holds an exclusive ``flock`` on ``<workdir>/.driver.lock`` and hands the locked
  descriptor to its workers, so the lock is free only when the driver *and* all its workers are
  gone. A second ``hpo run --resume`` therefore never starts workers next to the old ones: it waits
  (briefly) for dying workers to finish their shutdown, and refuses while another driver runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
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


def bind_to_driver(env: Mapping[str, str] | None = None) -> None:
    """In a worker: die (SIGTERM) with the driver that started it; nothing for other workers."""
    env = os.environ if env is None else env
    text = env.get(DRIVER_PID_ENV, "")
    if not text.isdigit():
        return  # a SLURM job step or a worker started by hand: its parent is not a driver
    driver = int(text)
    if not _parent_death_signal(signal.SIGTERM):
        _watch_parent(driver)
    if os.getppid() != driver:  # the driver died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)


def _parent_death_signal(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(driver: int, interval: float = 1.0) -> None:
    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="driver-watch", daemon=True).start()


@contextlib.contextmanager
def driver_lock(workdir: Path, study: str, wait: float = 60.0) -> Iterator[int]:
    """Hold the study's driver lock for the block; yields the descriptor the workers inherit."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, study, wait)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield fd
    finally:
        os.close(fd)  # the workers' inherited copies keep the lock until they exit too


def _acquire(fd: int, path: Path, study: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
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


def _holder(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().split()[0])
    return None


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
