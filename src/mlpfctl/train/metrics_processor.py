"""Training metrics: the per-step loss values and counts of a logging window, the divergence check,
throughput and MFU, the progress bar.

The loop never waits for the device per step: each step's loss terms (this rank's) and global
counts stay on the device in the window. They are read, all-reduced across ranks once, at a log
boundary (``train.log_every``) and before a validation or checkpoint (``pause``), where the
device is synchronised anyway; that is also where divergence is detected, step by step in order.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from mlpfctl.console import err
from mlpfctl.models.flops import mfu
from mlpfctl.train.context import Context
from mlpfctl.train.runlog import RunLogger
from mlpfctl.train.step import LOSS_NAMES, Optimization, StepOutput, step_flops
from mlpfctl.train.types import DivergedError, due

EXPLODE_WINDOW = 10  # steps whose median loss is the reference for "exploding"


class MetricsProcessor:
    def __init__(self, ctx: Context, opt: Optimization, log: RunLogger, start_step: int) -> None:
        self.ctx = ctx
        self.opt = opt
        self.log_writer = log
        self.every = ctx.cfg.train.log_every
        self.last_step = ctx.cfg.train.steps
        self.explode_factor = ctx.cfg.train.explode_factor
        self._pending: list[tuple[int, StepOutput]] = []  # on the device, not yet read
        self._steps: list[int] = []  # read: step, global losses, global counts
        self._losses: list[list[float]] = []
        self._counts: list[list[float]] = []
        self._flops = 0.0
        self._early: list[float] = []
        self._window_start = time.perf_counter()
        self._paused_s = 0.0
        self.rates: list[float] = []  # events/s per window after the first (TrainResult)
        self.last_loss: float | None = None
        self._progress, self._task = _progress_bar(ctx, start_step)

    # -- per step --------------------------------------------------------------------------
    def record(self, step: int, micro: Sequence[Any], out: StepOutput) -> None:
        """Keep this step's device values; count its FLOPs from the host copies of the masks."""
        self._pending.append((step, out))
        self._flops += step_flops(self.ctx, micro) * self.ctx.world_size
        self._progress.update(self._task, completed=step)

    def should_log(self, step: int) -> bool:
        return due(step, self.every, self.last_step)

    @property
    def has_window(self) -> bool:
        return bool(self._pending or self._steps)

    # -- reading the device values ----------------------------------------------------------
    def settle(self) -> None:
        """Read the pending steps (one all-reduce, one device-to-host copy) and check each for
        divergence, in step order. Every rank calls this at the same steps."""
        if not self._pending:
            return
        steps = [s for s, _ in self._pending]
        losses = torch.stack([out.losses for _, out in self._pending])
        counts = torch.stack([out.counts for _, out in self._pending]).cpu()
        self._pending.clear()
        # sync: the per-rank parts of each step's global loss add up
        losses = self.ctx.dist.all_reduce(losses).cpu()
        world = self.ctx.world_size
        for step, row, count in zip(steps, losses.tolist(), counts.tolist(), strict=True):
            values = [v / world for v in row]
            self._check_divergence(values[-1], step)
            self._steps.append(step)
            self._losses.append(values)
            self._counts.append(count)
            self.last_loss = values[-1]

    def _check_divergence(self, total: float, step: int) -> None:
        if not math.isfinite(total):
            raise DivergedError(
                f"training diverged: the loss is {total} at step {step}",
                "lower train.lr, enable train.grad_clip, or check the input data for NaN/inf",
            )
        if len(self._early) < EXPLODE_WINDOW:
            self._early.append(total)
            return
        reference = statistics.median(self._early)
        if reference > 0 and total > self.explode_factor * reference:
            raise DivergedError(
                f"training diverged: the loss {total:.4g} at step {step} exceeds {self.explode_factor:g} x "
                f"its early median {reference:.4g}",
                "lower train.lr or raise train.explode_factor",
            )

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """Around validation and checkpoints: settle the window (divergence is checked before
        anything is validated or saved) and leave their time out of the throughput."""
        self.settle()
        self.ctx.backend.synchronize(self.ctx.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            self._paused_s += time.perf_counter() - start

    # -- the log record ---------------------------------------------------------------------
    def log(self, step: int) -> None:
        """Write the window's record (mean losses, LR, throughput, TFLOP/s, MFU) and start anew."""
        self.settle()  # the device work of the window is done after this
        if not self._steps:
            return
        elapsed = time.perf_counter() - self._window_start - self._paused_s
        record: dict[str, Any] = {
            name: statistics.fmean(row[i] for row in self._losses) for i, name in enumerate(LOSS_NAMES)
        }
        record["lr"] = self.opt.current_lr
        events = sum(c[2] for c in self._counts)
        elements = sum(c[0] for c in self._counts)
        if elapsed > 0:
            rate = events / elapsed
            record["events_per_s"] = rate
            record["elements_per_s"] = elements / elapsed
            record["tflops"] = self._flops / elapsed / 1e12
            utilisation = mfu(self._flops, elapsed, self.ctx.peak_flops, self.ctx.world_size)
            if utilisation is not None:
                record["mfu"] = utilisation
            if self._steps[0] > self.every:  # the first window carries the warm-up
                self.rates.append(rate)
        self.log_writer.write("train", step, record)
        self._progress.update(self._task, completed=step, info=f"loss {record['Total']:.4g}")
        self._steps.clear()
        self._losses.clear()
        self._counts.clear()
        self._flops = 0.0
        self._paused_s = 0.0
        self._window_start = time.perf_counter()

    @property
    def events_per_s(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None

    def __enter__(self) -> MetricsProcessor:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)


def _progress_bar(ctx: Context, start: int) -> tuple[Any, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    enabled = ctx.is_main and not ctx.request.quiet and ctx.cfg.train.progress
    progress = Progress(
        TextColumn("train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=err,
        disable=not enabled,
        transient=False,
    )
    task = progress.add_task("train", total=ctx.cfg.train.steps, completed=start, info="")
    return progress, task
