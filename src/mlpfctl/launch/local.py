"""Start N local ranks (``--nproc N``) the way torchrun would, without torchrun.

Each child gets RANK/LOCAL_RANK/WORLD_SIZE/LOCAL_WORLD_SIZE/MASTER_ADDR/MASTER_PORT on a free
loopback port, runs ``fn(*args)`` and sends back its result or its error. If any rank fails the
others are terminated and the failure is raised in the parent with the rank that caused it.
SIGTERM/SIGUSR1/SIGINT sent to the parent (SLURM's time-limit warning) are forwarded to the ranks.
With ``backend`` the ranks get their devices from that backend's partition (every rank the same
list of ``nprocs`` devices, each taking the one at its local rank); the parent takes none.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from mlpfctl import errors
from mlpfctl.errors import MlpfctlError, RuntimeFailure

_FORWARDED = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _child(
    fn: Callable[..., Any], args: tuple[Any, ...], env: dict[str, str], rank: int, results: Any
) -> None:
    os.environ.update(env)
    if "torch" in sys.modules:  # imported while unpickling: the variable came too late for it
        sys.modules["torch"].set_num_threads(int(env["OMP_NUM_THREADS"]))
    try:
        value = fn(*args)
    except MlpfctlError as exc:
        results.put((rank, "error", (type(exc).__name__, exc.message, exc.hint, exc.exit_code)))
        return
    except BaseException as exc:  # report anything, including KeyboardInterrupt, to the parent
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        results.put(
            (rank, "error", (type(exc).__name__, detail, None, errors.EXIT_FAILURE, traceback.format_exc()))
        )
        return
    results.put((rank, "ok", value))


def _rebuild_error(rank: int, payload: tuple[Any, ...]) -> MlpfctlError:
    name, message, hint, code = payload[:4]
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, MlpfctlError):
        exc = cls(message, hint)
    else:
        exc = RuntimeFailure(f"rank {rank} failed: {message}", hint or "see the rank's log above")
        exc.exit_code = code
    if len(payload) > 4 and sys.version_info >= (3, 11):
        exc.add_note(payload[4])  # the child's traceback, for debugging logs only (3.11+ shows notes)
    return exc


def launch_local(
    fn: Callable[..., Any],
    nprocs: int,
    args: tuple[Any, ...] = (),
    *,
    env: Mapping[str, str] | None = None,
    master_port: int | None = None,
    backend: str | None = None,
) -> Any:
    """Run ``fn(*args)`` in ``nprocs`` spawned ranks; return rank 0's return value."""
    if nprocs < 1:
        raise errors.UsageError(f"--nproc {nprocs} must be >= 1", "use --nproc 1 or more")
    devices = _devices(backend, nprocs, env)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = master_port or free_port()
    # Like torchrun: the ranks share the cores instead of each starting one thread per core, which
    # oversubscribes the CPU and makes N ranks slower than one. An explicit setting wins.
    threads = (
        (env or {}).get("OMP_NUM_THREADS")
        or os.environ.get("OMP_NUM_THREADS")
        or str(max(1, _usable_cores() // nprocs))
    )
    procs = []
    for rank in range(nprocs):
        child_env = {
            **(env or {}),
            **devices,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(nprocs),
            "LOCAL_WORLD_SIZE": str(nprocs),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo"),
            "OMP_NUM_THREADS": threads,
        }
        proc = ctx.Process(target=_child, args=(fn, args, child_env, rank, results), daemon=False)
        procs.append(proc)

    previous: dict[signal.Signals, Any] = {}

    def forward(signum: int, _frame: Any) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signum)

    for sig in _FORWARDED:
        with contextlib.suppress(ValueError):  # not the main thread: cannot install handlers
            previous[sig] = signal.signal(sig, forward)
    try:
        for proc in procs:
            proc.start()
        return _collect(procs, results, nprocs)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _devices(backend: str | None, nprocs: int, env: Mapping[str, str] | None) -> dict[str, str]:
    """The visible-devices setting shared by the ranks of one launch ({} for host processes)."""
    if backend is None:
        return {}
    from mlpfctl.backends import select_backend
    from mlpfctl.backends.partition import partition

    return partition(select_backend(backend), 1, nprocs, {**os.environ, **(env or {})})[0]


def _collect(procs: list[Any], results: Any, nprocs: int) -> Any:
    outcomes: dict[int, tuple[str, Any]] = {}
    while len(outcomes) < nprocs:
        try:
            rank, kind, value = results.get(timeout=0.2)
            outcomes[rank] = (kind, value)
            if kind == "error":
                raise _rebuild_error(rank, value)
            continue
        except queue.Empty:
            pass
        for rank, proc in enumerate(procs):
            if rank not in outcomes and not proc.is_alive() and proc.exitcode is not None:
                # Give the queue a moment: a rank may have exited right after putting its result.
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline and rank not in outcomes:
                    try:
                        r, kind, value = results.get(timeout=0.1)
                        outcomes[r] = (kind, value)
                        if kind == "error":
                            raise _rebuild_error(r, value)
                    except queue.Empty:
                        continue
                if rank not in outcomes:
                    raise RuntimeFailure(
                        f"rank {rank} exited with code {proc.exitcode} without a result",
                        "a rank was killed (out of memory? signal?); see the log above",
                    )
    return outcomes[0][1]
