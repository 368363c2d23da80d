"""Scaling law: validation loss against training-set size, L(D) = a * D^-b + c.

Each dataset size D trains the same model for the same number of steps on the first D events of
the training split (nested subsets), validating on the same held-out events; ``repeats`` seeds per
size give the error bars used in the fit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpfctl.atomic import atomic_write_text
from mlpfctl.bench.fit import PowerLawFit, fit_power_law
from mlpfctl.bench.records import BenchRecord
from mlpfctl.config.schema import Config


@dataclass(frozen=True)
class LawRequest:
    config: Config
    sizes: tuple[int, ...]
    repeats: int
    out_dir: Path
    nproc: int = 1
    extrapolate: tuple[int, ...] = ()


def size_config(base: Config, size: int, repeat: int) -> Config:
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, max_train_events=size),
        run=dataclasses.replace(base.run, seed=base.run.seed + repeat),
    )


def _train_in_children(request: Any) -> Any:
    """Train one point in child processes only, one rank included: the parent holds no device
    between points (see ``train_scaling.run_point``)."""
    from mlpfctl.launch.local import launch_local
    from mlpfctl.train.api import train

    if request.nproc > 1:
        return train(request)  # spawns its ranks itself
    return launch_local(train, 1, (request,), backend=request.config.run.backend)


def run_law(request: LawRequest, progress: Any = None) -> tuple[list[BenchRecord], PowerLawFit]:
    from mlpfctl.train.api import TrainRequest

    records: list[BenchRecord] = []
    for size in request.sizes:
        losses: list[float] = []
        for repeat in range(request.repeats):
            run_dir = request.out_dir / "runs" / f"D{size}-r{repeat}"
            result = _train_in_children(
                TrainRequest(
                    size_config(request.config, size, repeat), run_dir, nproc=request.nproc, quiet=True
                )
            )
            if result.best_val_loss is None:
                continue
            losses.append(float(result.best_val_loss))
            if progress is not None:
                progress(size, repeat, result.best_val_loss)
        if not losses:
            continue
        err = statistics.stdev(losses) / math.sqrt(len(losses)) if len(losses) > 1 else None
        record = BenchRecord(
            kind="scaling-law",
            point={"train_events": size},
            metrics={
                "train_events": size,
                "val_loss": statistics.fmean(losses),
                "val_loss_err": err,
                "val_losses": losses,
                "repeats": len(losses),
            },
            settings={
                "steps": request.config.train.steps,
                "model": dataclasses.asdict(request.config.model),
                "nproc": request.nproc,
            },
        )
        record.write(request.out_dir)
        records.append(record)
    sizes = [r.metrics["train_events"] for r in records]
    losses_mean = [r.metrics["val_loss"] for r in records]
    errs = [r.metrics["val_loss_err"] for r in records]
    fit = fit_power_law(sizes, losses_mean, errs if all(e for e in errs) else None)
    summary = fit.as_dict() | {
        "extrapolation": [
            {"train_events": d, "val_loss": fit.predict(d), "val_loss_err": fit.predict_err(d)}
            for d in request.extrapolate
        ]
    }
    atomic_write_text(request.out_dir / "scaling-law-fit.json", json.dumps(summary, indent=2) + "\n")
    return records, fit


def parse_sizes(text: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(set(int(v) for v in text)))
