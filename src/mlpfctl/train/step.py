"""One optimizer step and what it needs: optimizer, LR schedule and grad scaler (``Optimization``),
the global element/particle counts, forward, loss, backward and update (``train_step``).

Nothing here waits for the device: the counts are computed and all-reduced on the device (the
vendor library orders the reduction on the stream), and the loss values stay there until the
metrics processor reads a window of them (``mlpfctl.train.metrics_processor``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mlpfctl.config.schema import TrainSection
from mlpfctl.models.flops import train_flops
from mlpfctl.models.loss import TERM_NAMES, loss_sums, reduce_loss
from mlpfctl.train.context import Context, scaled_lr
from mlpfctl.train.optim import Schedule, build_optimizer, build_scheduler

LOSS_NAMES: tuple[str, ...] = (*TERM_NAMES, "Total")
COUNT_NAMES: tuple[str, ...] = ("elements", "particles", "events")


@dataclass
class Optimization:
    """The optimizer, its LR schedule and (fp16 only) the grad scaler, at the rank-scaled LR."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: Any  # torch.amp.GradScaler | None
    lr: float
    lr_factor: float

    @classmethod
    def build(cls, ctx: Context) -> Optimization:
        lr, factor = scaled_lr(ctx.cfg, ctx.world_size)
        optimizer = build_optimizer(ctx.model.parameters(), ctx.cfg.train, lr)
        scheduler = build_scheduler(optimizer, ctx.cfg.train)
        scaler = torch.amp.GradScaler(ctx.device.type) if ctx.autocast_dtype == torch.float16 else None
        return cls(optimizer, scheduler, scaler, lr, factor)

    @property
    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any], tcfg: TrainSection) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._rebase_schedule(tcfg)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def _rebase_schedule(self, tcfg: TrainSection) -> None:
        """After loading a checkpoint: this run's schedule horizon and (rescaled) peak LR apply.

        HPO extends ``steps`` on the same ``schedule_steps``; a resume on another number of ranks
        rescales the LR. With an unchanged config this reproduces the saved LR bit for bit.
        """
        schedule = Schedule(
            tcfg.schedule, tcfg.schedule_steps or tcfg.steps, tcfg.warmup_steps, tcfg.min_lr_ratio
        )
        self.scheduler.lr_lambdas[0] = schedule
        self.scheduler.base_lrs = [self.lr for _ in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["initial_lr"] = self.lr
            group["lr"] = self.lr * schedule(self.scheduler.last_epoch)


def count_dtype(device: torch.device) -> torch.dtype:
    """Counts are exact integers in float64; Gaudi has no float64, float32 is exact to 2**24."""
    return torch.float32 if device.type == "hpu" else torch.float64


def global_counts(ctx: Context, micro: Sequence[Any]) -> torch.Tensor:
    """[real elements, true particles, events] of one step's micro-batches (on the device) summed
    over micro-batches and ranks.

    These are the loss denominators: each rank divides each micro-batch's sums by the global counts
    / world size, so DDP's gradient average of the accumulated gradients equals the gradient of the
    global batch.
    """
    dtype = count_dtype(ctx.device)
    counts = torch.stack(
        [
            torch.stack(
                [
                    batch.mask.sum().to(dtype),
                    (batch.target_cls != 0).sum().to(dtype),
                    torch.full((), batch.num_events, dtype=dtype, device=ctx.device),
                ]
            )
            for batch in micro
        ]
    ).sum(dim=0)
    return ctx.dist.all_reduce(counts)  # sync: a device collective, the host does not wait


def step_flops(ctx: Context, micro: Sequence[Any]) -> float:
    """Training FLOPs of this rank's step: the real elements of its (host) micro-batches."""
    return sum(train_flops(ctx.module, ctx.spec, batch.mask.sum(dim=1).tolist()) for batch in micro)


@dataclass
class StepOutput:
    """This rank's loss terms (``LOSS_NAMES``, float32) and the global counts, both on the device."""

    losses: torch.Tensor
    counts: torch.Tensor


def train_step(ctx: Context, opt: Optimization, micro: Sequence[Any]) -> StepOutput:
    """Forward, loss, backward (DDP's gradient all-reduce) and update on one step's (host)
    micro-batches (``train.grad_accum`` of them; usually one)."""
    micro = [batch.to(ctx.device, non_blocking=True) for batch in micro]
    counts = global_counts(ctx, micro)
    opt.optimizer.zero_grad(set_to_none=True)
    losses = torch.zeros(len(LOSS_NAMES), dtype=torch.float32, device=ctx.device)
    for i, batch in enumerate(micro):
        # DDP all-reduces the gradients once, in the last micro-batch's backward.
        last = i == len(micro) - 1
        ddp_sync: Any = contextlib.nullcontext() if last or ctx.model is ctx.module else ctx.model.no_sync()  # type: ignore[operator]
        with ddp_sync:
            with ctx.autocast():
                outputs = ctx.model(batch.X, batch.mask)
            sums = loss_sums(outputs, batch.X, batch.mask, batch.target_cls, batch.target_p4, ctx.weights)
            terms = reduce_loss(sums, counts[0] / ctx.world_size, counts[1] / ctx.world_size)
            if opt.scaler is not None:
                opt.scaler.scale(terms["Total"]).backward()
            else:
                terms["Total"].backward()  # type: ignore[no-untyped-call]
        losses += torch.stack([terms[n].detach().float() for n in LOSS_NAMES])
        ctx.backend.step_boundary(ctx.device)
    if opt.scaler is not None:
        opt.scaler.unscale_(opt.optimizer)
    if ctx.cfg.train.grad_clip > 0:
        nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.cfg.train.grad_clip)
    if opt.scaler is not None:
        opt.scaler.step(opt.optimizer)  # reads the inf check on the host: fp16 only
        opt.scaler.update()
    else:
        opt.optimizer.step()
    ctx.backend.step_boundary(ctx.device)
    opt.scheduler.step()
    return StepOutput(losses, counts)
