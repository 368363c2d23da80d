"""Validation: when to validate, the measurement itself, the history, and the caller's decision.

Every ``train.val_every`` steps and at the last step: mean losses (global sums / global counts)
and physics metrics over the validation split. Rank 0 hands the record to the caller's hook
(HPO), and its decision ("continue", "prune", "stop") is broadcast so that all ranks act alike.
"""

from __future__ import annotations

from typing import Any

import torch

from mlpfctl.errors import RuntimeFailure
from mlpfctl.models.loss import TERM_NAMES, loss_sums, per_particle
from mlpfctl.models.targets import predict_particles
from mlpfctl.train.context import Context
from mlpfctl.train.metrics import MetricAccumulator
from mlpfctl.train.runlog import RunLogger
from mlpfctl.train.step import count_dtype
from mlpfctl.train.types import DECISIONS, due


class Validator:
    def __init__(self, ctx: Context, log: RunLogger) -> None:
        self.ctx = ctx
        self.log = log
        self.every = ctx.cfg.train.val_every
        self.last_step = ctx.cfg.train.steps
        self.history: list[dict[str, float]] = []
        self.best: float | None = None
        self.validated_at: int | None = None

    def should_validate(self, step: int) -> bool:
        return due(step, self.every, self.last_step)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best_val_loss": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
        self.best = state.get("best_val_loss")

    @property
    def val_loss(self) -> float | None:
        return self.history[-1]["Total"] if self.history else None

    def run(self, step: int) -> str:
        """Validate at ``step``, record and log it; return the decision all ranks agreed on."""
        metrics = self.measure()
        record: dict[str, float] = {
            "step": float(step),
            **{k: v for k, v in metrics.items() if k != "confusion"},
            "val_loss": metrics["Total"],  # the name HPO objectives report
        }
        self.history.append(record)
        self.log.write("valid", step, metrics)
        self.best = metrics["Total"] if self.best is None else min(self.best, metrics["Total"])
        self.validated_at = step
        return self._decide(step, record)

    def _decide(self, step: int, record: dict[str, float]) -> str:
        ctx = self.ctx
        decision = "continue"
        if ctx.is_main and ctx.request.hooks is not None:
            decision = ctx.request.hooks.on_validation(step, dict(record))
            if decision not in DECISIONS:
                raise RuntimeFailure(f"hook returned {decision!r}", f"return one of {DECISIONS}")
        return DECISIONS[ctx.dist.broadcast_int(DECISIONS.index(decision))]  # sync

    def measure(self) -> dict[str, Any]:
        """Mean losses (global sums / global counts) and physics metrics over the validation split."""
        ctx = self.ctx
        module = ctx.module
        module.eval()
        names = [*TERM_NAMES]
        # Loss sums stay on the device and are read once, after the all-reduce.
        sums = torch.zeros(len(names) + 2, dtype=count_dtype(ctx.device), device=ctx.device)
        acc = MetricAccumulator(ctx.spec.num_classes, jets=ctx.cfg.train.val_jets)
        batches = ctx.data.valid_batches(ctx.data.valid, ctx.cfg.train.val_max_events)
        with torch.no_grad():
            for host_batch in ctx.data.loader(ctx.data.valid, batches):
                batch = host_batch.to(ctx.device, non_blocking=True)
                with ctx.autocast():
                    outputs = module(batch.X, batch.mask)
                s = loss_sums(outputs, batch.X, batch.mask, batch.target_cls, batch.target_p4, ctx.weights)
                sums += torch.stack([*(s.sums[n] for n in names), s.elements, s.particles]).to(sums.dtype)
                pred = predict_particles(outputs[0], outputs[1], outputs[2], batch.X, batch.mask)
                acc.update(batch.target_cls, pred.cls, batch.target_p4, pred.p4, batch.mask, batch.X[..., 0])
        host = ctx.dist.all_reduce(sums).double().cpu()  # sync
        # sync; every entry is an unpickled copy, this rank's own too: merge only the others'
        gathered = ctx.dist.all_gather_object(acc)
        acc.merge([other for rank, other in enumerate(gathered) if rank != ctx.rank])
        module.train()
        n_el, n_p = max(host[-2].item(), 1.0), max(host[-1].item(), 1.0)
        out: dict[str, Any] = {
            name: host[i].item() / (n_p if per_particle(name) else n_el) for i, name in enumerate(names)
        }
        out["Total"] = sum(out[n] for n in names)
        out.update(acc.summary(ctx.class_names, ctx.data.schema.element_types))
        return out
