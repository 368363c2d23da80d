"""Batch-size scan: validation loss against the global batch, per LR-scaling rule and optimiser.

Every point trains the same model on the same data for the same number of epochs (so a larger
global batch takes fewer steps), from the same seed, and validates on the same held-out events at
its last step. The global batch G (events, or padded elements with length-bucketed batches) is
split as G = ranks x local batch x accumulation: gradient accumulation makes up what ranks x the
largest local batch (``max_local``) cannot reach.

The LR follows ``train.lr_scaling`` relative to the smallest global batch of the scan
(``train.reference_batch = G_min``): none keeps ``train.lr``, linear multiplies it by G / G_min,
sqrt by its square root. Warm-up covers the same share of the training data at every batch size
(Goyal et al., arXiv:1706.02677: a fixed number of warm-up epochs), i.e. ``warmup_fraction`` of
each point's steps, at least one step.

Generalisation gap of a point: its validation loss over the smallest batch's (same rule and
optimiser) minus 1. The batch to use: the largest G whose gap stays within the tolerance.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpfctl.bench.records import BenchRecord
from mlpfctl.config.schema import Config
from mlpfctl.errors import UsageError

UNITS = ("events", "elements")
RULES = ("none", "linear", "sqrt")
OPTIMIZERS = ("adamw", "lamb", "sgd")
DEFAULT_MAX_LOCAL_EVENTS = 64


@dataclass(frozen=True)
class BatchPoint:
    global_batch: int
    rule: str
    optimizer: str
    ranks: int
    accum: int
    local_batch: int
    steps: int
    warmup_steps: int
    repeat: int = 0

    @property
    def name(self) -> str:
        return f"{self.optimizer}-{self.rule}-G{self.global_batch}-r{self.repeat}"


@dataclass(frozen=True)
class BatchRequest:
    config: Config
    global_batches: tuple[int, ...]
    unit: str = "events"
    rules: tuple[str, ...] = RULES
    optimizers: tuple[str, ...] = ("adamw", "lamb")
    ranks: int = 1
    max_local: int | None = (
        None  # largest per-rank micro-batch; None: 64 events, or data.max_elements_per_batch
    )
    epochs: float = 2.0
    warmup_fraction: float = 0.05
    tolerance: float = 0.02
    repeats: int = 1
    out_dir: Path = Path("scale-bench")

    def check(self) -> None:
        if self.unit not in UNITS:
            raise UsageError(
                f"--unit {self.unit!r} is not events or elements", "use --unit events or --unit elements"
            )
        for name, values, allowed in (
            ("--lr-scaling", self.rules, RULES),
            ("--optimizer", self.optimizers, OPTIMIZERS),
        ):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise UsageError(
                    f"{name} {','.join(values)!r}: unknown {', '.join(bad) or 'empty list'}",
                    f"choose from {', '.join(allowed)}",
                )
        if len(self.global_batches) < 2:
            raise UsageError(
                "a batch-size scan needs at least two --global-batches",
                "example: --global-batches 8,16,32,64,128",
            )
        if not 0 <= self.warmup_fraction < 1 or self.epochs <= 0 or self.tolerance < 0:
            raise UsageError(
                f"--epochs {self.epochs}, --warmup-fraction {self.warmup_fraction}, "
                f"--tolerance {self.tolerance}: epochs must be positive, the warm-up fraction in [0, 1), "
                "the tolerance >= 0",
                "example: --epochs 2 --warmup-fraction 0.05 --tolerance 0.02",
            )

    @property
    def largest_local(self) -> int:
        if self.max_local is not None:
            return self.max_local
        return DEFAULT_MAX_LOCAL_EVENTS if self.unit == "events" else self.config.data.max_elements_per_batch


def split_batch(global_batch: int, ranks: int, max_local: int) -> tuple[int, int]:
    """(local batch, accumulation steps) with ranks x local x accumulation = the global batch.

    The fewest accumulation steps whose local batch fits ``max_local`` and divides evenly.
    """
    if global_batch % ranks:
        raise UsageError(
            f"global batch {global_batch} does not divide over {ranks} ranks",
            f"use global batches that are multiples of {ranks}",
        )
    per_rank = global_batch // ranks
    for accum in range(max(1, -(-per_rank // max_local)), per_rank + 1):
        if per_rank % accum == 0 and per_rank // accum <= max_local:
            return per_rank // accum, accum
    raise AssertionError("unreachable: accumulation = per_rank always divides")


def plan(request: BatchRequest, train_samples: int) -> list[BatchPoint]:
    """Every point of the scan; ``train_samples``: training events (or elements) per epoch."""
    request.check()
    points = []
    for optimizer in request.optimizers:
        for rule in request.rules:
            for global_batch in sorted(request.global_batches):
                local, accum = split_batch(global_batch, request.ranks, request.largest_local)
                steps = max(1, round(request.epochs * train_samples / global_batch))
                warmup = max(1, round(request.warmup_fraction * steps)) if request.warmup_fraction else 0
                for repeat in range(request.repeats):
                    points.append(
                        BatchPoint(
                            global_batch, rule, optimizer, request.ranks, accum, local, steps, warmup, repeat
                        )
                    )
    return points


def train_samples(config: Config, unit: str) -> int:
    """Training events (or their elements) in one epoch of ``config``'s training split."""
    from mlpfctl.data.dataset import open_dataset, split_dataset

    dataset = open_dataset(config.data.path, format=config.data.format)
    train, _, _ = split_dataset(
        dataset, config.data.valid_fraction, config.data.test_fraction, config.run.seed
    )
    lengths = train.lengths
    if config.data.max_train_events is not None:
        lengths = lengths[: config.data.max_train_events]
    return len(lengths) if unit == "events" else int(lengths.sum())


