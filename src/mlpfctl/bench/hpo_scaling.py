"""HPO scaling: the same campaign (space, sampler, scheduler, seed, trial count) with 1, 2, 4 ... workers.

Each point runs ``mlpfctl hpo run`` (what users run) on its own SQLite study and measures:
* the wall-clock to finish the campaign, and to first reach a target loss at the full budget;
* trials, promotions and resumed-from-checkpoint jobs (promotion-type ASHA reuses the training
  already done at lower rungs instead of restarting: the source of superlinear HPO scaling);
* worker utilisation (busy trial seconds / (workers x wall-clock)).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpfctl.errors import RuntimeFailure


@dataclass(frozen=True)
class HpoPoint:
    workers: int
    out_dir: Path
    run_args: tuple[str, ...]  # options passed through to `mlpfctl hpo run`

    @property
    def storage(self) -> str:
        return f"sqlite:///{(self.out_dir / f'hpo-w{self.workers}.db').resolve()}"

    @property
    def study(self) -> str:
        return f"scale-w{self.workers}"


def run_campaign(point: HpoPoint, quiet: bool = True) -> float:
    """Run the campaign with ``point.workers`` workers; returns its wall-clock seconds."""
    db = point.out_dir / f"hpo-w{point.workers}.db"
    workdir = point.out_dir / f"work-w{point.workers}"
    # A scaling point always measures a fresh campaign: no study, trial directory or checkpoint
    # of an earlier run may be reused.
    db.unlink(missing_ok=True)
    shutil.rmtree(workdir, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "mlpfctl",
        "hpo",
        "run",
        "--study",
        point.study,
        "--workers",
        str(point.workers),
        *point.run_args,
        "--set",
        f"hpo.workdir={workdir.resolve()}",
    ]
    env = {**os.environ, "MLPFCTL_HPO__STORAGE": point.storage}
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise RuntimeFailure(
            f"the HPO campaign with {point.workers} worker(s) failed (exit {proc.returncode}): "
            + " | ".join(tail),
            "run the same 'mlpfctl hpo run' options alone to see the error",
        )
    return wall


def campaign_metrics(point: HpoPoint, wall_s: float) -> dict[str, Any]:
    import optuna

    from mlpfctl.hpo.asha import ATTR_CHECKPOINT, ATTR_KIND, ATTR_RUNG, ATTR_START, rung_value
    from mlpfctl.hpo.report import load, summary

    study, settings = load(point.storage, point.study)
    info = summary(study, settings)
    trials = study.get_trials(deepcopy=False)
    started = [t.datetime_start for t in trials if t.datetime_start is not None]
    t0 = min(started) if started else None
    top = len(settings.rungs.budgets) - 1
    finished: list[tuple[float, float]] = []  # (seconds since start, full-budget value)
    busy = 0.0
    promotions = resumed = configs = 0
    for trial in trials:
        if trial.datetime_start and trial.datetime_complete:
            busy += (trial.datetime_complete - trial.datetime_start).total_seconds()
        kind = trial.user_attrs.get(ATTR_KIND)
        if kind == "promotion":
            promotions += 1
            if trial.user_attrs.get(ATTR_CHECKPOINT) and int(trial.user_attrs.get(ATTR_START, 0)) > 0:
                resumed += 1
        elif trial.state.is_finished():
            configs += 1
        if t0 is None or trial.datetime_complete is None or trial.state != optuna.trial.TrialState.COMPLETE:
            continue
        if settings.promotion:
            value = rung_value(trial)
            if value is None or int(trial.user_attrs.get(ATTR_RUNG, 0)) != top:
                continue
        elif trial.values is None:
            continue
        else:
            value = trial.values[0]
        finished.append(((trial.datetime_complete - t0).total_seconds(), float(value)))
    finished.sort()
    best = info["best"]["values"][0] if info.get("best") and info["best"].get("values") else None
    return {
        "workers": point.workers,
        "wall_s": wall_s,
        "trials": configs,
        "promotions": promotions,
        "resumed_from_checkpoint": resumed,
        "steps_consumed": info["steps_consumed"],
        "best_value": best,
        "full_budget_results": finished,
        "utilisation": busy / (wall_s * point.workers) if wall_s > 0 else None,
        "states": info["states"],
    }


def time_to_target(finished: Sequence[Sequence[float]], target: float) -> float | None:
    best = float("inf")
    for seconds, value in finished:
        best = min(best, value)
        if best <= target:
            return float(seconds)
    return None


def add_time_to_target(rows: list[dict[str, Any]], target: float | None) -> float | None:
    """Fill ``time_to_target_s``; with no target, the worst final best of all points (all reach it)."""
    finals = [min((v for _, v in r["full_budget_results"]), default=None) for r in rows]
    reached = [f for f in finals if f is not None]
    if target is None and reached:
        target = max(reached)
    for row in rows:
        row["target"] = target
        row["time_to_target_s"] = (
            time_to_target(row["full_budget_results"], target) if target is not None else None
        )
    return target
