"""One optimizer step and what it needs: optimizer, LR schedule and grad scaler (``Optimization``),
the global element/particle counts, forward, loss, backward and update (``train_step``).

Nothing here waits for the device: the counts are computed and all-reduced on the device (the
vendor library orders the reduction on the stream), and the loss values stay there until the
metrics processor reads a window of them (``mlpfctl.train.metrics_processor``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mlpfctl.config.schema import TrainSection
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


def global_counts(ctx: Context, batch: Any) -> torch.Tensor:
    """[real elements, true particles, events] of ``batch`` (on the device) summed over ranks.

    These are the loss denominators: each rank divides its sums by the global counts / world size,
    so DDP's gradient average equals the gradient of the global batch.
    """
    dtype = count_dtype(ctx.device)
    counts = torch.stack(
        [
            batch.mask.sum().to(dtype),
            (batch.target_cls != 0).sum().to(dtype),
            torch.full((), batch.num_events, dtype=dtype, device=ctx.device),
        ]
    )
    return ctx.dist.all_reduce(counts)  # sync: a device collective, the host does not wait


@dataclass
class StepOutput:
    """This rank's loss terms (``LOSS_NAMES``, float32) and the global counts, both on the device."""

    losses: torch.Tensor
    counts: torch.Tensor


def train_step(ctx: Context, opt: Optimization, batch: Any) -> StepOutput:
    """Forward, loss, backward (DDP's gradient all-reduce) and update on one (host) batch."""
    batch = batch.to(ctx.device, non_blocking=True)
    counts = global_counts(ctx, batch)
    opt.optimizer.zero_grad(set_to_none=True)
    with ctx.autocast():
        outputs = ctx.model(batch.X, batch.mask)
    sums = loss_sums(outputs, batch.X, batch.mask, batch.target_cls, batch.target_p4, ctx.weights)
    losses = reduce_loss(sums, counts[0] / ctx.world_size, counts[1] / ctx.world_size)
    total = losses["Total"]
    if opt.scaler is not None:
        opt.scaler.scale(total).backward()
    else:
        total.backward()  # type: ignore[no-untyped-call]
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
    return StepOutput(torch.stack([losses[n].detach().float() for n in LOSS_NAMES]), counts)
