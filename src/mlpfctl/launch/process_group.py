"""The one place that decides how a process joins its job's process group, and the collectives
every training-shaped job (training, HPO trials, scale-bench points, checks) uses on it.

The torch.distributed backend is **device-qualified** on accelerators, e.g. ``cpu:gloo,cuda:nccl``:

* tensors on the device (DDP gradients, the per-step element counts and loss sums the loop keeps
  on the device) go through the vendor library (NCCL, RCCL, HCCL, XCCL);
* host tensors and pickled objects (the stop flag, hook decisions, RNG states, validation metrics,
  barriers) go through gloo. NCCL, RCCL, HCCL and XCCL alone cannot reduce host tensors ("No
  backend type associated with device type cpu"), so a group made with the vendor library only
  fails at the first such collective.

On CPU the backend is plain gloo. Without gloo in the build (no known accelerator stack ships
without it) the host-side collectives run on the device instead.

A group normally exists only with more than one rank; ``run.force_process_group`` makes one even
for a single process, so that the collectives really go through NCCL/RCCL (``scripts/gpu-check.sh``).
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from mlpfctl.backends.base import BackendAdapter
    from mlpfctl.launch.runenv import RunEnv

_OPS = ("sum", "min", "max")


def group_backend(adapter: BackendAdapter, gloo: bool = True) -> str:
    """The ``init_process_group`` backend string for ``adapter``'s devices."""
    if adapter.device_type == "cpu":
        return "gloo"
    if not gloo:
        return adapter.dist_backend
    return f"cpu:gloo,{adapter.device_type}:{adapter.dist_backend}"


@dataclass
class Pending:
    """An all-reduce in flight: ``wait()`` returns its result (the input tensor, reduced)."""

    tensor: torch.Tensor
    work: Any = None

    def wait(self) -> torch.Tensor:
        if self.work is not None:
            self.work.wait()
            self.work = None
        return self.tensor


@dataclass
class Collectives:
    """This rank's view of the process group; every call is a no-op without one (one process).

    ``device`` is the training device (where device-side bookkeeping lives), ``host`` the device
    of host-side flags and objects: the CPU when gloo serves it, else the training device.
    """

    rank: int
    world_size: int
    device: torch.device
    host: torch.device
    active: bool
    backend: str | None = None
    # Host tensors of recent collectives, kept alive on purpose: gloo's worker threads release
    # their reference just after an operation completes, and if that is the last one they need
    # the GIL; torch's gloo destructor joins those threads while holding the GIL, so a group torn
    # down right after a collective (the final barrier) could deadlock.
    _held: deque[Any] = field(default_factory=lambda: deque(maxlen=32), repr=False)

    @classmethod
    def single(cls, device: torch.device | None = None) -> Collectives:
        """One process without a group: every collective is a no-op."""
        import torch

        return cls(0, 1, device or torch.device("cpu"), torch.device("cpu"), active=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Reduce ``tensor`` in place across ranks (a device tensor through the device library,
        a host tensor through gloo) and return it."""
        return self.all_reduce_async(tensor, op).wait()

    def all_reduce_async(self, tensor: torch.Tensor, op: str = "sum") -> Pending:
        if not self.active:
            return Pending(tensor)
        import torch.distributed as dist

        work = dist.all_reduce(tensor, op=_reduce_op(op), async_op=True)
        self._held.append(tensor)
        return Pending(tensor, work)

    def host_tensor(self, values: list[float], dtype: torch.dtype | None = None) -> torch.Tensor:
        import torch

        return torch.tensor(values, dtype=dtype or torch.float64, device=self.host)

    def reduce_int(self, value: int, op: str) -> int:
        """An integer agreed by every rank (e.g. the smallest per-rank batch count)."""
        import torch

        return int(self.all_reduce(self.host_tensor([value], torch.int64), op).item())

    def broadcast_int(self, value: int, src: int = 0) -> int:
        """Rank ``src``'s ``value`` on every rank."""
        if not self.active:
            return value
        import torch
        import torch.distributed as dist

        code = self.host_tensor([value], torch.int64)
        dist.broadcast(code, src=src)
        self._held.append(code)
        return int(code.item())

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self) -> None:
        """Wait until every rank arrives (a host all-reduce: no device-stream or device-id guess)."""
        if self.active:
            self.reduce_int(0, "sum")

    def close(self, *, finished: bool = True) -> None:
        """Leave the group and have its worker threads gone before this returns.

        A gloo worker thread that drops the last reference to a tensor needs the GIL; should that
        happen while the interpreter finalises, Python ends the thread inside a C++ destructor
        and the process aborts ("terminate called without an active exception", exit 134 after
        a finished run; seen once in CI, not reproduced). So: a last synchronous collective
        (every earlier one has completed), the group destroyed, and the group's C++ object
        collected here, while the interpreter is whole; the held host tensors go only after
        that. After a failure (``finished=False``) there is no last collective: the other ranks
        may never reach it.
        """
        if not self.active:
            return
        import gc

        import torch.distributed as dist

        if dist.is_initialized():
            if finished:
                with contextlib.suppress(Exception):
                    self.barrier()
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        self.active = False
        gc.collect()
        self._held.clear()


def _reduce_op(op: str) -> Any:
    import torch.distributed as dist

    if op not in _OPS:
        raise ValueError(f"unknown reduction {op!r}")
    return {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op]


def join_process_group(
    adapter: BackendAdapter, device: torch.device, env: RunEnv, *, force: bool = False
) -> Collectives:
    """Create (or adopt) the process group of this job and return the collectives on it.

    A group is made when the job has more than one rank, or when ``force`` is set; otherwise the
    returned collectives are no-ops. The backend's environment defaults (e.g. NCCL error
    handling) are in place already: ``adapter.setup_process`` applied them.
    """
    import torch
    import torch.distributed as dist

    if env.world_size == 1 and not force:
        return Collectives.single(device)
    gloo = dist.is_gloo_available()
    backend = group_backend(adapter, gloo)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {}
        if device.type == "cuda":
            kwargs["device_id"] = device  # binds NCCL to this rank's GPU (no device guessing)
        if env.world_size == 1 and env.source == "single":
            # A forced group of one: an in-process store, no port to pick or collide on.
            store = dist.HashStore()  # type: ignore[attr-defined]
            dist.init_process_group(backend, store=store, rank=0, world_size=1, **kwargs)
        else:
            os.environ.setdefault("MASTER_ADDR", env.master_addr)
            os.environ.setdefault("MASTER_PORT", str(env.master_port))
            dist.init_process_group(
                backend,
                rank=env.rank,
                world_size=env.world_size,
                init_method=f"tcp://{env.master_addr}:{env.master_port}",
                **kwargs,
            )
    host = torch.device("cpu") if gloo or device.type == "cpu" else device
    return Collectives(env.rank, env.world_size, device, host, active=True, backend=backend)