def point_config(base: Config, point: BatchPoint, unit: str, reference: int) -> Config:
    train = dataclasses.replace(
        base.train,
        optimizer=point.optimizer,
        lr_scaling=point.rule,
        reference_batch=reference,
        grad_accum=point.accum,
        steps=point.steps,
        schedule_steps=None,
        warmup_steps=point.warmup_steps,
        val_every=point.steps,  # one validation, at the end
        checkpoint_every=point.steps,
        log_every=max(1, point.steps // 10),  # throughput windows even in short runs
        batch_events=point.local_batch if unit == "events" else None,
        progress=False,
    )
    data = base.data
    if unit == "elements":
        data = dataclasses.replace(base.data, max_elements_per_batch=point.local_batch)
    run = dataclasses.replace(base.run, seed=base.run.seed + point.repeat)
    return dataclasses.replace(base, train=train, data=data, run=run)


def run_point(request: BatchRequest, point: BatchPoint) -> dict[str, Any]:
    import json

    from mlpfctl.bench.law import train_in_children
    from mlpfctl.train.api import TrainRequest

    reference = min(request.global_batches)
    run_dir = request.out_dir / "runs" / f"batch-{point.name}"
    config = point_config(request.config, point, request.unit, reference)
    result = train_in_children(TrainRequest(config, run_dir, nproc=point.ranks, quiet=True))
    if result.status == "checkpointed":
        # A stop request (Ctrl-C, SIGTERM): the finished points keep their records; stop the scan.
        raise KeyboardInterrupt
    info_path = run_dir / "model.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    return {
        "global_batch": point.global_batch,
        "lr_scaling": point.rule,
        "optimizer": point.optimizer,
        "repeat": point.repeat,
        "ranks": point.ranks,
        "local_batch": point.local_batch,
        "grad_accum": point.accum,
        "steps": point.steps,
        "warmup_steps": point.warmup_steps,
        "lr": info.get("lr"),
        "lr_scale": info.get("lr_scale"),
        "val_loss": result.val_loss,
        "best_val_loss": result.best_val_loss,
        "events_per_s": result.events_per_s or _window_rate(run_dir),
        "status": result.status,
    }


def _window_rate(run_dir: Path) -> float | None:
    """Median events/s of the run's logged windows, the first one included (a run of few steps)."""
    from mlpfctl.train.runlog import read_metrics

    rates = [
        r["events_per_s"] for r in read_metrics(run_dir) if r.get("kind") == "train" and r.get("events_per_s")
    ]
    return statistics.median(rates) if rates else None


