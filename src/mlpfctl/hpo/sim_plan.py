"""``mlpfctl hpo simulate``: repeated replays of a campaign over schedulers and worker counts.

``prepare`` reads the recorded studies, fits the job costs and the curve model, and resolves the
campaign (what ``--dry-run`` shows). ``run`` replays it ``repeats`` times per (scheduler, workers):
every replay draws one set of configurations and uses it for every worker count and scheduler
(common random numbers: the speed-up compares like with like), and every promotion-type replay is
run twice, with trial reuse and without it (promoted jobs retrain from step 0), so what reuse saves
is a term of its own. The spread over replays gives the uncertainties.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mlpfctl.errors import UsageError
from mlpfctl.hpo.schedulers import Rungs
from mlpfctl.hpo.sim_costs import CostFit, fit_costs
from mlpfctl.hpo.sim_curves import DRAWS, CurvePool
from mlpfctl.hpo.sim_source import RecordedStudy, load_recorded
from mlpfctl.hpo.simulate import (
    SCHEDULERS,
    Campaign,
    Costs,
    Replay,
    check_scheduler,
    decision_steps,
    simulate,
)

TIMINGS = ("noise", "load", "fixed")


@dataclass(frozen=True)
class Source:
    storage: str
    study: str


@dataclass(frozen=True)
class CostOverrides:
    """Measured values replaced by the user's (a cluster's start-up, say); None keeps the fit."""

    step_s: float | None = None
    startup_s: float | None = None
    resume_s: float | None = None
    checkpoint_s: float | None = None
    dispatch_s: float | None = None
    launch_s: float | None = None
    rank_efficiency: float | None = None


@dataclass(frozen=True)
class SimRequest:
    sources: tuple[Source, ...]
    schedulers: tuple[str, ...] = ()  # empty: the first study's scheduler
    workers: tuple[int, ...] = (1, 4, 16, 64)
    trials: int | None = None  # None: the first study's
    min_resource: int | None = None
    max_resource: int | None = None
    eta: int | None = None
    ranks_per_trial: int | None = None
    max_ranks_per_trial: int | None = None
    repeats: int = 20
    draw: str = "bootstrap"
    trend: bool = True  # keep the recorded sampler's improvement over the campaign
    seed: int = 0
    target: float | None = None
    timing: str = "noise"  # noise: recorded scatter; load: the recorded load over time; fixed: none
    costs: CostOverrides = field(default_factory=CostOverrides)


@dataclass
class Prepared:
    request: SimRequest
    recorded: list[RecordedStudy]
    fit: CostFit
    costs: Costs
    rungs: Rungs
    schedulers: tuple[str, ...]
    workers: tuple[int, ...]
    trials: int
    ranks_per_trial: int
    max_ranks_per_trial: int
    poll_s: float
    pool: CurvePool
    promotion_rule: str

    def campaign(self, scheduler: str, workers: int, reuse: bool = True) -> Campaign:
        return Campaign(
            scheduler=scheduler,
            trials=self.trials,
            workers=workers,
            rungs=self.rungs,
            ranks_per_trial=self.ranks_per_trial,
            max_ranks_per_trial=self.max_ranks_per_trial,
            reuse=reuse,
            poll_s=self.poll_s,
            study_name=self.recorded[0].name,
            promotion_rule=self.promotion_rule,
        )

    @property
    def notes(self) -> list[str]:
        """Where the prediction rests on assumptions rather than on the recordings."""
        out = list(self.fit.notes)
        if self.pool.extrapolated:
            out.append(
                f"the recorded learning curves end at step {self.pool.recorded_max}, the campaign trains "
                f"to {self.rungs.max_resource}: past it each configuration keeps its last loss, so wall "
                "time and GPU-hours hold, losses and times to a target do not"
            )
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "sources": [
                {
                    "study": r.name,
                    "storage": r.storage,
                    "scheduler": r.settings.scheduler,
                    "configurations": len(r.configs),
                    "jobs": len(r.jobs),
                    "recorded_span_s": r.span_s,
                }
                for r in self.recorded
            ],
            "schedulers": list(self.schedulers),
            "workers": list(self.workers),
            "trials": self.trials,
            "rungs": self.rungs.budgets,
            "reduction_factor": self.rungs.reduction_factor,
            "promotion_rule": self.promotion_rule,
            "ranks_per_trial": self.ranks_per_trial,
            "max_ranks_per_trial": self.max_ranks_per_trial,
            "repeats": self.request.repeats,
            "draw": self.request.draw,
            "trend": self.request.trend,
            "seed": self.request.seed,
            "costs": {
                "step_s": self.costs.step_s,
                "startup_s": self.costs.startup_s,
                "resume_s": self.costs.resume_s,
                "checkpoint_s": self.costs.checkpoint_s,
                "dispatch_s": self.costs.dispatch_s,
                "launch_s": self.costs.launch_s,
                "efficiency": {str(k): v for k, v in sorted(self.costs.efficiency.items())},
                "default_efficiency": self.costs.default_efficiency,
                "timing": self.request.timing,
            },
            "fit": self.fit.as_dict(),
            "notes": self.notes,
        }


def _positive(name: str, values: Sequence[int]) -> None:
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{name} needs positive integers", f"example: {name} 1,4,16,64")


def prepare(request: SimRequest) -> Prepared:
    if not request.sources:
        raise UsageError("no study to simulate from", "give one or more: --from STUDY --storage URL")
    _positive("--workers", request.workers)
    if request.repeats < 1:
        raise UsageError(f"--repeats {request.repeats} must be at least 1", "example: --repeats 20")
    if request.timing not in TIMINGS:
        raise UsageError(f"unknown --timing '{request.timing}'", f"available: {', '.join(TIMINGS)}")
    if request.draw not in DRAWS:
        raise UsageError(f"unknown --draw '{request.draw}'", f"available: {', '.join(DRAWS)}")
    schedulers = tuple(check_scheduler(s) for s in request.schedulers)
    recorded = [load_recorded(s.storage, s.study) for s in request.sources]
    first = recorded[0].settings
    if not schedulers:
        if first.scheduler not in SCHEDULERS:
            raise UsageError(
                f"study '{recorded[0].name}' ran scheduler '{first.scheduler}', which the simulator "
                "does not replay",
                f"choose one or more with --scheduler ({', '.join(SCHEDULERS)})",
            )
        schedulers = (first.scheduler,)
    rungs = Rungs(
        request.min_resource or first.min_resource,
        request.max_resource or first.max_resource,
        request.eta or first.reduction_factor,
        first.min_early_stopping_rate,
        spacing=first.rung_spacing,  # the promotion ladder (Optuna's pruners build their own)
    )
    ranks = request.ranks_per_trial or first.ranks_per_trial
    max_ranks = max(ranks, request.max_ranks_per_trial or first.max_ranks_per_trial)
    fit = fit_costs([j for r in recorded for j in r.jobs], first.ranks_per_trial)
    o = request.costs
    efficiency = dict(fit.efficiency)
    costs = Costs(
        step_s=o.step_s if o.step_s is not None else fit.step_s,
        startup_s=o.startup_s if o.startup_s is not None else fit.startup_s,
        resume_s=o.resume_s if o.resume_s is not None else fit.resume_s,
        checkpoint_s=o.checkpoint_s or 0.0,
        dispatch_s=o.dispatch_s if o.dispatch_s is not None else fit.dispatch_s,
        launch_s=o.launch_s or 0.0,
        efficiency={} if o.rank_efficiency is not None else efficiency,
        default_efficiency=o.rank_efficiency if o.rank_efficiency is not None else 1.0,
        jitter=fit.jitter if request.timing == "noise" else (),
        load=fit.load if request.timing == "load" else (),
        residuals=fit.residuals if request.timing == "load" else (),
    )
    pool = CurvePool([c for r in recorded for c in r.configs], decision_steps(rungs, schedulers))
    workers = tuple(sorted({1, *request.workers}))
    return Prepared(
        request=request,
        recorded=recorded,
        fit=fit,
        costs=costs,
        rungs=rungs,
        schedulers=schedulers,
        workers=workers,
        trials=request.trials or first.trials,
        ranks_per_trial=ranks,
        max_ranks_per_trial=max_ranks,
        poll_s=first.poll_interval,
        pool=pool,
        promotion_rule=first.promotion_rule,
    )


@dataclass
class SimResult:
    prepared: Prepared
    rows: list[dict[str, Any]]
    target: float | None
    replays: int
    simulated_trials: int
    elapsed_s: float

    @property
    def trials_per_s(self) -> float:
        return self.simulated_trials / self.elapsed_s if self.elapsed_s > 0 else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": self.prepared.describe(),
            "target": self.target,
            "rows": self.rows,
            "replays": self.replays,
            "simulated_trials": self.simulated_trials,
            "elapsed_s": self.elapsed_s,
            "simulated_trials_per_s": self.trials_per_s,
        }


def run(prepared: Prepared, advance: Callable[[int], None] | None = None) -> SimResult:
    """All replays; ``advance(n)`` is told after each batch of n replays (the progress bar)."""
    started = time.perf_counter()
    request = prepared.request
    results: dict[tuple[str, int], list[tuple[Replay, Replay | None]]] = {}
    simulated = replays = 0
    for repeat in range(request.repeats):
        rng = random.Random(f"{request.seed}:{repeat}")
        configs = prepared.pool.draw(prepared.trials, rng, request.draw, request.trend)
        for scheduler in prepared.schedulers:
            for workers in prepared.workers:
                seed = f"{request.seed}:{repeat}:{scheduler}:{workers}"
                with_reuse = simulate(
                    prepared.campaign(scheduler, workers), configs, prepared.costs, random.Random(seed)
                )
                without = None
                if with_reuse.campaign.promotion:
                    without = simulate(
                        prepared.campaign(scheduler, workers, reuse=False),
                        configs,
                        prepared.costs,
                        random.Random(seed),
                    )
                results.setdefault((scheduler, workers), []).append((with_reuse, without))
                simulated += prepared.trials * (2 if without else 1)
                replays += 2 if without else 1
            if advance:
                advance(len(prepared.workers))
    target = request.target if request.target is not None else default_target(results)
    rows = [
        summarise(scheduler, workers, pairs, results[(scheduler, 1)], target)
        for (scheduler, workers), pairs in results.items()
    ]
    return SimResult(prepared, rows, target, replays, simulated, time.perf_counter() - started)


def default_target(results: dict[tuple[str, int], list[tuple[Replay, Replay | None]]]) -> float | None:
    """The worst of the rows' median final bests: every row reaches it in at least half its replays."""
    medians = []
    for pairs in results.values():
        bests = [r.best for r, _ in pairs if r.best is not None]
        if bests:
            medians.append(statistics.median(bests))
    return max(medians) if medians else None


