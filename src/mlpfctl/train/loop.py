"""The per-rank training loop, built from parts:

* ``context.setup_rank``      device, process group, data, (DDP) model
* ``step.Optimization`` and ``step.train_step``   optimizer/schedule/scaler; one step
* ``metrics_processor``       windows of loss values, divergence check, throughput, progress
* ``validator``               ``should_validate(step)``, the measurement, history, hook decisions
* ``checkpointer``            ``should_save(step)``, the state, resume
* ``stopping``                signals and the wall-clock budget, agreed by all ranks

Collectives per step (marked ``# sync`` where they are issued): the global counts (a device
all-reduce the host does not wait for), DDP's gradient all-reduce in backward and the
asynchronous stop agreement; the loss values are all-reduced once per logging window.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch

from mlpfctl.atomic import atomic_write_text
from mlpfctl.config.loader import to_toml
from mlpfctl.console import err
from mlpfctl.models.registry import count_parameters
from mlpfctl.train.checkpointer import Checkpointer
from mlpfctl.train.context import Context, setup_rank
from mlpfctl.train.data_streams import Position
from mlpfctl.train.metrics_processor import MetricsProcessor
from mlpfctl.train.runlog import RunLogger
from mlpfctl.train.step import Optimization, train_step
from mlpfctl.train.stopping import SIGNAL, StopControl
from mlpfctl.train.types import TrainRequest, TrainResult
from mlpfctl.train.validator import Validator

CONFIG_FILE = "config.toml"
MODEL_FILE = "model.json"
RESULT_FILE = "result.json"


@dataclass
class Outcome:
    status: str
    reason: str


def run_rank(request: TrainRequest) -> TrainResult:
    """Train on this process's rank; returns the result (meaningful on rank 0)."""
    started = time.monotonic()  # the wall-clock budget counts the set-up too
    ctx = setup_rank(request)
    finished = False
    try:
        result = Trainer(ctx, started).run()
        finished = True
        return result
    finally:
        ctx.close(finished=finished)


class Trainer:
    def __init__(self, ctx: Context, started: float) -> None:
        self.ctx = ctx
        self.opt = Optimization.build(ctx)
        self.log = RunLogger(ctx.request.run_dir, enabled=ctx.is_main)
        self.validator = Validator(ctx, self.log)
        self.checkpointer = Checkpointer(ctx, self.opt, self.validator)
        self.stopper = StopControl(ctx.dist, ctx.cfg.train.max_time, started)
        self.step, self.pos = 0, Position()
        if ctx.request.resume is not None:
            self.step, self.pos = self.checkpointer.restore(ctx.request.resume)
        self.metrics = MetricsProcessor(ctx, self.opt, self.log, self.step)

    def run(self) -> TrainResult:
        ctx, steps = self.ctx, self.ctx.cfg.train.steps
        if ctx.is_main:
            self._write_run_files()
        outcome = Outcome("completed", f"reached train.steps={steps}")
        try:
            with self.stopper, self.metrics:
                if self.step < steps:
                    outcome = self._loop() or outcome
        finally:
            self.log.close()
        result = TrainResult(
            run_dir=ctx.request.run_dir,
            status=outcome.status,
            step=self.step,
            val_loss=self.validator.val_loss,
            best_val_loss=self.validator.best,
            history=self.validator.history,
            checkpoint=self.checkpointer.path,
            events_per_s=self.metrics.events_per_s,
            stop_reason=outcome.reason,
        )
        if ctx.is_main:
            atomic_write_text(
                ctx.request.run_dir / RESULT_FILE, json.dumps(result.as_dict(), indent=2) + "\n"
            )
        # Nobody leaves before rank 0's checkpoint and result are on disk: a launcher that kills
        # the job when one task exits (srun --kill-on-bad-exit) must not interrupt the write.
        ctx.dist.barrier()
        return result

    def _loop(self) -> Outcome | None:
        steps = self.ctx.cfg.train.steps
        for micro, after in self.ctx.data.training(self.pos):
            request = self.stopper.poll()  # sync (asynchronous): agreed one step later
            if request:
                return self._stop_early(request)
            out = train_step(self.ctx, self.opt, micro)
            self.step, self.pos = self.step + 1, after
            self.metrics.record(self.step, micro, out)
            if self.metrics.should_log(self.step):
                self.metrics.log(self.step)
            if self.validator.should_validate(self.step):
                decision = self._validate()
                if decision == "prune":
                    return Outcome("pruned", f"the validation hook pruned the run at step {self.step}")
                if decision == "stop":
                    self._save()
                    return Outcome("stopped", f"the validation hook stopped the run at step {self.step}")
            if self.checkpointer.should_save(self.step):
                self._save()
            if self.step >= steps:
                return None
        return None  # unreachable: the training stream never ends

    def _validate(self) -> str:
        with self.metrics.pause():
            start = time.monotonic()
            decision = self.validator.run(self.step)
            self.stopper.reserve(time.monotonic() - start)
        return decision

    def _save(self) -> None:
        with self.metrics.pause():
            start = time.monotonic()
            self.checkpointer.save(self.step, self.pos)
            self.stopper.reserve(time.monotonic() - start)

    def _stop_early(self, request: int) -> Outcome:
        """A signal: checkpoint now (exit 3, requeue). The time budget: finish like a last step
        (log, validation, checkpoint) and report it."""
        reason = self.stopper.describe(request, self.step)
        if request == SIGNAL:
            if self.checkpointer.saved_at != self.step:
                self._save()
            return Outcome("checkpointed", reason)
        if self.metrics.has_window:
            self.metrics.log(self.step)
        if self.validator.validated_at != self.step:
            self._validate()  # the final measurement; a hook's decision changes nothing now
        if self.checkpointer.saved_at != self.step:
            self._save()
        return Outcome("time_limit", reason)

    def _write_run_files(self) -> None:
        ctx = self.ctx
        run_dir = ctx.request.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, to_toml(ctx.cfg))
        info = {
            "spec": ctx.spec.as_dict(),
            "parameters": count_parameters(ctx.module),
            "world_size": ctx.world_size,
            "backend": ctx.backend.name,
            "device": str(ctx.device),
            "process_group": ctx.dist.backend,
            "threads": torch.get_num_threads(),
            "lr": self.opt.lr,
            "lr_scale": self.opt.lr_factor,
            "autocast": str(ctx.autocast_dtype) if ctx.autocast_dtype else None,
        }
        atomic_write_text(run_dir / MODEL_FILE, json.dumps(info, indent=2) + "\n")
        if not ctx.request.quiet:
            err.print(
                f"model {ctx.spec.type}: {info['parameters']:,} parameters; "
                f"{ctx.world_size} rank(s) "
                f"on {ctx.backend.name} ({ctx.device}); lr {self.opt.lr:.3g} "
                f"(x{self.opt.lr_factor:.3g} scaling); "
                f"{'resuming at step ' + str(self.step) if self.step else 'from scratch'}"
            )