def run_scan(
    request: BatchRequest,
    points: Sequence[BatchPoint],
    done: Callable[[BatchPoint, dict[str, Any]], None] | None = None,
) -> list[BenchRecord]:
    records = []
    settings = {
        "unit": request.unit,
        "epochs": request.epochs,
        "warmup_fraction": request.warmup_fraction,
        "tolerance": request.tolerance,
        "reference_batch": min(request.global_batches),
        "max_local": request.largest_local,
        "base_lr": request.config.train.lr,
        "model": dataclasses.asdict(request.config.model),
        "data": request.config.data.path,
    }
    # At the reference batch every LR rule gives the base LR: one training per optimizer and
    # repeat serves all rules there (the others record whose run they share).
    reference = min(request.global_batches)
    shared: dict[tuple[str, int], dict[str, Any]] = {}
    for point in points:
        key = (point.optimizer, point.repeat)
        if point.global_batch == reference and key in shared:
            first = shared[key]
            metrics = {**first, "lr_scaling": point.rule, "shared_with": first["lr_scaling"]}
        else:
            metrics = run_point(request, point)
            if point.global_batch == reference:
                shared[key] = metrics
        if done is not None:
            done(point, metrics)
        record = BenchRecord(
            kind="batch",
            point={
                "optimizer": point.optimizer,
                "lr_scaling": point.rule,
                "global_batch": point.global_batch,
                "repeat": point.repeat,
            },
            metrics=metrics,
            settings=settings,
        )
        record.write(request.out_dir)
        records.append(record)
    return records


def summarise(
    rows: Sequence[dict[str, Any]], tolerance: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Mean over repeats per point with the gap to the smallest batch, and the largest batch per rule.

    Returns (points, choices): one row per (optimizer, rule, global batch), and per (optimizer,
    rule) the largest global batch whose loss is within ``tolerance`` of the smallest batch's.
    """
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["optimizer"], row["lr_scaling"], int(row["global_batch"])), []).append(row)
    points: list[dict[str, Any]] = []
    for (optimizer, rule, batch), members in sorted(groups.items()):
        losses = [
            float(m["val_loss"])
            for m in members
            if m.get("val_loss") is not None and math.isfinite(m["val_loss"])
        ]
        rates = [float(m["events_per_s"]) for m in members if m.get("events_per_s")]
        first = members[0]
        points.append(
            {
                "optimizer": optimizer,
                "lr_scaling": rule,
                "global_batch": batch,
                "local_batch": first.get("local_batch"),
                "grad_accum": first.get("grad_accum"),
                "steps": first.get("steps"),
                "warmup_steps": first.get("warmup_steps"),
                "lr": first.get("lr"),
                "val_loss": statistics.fmean(losses) if losses else None,
                "val_loss_err": statistics.stdev(losses) / math.sqrt(len(losses))
                if len(losses) > 1
                else None,
                "events_per_s": statistics.fmean(rates) if rates else None,
                "repeats": len(members),
            }
        )
    choices = []
    for optimizer, rule in dict.fromkeys((p["optimizer"], p["lr_scaling"]) for p in points):
        series = [p for p in points if p["optimizer"] == optimizer and p["lr_scaling"] == rule]
        base: float | None = series[0]["val_loss"]
        best: dict[str, Any] | None = None
        for p in series:
            loss: float | None = p["val_loss"]
            gap = loss / base - 1 if base and loss is not None else None
            p["gap"] = gap
            if gap is not None and gap <= tolerance:
                best = p
        choices.append(
            {
                "optimizer": optimizer,
                "lr_scaling": rule,
                "largest_batch": best["global_batch"] if best else None,
                "gap": best["gap"] if best else None,
                "val_loss": best["val_loss"] if best else None,
                "events_per_s": best["events_per_s"] if best else None,
                "reference_loss": base,
                "tolerance": tolerance,
            }
        )
    return points, choices