def _stats(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return None, None
    return statistics.fmean(clean), (statistics.stdev(clean) if len(clean) > 1 else 0.0)


def summarise(
    scheduler: str,
    workers: int,
    pairs: Sequence[tuple[Replay, Replay | None]],
    baseline: Sequence[tuple[Replay, Replay | None]],
    target: float | None,
) -> dict[str, Any]:
    row: dict[str, Any] = {"scheduler": scheduler, "workers": workers}
    replays = [p[0] for p in pairs]
    row["gpus"] = workers * replays[0].campaign.ranks_per_trial

    def put(key: str, values: Sequence[float | None]) -> None:
        row[key], row[f"{key}_std"] = _stats(values)

    put("wall_s", [r.wall_s for r in replays])
    put("gpu_hours", [r.gpu_hours for r in replays])
    put("busy_gpu_hours", [r.busy_gpu_hours for r in replays])
    put("utilisation", [r.utilisation for r in replays])
    put("best", [r.best for r in replays])
    put("first_top_s", [r.first_top_s for r in replays])
    put("speedup", [b[0].wall_s / r.wall_s for r, b in zip(replays, baseline, strict=True)])
    row["efficiency"] = row["speedup"] / workers if row["speedup"] is not None else None
    reached = [r.time_to(target) for r in replays] if target is not None else []
    put("time_to_target_s", reached)
    row["target_reached"] = sum(1 for t in reached if t is not None) / len(replays) if reached else None
    put("steps", [r.steps for r in replays])
    put("jobs", [len(r.jobs) for r in replays])
    put("top_results", [len(r.full_budget) for r in replays])
    put("resumed", [sum(1 for j in r.jobs if j.resumed) for r in replays])
    put("reused_steps", [r.reused_steps for r in replays])
    put("reuse_saved_s", [r.reused_s for r in replays])
    without = [p[1] for p in pairs]
    if all(w is not None for w in without):
        put("wall_noreuse_s", [w.wall_s for w in without if w is not None])
        put(
            "reuse_gain",
            [w.wall_s / r.wall_s for r, w in zip(replays, without, strict=True) if w is not None],
        )
        put(
            "speedup_noreuse",
            [b[1].wall_s / w.wall_s for w, b in zip(without, baseline, strict=True) if w and b[1]],
        )
    row["repeats"] = len(replays)
    return row


def with_overrides(prepared: Prepared, **changes: Any) -> Prepared:
    """A copy with other costs (the submit planner's launch time, say)."""
    return replace(prepared, costs=replace(prepared.costs, **changes))
