"""One rank's training context: backend, device, process group, data, model; and its set-up.

Shared by the training loop, scale-bench points (``mlpfctl.bench.train_scaling``) and, through
``train.api.train``, HPO trials.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mlpfctl.config.schema import Config
from mlpfctl.errors import DataError
from mlpfctl.launch.process_group import Collectives
from mlpfctl.models.loss import LossWeights
from mlpfctl.models.spec import ModelSpec
from mlpfctl.train.data_streams import DataStreams
from mlpfctl.train.optim import lr_scale_factor
from mlpfctl.train.types import TrainRequest


@dataclass
class Context:
    """Everything one rank needs while training."""

    request: TrainRequest
    cfg: Config
    device: torch.device
    autocast_dtype: torch.dtype | None
    model: nn.Module  # DDP-wrapped when a process group exists
    module: nn.Module  # the model itself
    spec: ModelSpec
    weights: LossWeights
    class_names: tuple[str, ...]
    peak_flops: float | None
    backend: Any  # mlpfctl.backends.BackendAdapter
    dist: Collectives
    data: DataStreams

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision in the backend's dtype on this device type, or nothing (fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def close(self, *, finished: bool = True) -> None:
        """Leave the process group (the DDP wrapper goes first: its reducer holds the group)."""
        self.model = self.module
        self.dist.close(finished=finished)


def loss_weights(cfg: Config) -> LossWeights:
    reg = tuple(cfg.train.loss_reg_weights)
    if len(reg) != 5:
        raise DataError(
            f"train.loss_reg_weights needs 5 values (pt, eta, sin_phi, cos_phi, energy), got {len(reg)}",
            "example: --set train.loss_reg_weights=1,0.01,0.01,0.01,1",
        )
    return LossWeights(
        binary=cfg.train.loss_binary_weight,
        cls=cfg.train.loss_cls_weight,
        focal_gamma=cfg.train.focal_gamma,
        reg=(reg[0], reg[1], reg[2], reg[3], reg[4]),
        sqrt_pt=cfg.train.sqrt_pt_weighting,
        class_weights=tuple(cfg.train.loss_class_weights) if cfg.train.loss_class_weights else None,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def per_rank_batch(cfg: Config) -> int:
    """One rank's batch in the unit LR scaling uses: events, or padded elements when bucketing."""
    return cfg.train.batch_events or cfg.data.max_elements_per_batch


def scaled_lr(cfg: Config, world_size: int) -> tuple[float, float]:
    unit = per_rank_batch(cfg)
    reference = cfg.train.reference_batch or unit
    # The global batch: every rank's micro-batches of one step (train.grad_accum).
    factor = lr_scale_factor(cfg.train.lr_scaling, world_size * unit * cfg.train.grad_accum, reference)
    return cfg.train.lr * factor, factor


def _precision_name(dtype: torch.dtype | None) -> str:
    return "bf16" if dtype == torch.bfloat16 else "fp16" if dtype == torch.float16 else "fp32"


def setup_rank(request: TrainRequest) -> Context:
    """Select the device, join the process group, open the data and build the (DDP) model."""
    from mlpfctl.backends import select_backend
    from mlpfctl.launch.process_group import join_process_group
    from mlpfctl.launch.runenv import RunEnv
    from mlpfctl.models.registry import build_model, spec_for

    cfg = request.config
    env = RunEnv.from_env()
    backend = select_backend(cfg.run.backend)
    device = backend.setup_process(env.local_rank)
    dist = join_process_group(backend, device, env, force=cfg.run.force_process_group)
    try:
        seed_everything(cfg.run.seed)
        data = DataStreams(cfg, dist, pin_memory=backend.pin_memory, pad_buckets=backend.padding_buckets())
        spec = spec_for(cfg.model, data.schema, data.train)
        module = backend.prepare_model(build_model(spec).to(device), device)
        if cfg.train.compile:
            from mlpfctl.models.execution import compile_model

            compile_model(module)
        model: nn.Module = module
        if dist.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            model = DistributedDataParallel(module, device_ids=ids)
        dtype = backend.autocast_dtype(device) if cfg.train.amp else None
        peak = backend.device_peak_flops(device, _precision_name(dtype))
        weights = loss_weights(cfg)
    except BaseException:
        dist.close(finished=False)
        raise
    return Context(
        request=request,
        cfg=cfg,
        device=device,
        autocast_dtype=dtype,
        model=model,
        module=module,
        spec=spec,
        weights=weights,
        class_names=data.schema.class_names,
        peak_flops=peak,
        backend=backend,
        dist=dist,
        data=data,
    )
