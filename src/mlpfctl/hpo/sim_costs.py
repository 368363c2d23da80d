"""Job costs from recorded job times: start-up, checkpoint resume, seconds per step, dispatch gaps.

A job's wall-clock (Optuna's start to completion) is modelled as

    seconds = startup + resume * [it loads a checkpoint] + steps * step_s / efficiency(ranks)

and fitted by non-negative least squares over the recorded jobs at the study's base rank count
(``startup`` then includes the final checkpoint write). Jobs at more ranks (RASDA) give the
measured weak-scaling efficiency of those rank counts. The ratio of each job's measured to fitted
time is kept: the simulator multiplies every simulated job by one of them (timing noise, including
the load of a shared machine). The gap between two consecutive jobs of one worker (claiming,
sampling, storage round trips) is the median over a reconstruction of the workers' timelines.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mlpfctl.hpo.sim_source import RecordedJob

LOAD_WINDOW = 7  # jobs in the running median that estimates the machine's load at a moment
FIT_ROUNDS = 4


@dataclass(frozen=True)
class CostFit:
    step_s: float
    startup_s: float
    resume_s: float
    dispatch_s: float
    efficiency: dict[int, float] = field(default_factory=dict)
    jitter: tuple[float, ...] = ()  # measured / fitted time of every job (load and scatter together)
    residuals: tuple[float, ...] = ()  # the same with the load profile divided out
    load: tuple[tuple[float, float], ...] = ()  # (seconds since the first job, slow-down factor)
    jobs: int = 0
    workers: int = 1  # the most jobs that ran at once (the recorded campaign's worker count)
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        spread = statistics.pstdev(self.jitter) if len(self.jitter) > 1 else 0.0
        factors = [f for _, f in self.load]
        return {
            "step_s": self.step_s,
            "startup_s": self.startup_s,
            "resume_s": self.resume_s,
            "dispatch_s": self.dispatch_s,
            "efficiency": {str(k): v for k, v in sorted(self.efficiency.items())},
            "jobs": self.jobs,
            "workers": self.workers,
            "job_time_spread": spread,
            "load_range": [min(factors), max(factors)] if factors else None,
            "notes": list(self.notes),
        }


def fit_costs(jobs: Sequence[RecordedJob], base_ranks: int) -> CostFit:
    """Least squares of the job times, with the recorded machine load divided out.

    On a shared machine the same job takes longer when others compute: the fit alternates between
    the cost coefficients (on load-corrected times) and the load (a running median over
    ``LOAD_WINDOW`` consecutive jobs of measured / fitted time, normalised to a median of 1).
    """
    import numpy as np
    from scipy.optimize import nnls

    notes: list[str] = []
    base = sorted((j for j in jobs if j.ranks <= base_ranks), key=lambda j: j.started_s) or sorted(
        jobs, key=lambda j: j.started_s
    )
    steps = np.array([j.steps for j in base], dtype=float)
    seconds = np.array([j.seconds for j in base], dtype=float)
    resumed = np.array([1.0 if j.resumed else 0.0 for j in base])
    columns = [np.ones_like(steps), steps]
    with_resume = 0 < resumed.sum() < len(base)
    if with_resume:
        columns.append(resumed)
    if len(set(steps.tolist())) < 2:
        # One job length only: start-up and per-step time cannot be told apart.
        notes.append("all recorded jobs trained the same number of steps: start-up folded into step time")
        columns = [steps]
    design = np.stack(columns, axis=1)
    load = np.ones_like(seconds)
    for _ in range(FIT_ROUNDS):
        coef, _ = nnls(design, seconds / load)
        predicted = design @ coef
        if not (predicted > 0).all():
            break
        load = _running_median(seconds / predicted, LOAD_WINDOW)
        load /= float(np.median(load))
    if len(columns) == 1:
        startup, step_s, resume = 0.0, float(coef[0]), 0.0
    else:
        startup, step_s = float(coef[0]), float(coef[1])
        resume = float(coef[2]) if with_resume else 0.0
    if step_s <= 0:
        step_s = float(seconds.sum() / max(steps.sum(), 1.0))
        startup, resume = 0.0, 0.0
        load = np.ones_like(seconds)
        notes.append("no per-step trend in the recorded job times: mean seconds per step used")
    predicted = startup + resume * resumed + step_s * steps
    ratios = seconds / np.where(predicted > 0, predicted, 1.0)
    return CostFit(
        step_s=step_s,
        startup_s=startup,
        resume_s=resume,
        dispatch_s=dispatch_gap(jobs),
        efficiency=_efficiency(jobs, base_ranks, startup, resume, step_s),
        jitter=tuple(float(np.clip(r, 0.2, 5.0)) for r in ratios),
        residuals=tuple(float(np.clip(r, 0.2, 5.0)) for r in ratios / load),
        load=tuple((j.started_s, float(f)) for j, f in zip(base, load, strict=True)),
        jobs=len(jobs),
        workers=concurrency(jobs),
        notes=tuple(notes),
    )


def _running_median(values: Any, window: int) -> Any:
    import numpy as np

    data = np.asarray(values, dtype=float)
    half = window // 2
    return np.array([np.median(data[max(0, i - half) : i + half + 1]) for i in range(len(data))])


def _efficiency(
    jobs: Sequence[RecordedJob], base_ranks: int, startup: float, resume: float, step_s: float
) -> dict[int, float]:
    """Per rank count above the base: step time at the base over step time there (per-rank batch fixed)."""
    out: dict[int, float] = {}
    for ranks in sorted({j.ranks for j in jobs if j.ranks > base_ranks}):
        group = [j for j in jobs if j.ranks == ranks]
        training = sum(max(0.0, j.seconds - startup - (resume if j.resumed else 0.0)) for j in group)
        steps = sum(j.steps for j in group)
        if training > 0 and steps > 0:
            out[ranks] = step_s / (training / steps)
    return out


def concurrency(jobs: Sequence[RecordedJob]) -> int:
    edges = sorted([(j.started_s, 1) for j in jobs] + [(j.ended_s, -1) for j in jobs])
    running = most = 0
    for _, delta in edges:
        running += delta
        most = max(most, running)
    return max(1, most)


def dispatch_gap(jobs: Sequence[RecordedJob]) -> float:
    """Median idle gap between a worker's consecutive jobs, workers reconstructed greedily."""
    workers = concurrency(jobs)
    free: list[float] = []  # end times of the workers' last jobs
    gaps: list[float] = []
    for job in sorted(jobs, key=lambda j: j.started_s):
        if len(free) < workers:
            heapq.heappush(free, job.ended_s)
            continue
        ready = [t for t in free if t <= job.started_s]
        if ready:
            # The worker that finished last before this start is the one that claimed it.
            latest = max(ready)
            free.remove(latest)
            heapq.heapify(free)
            gaps.append(job.started_s - latest)
        else:
            heapq.heappop(free)
        heapq.heappush(free, job.ended_s)
    return statistics.median(gaps) if gaps else 0.0
