"""A stand-in for an accelerator's collective library (NCCL, RCCL, HCCL, XCCL) on a CPU-only machine.

The ``standin`` torch.distributed backend is registered, like NCCL, for accelerator (``cuda``)
tensors only; a process group made with it alone fails on every host tensor exactly as NCCL does
("No backend type associated with device type cpu"). ``StandinAdapter`` is a backend adapter
that names it as its library; its device is the CPU, the only one here. Imported by spawned
ranks, so everything lives at module level.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from mlpfctl.backends import registry
from mlpfctl.backends.cpu import CpuAdapter
from mlpfctl.backends.descriptors import load_descriptor
from mlpfctl.train.types import TrainRequest, TrainResult

CREATED: list[Any] = []  # the stand-in's backend objects made in this process
OBSERVED: dict[str, Any] = {}


def _create(store: Any, rank: int, size: int, timeout: timedelta) -> Any:
    backend = dist.ProcessGroupGloo(store, rank, size, timeout)  # never used: no cuda tensors here
    CREATED.append(backend)
    return backend


class StandinAdapter(CpuAdapter):
    name = "standin"
    device_type = "cuda"

    def __init__(self) -> None:
        self.descriptor = load_descriptor("cpu")

    @property
    def dist_backend(self) -> str:
        return "standin"


def register() -> None:
    if "standin" not in dist.Backend.backend_list:
        dist.Backend.register_backend("standin", _create, devices=["cuda"])
    registry.REGISTRY["standin"] = StandinAdapter


class Observe:
    """A validation hook that records which library serves host and accelerator tensors."""

    def on_validation(self, step: int, metrics: dict[str, float]) -> str:
        group = dist.distributed_c10d._get_default_group()
        OBSERVED["backend"] = str(dist.get_backend())
        OBSERVED["cpu_is_standin"] = group._get_backend(torch.device("cpu")) is CREATED[0]
        OBSERVED["cuda_is_standin"] = group._get_backend(torch.device("cuda")) is CREATED[0]
        return "continue"


def rank_main(request: TrainRequest) -> tuple[TrainResult, dict[str, Any]]:
    from mlpfctl.train.loop import run_rank

    register()
    return run_rank(request), dict(OBSERVED)
