"""Optimisers (AdamW, LAMB, SGD), LR schedules with warm-up, and LR scaling with the global batch.

LR scaling: a larger global batch (more ranks, or bigger per-rank batches) averages the gradient
over more events, so the same LR takes smaller effective steps and large-batch training
generalises worse. Scaling the LR with the batch (linear, or sqrt for adaptive optimisers) is the
cure named in the CERN openlab HPO talk (Wulff, VSC User Day 2025).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from mlpfctl.config.schema import TrainSection
from mlpfctl.errors import ConfigError


def lr_scale_factor(mode: str, global_batch: float, reference_batch: float) -> float:
    """The LR multiplier for ``global_batch`` relative to ``reference_batch``."""
    if reference_batch <= 0 or global_batch <= 0:
        raise ConfigError(
            f"batch sizes must be positive (global {global_batch}, reference {reference_batch})",
            "set train.reference_batch to a positive value",
        )
    ratio = global_batch / reference_batch
    if mode == "none":
        return 1.0
    if mode == "linear":
        return ratio
    if mode == "sqrt":
        return math.sqrt(ratio)
    raise ConfigError(f"unknown train.lr_scaling {mode!r}", "allowed: none, linear, sqrt")


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al. 2019): Adam moments with a per-tensor trust ratio ||w|| / ||update||."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                update = (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update.add(p, alpha=group["weight_decay"])
                w_norm, u_norm = p.norm(), update.norm()
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                p.add_(update * trust, alpha=-group["lr"])
        return loss


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: TrainSection, lr: float
) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "lamb":
        return Lamb(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown train.optimizer {cfg.optimizer!r}", "allowed: adamw, lamb, sgd")


class Schedule:
    """LR multiplier per step: warm-up, then cosine / one-cycle / constant over ``horizon`` steps.

    A plain object (not a lambda) so that ``LambdaLR.state_dict`` can store it.
    """

    def __init__(self, kind: str, horizon: int, warmup: int, min_ratio: float) -> None:
        if kind not in ("cosine", "onecycle", "constant"):
            raise ConfigError(f"unknown train.schedule {kind!r}", "allowed: cosine, onecycle, constant")
        self.kind = kind
        self.horizon = max(1, horizon)
        self.warmup = warmup
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if self.kind == "onecycle":
            # torch OneCycleLR's cosine shape: max_lr/25 -> max_lr over 30 %, then -> max_lr/25e4.
            peak = 0.3 * self.horizon
            if step <= peak:
                return _cos_between(1 / 25, 1.0, step / max(peak, 1))
            return _cos_between(1.0, 1 / 25e4, (step - peak) / max(self.horizon - peak, 1))
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        t = min(1.0, (step - self.warmup) / max(1, self.horizon - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _cos_between(start: float, end: float, frac: float) -> float:
    frac = min(max(frac, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * frac))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainSection) -> torch.optim.lr_scheduler.LambdaLR:
    horizon = cfg.schedule_steps if cfg.schedule_steps is not None else cfg.steps
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, Schedule(cfg.schedule, horizon, cfg.warmup_steps, cfg.min_lr_ratio)
    )


def describe(cfg: TrainSection, lr: float, factor: float) -> dict[str, Any]:
    return {
        "optimizer": cfg.optimizer,
        "schedule": cfg.schedule,
        "base_lr": cfg.lr,
        "lr_scale": factor,
        "lr": lr,
    }
