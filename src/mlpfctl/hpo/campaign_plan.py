"""The plan of one HPO job before it is submitted: expected wall time and GPU-hours, time-limit checks.

``mlpfctl submit ... -- hpo`` with ``--plan-from STUDY`` replays the requested campaign (its
scheduler, configurations, rungs and worker count) with the campaign simulator, fed by the job
times and learning curves of that earlier study, and warns when the job's time limit is too short
for a configuration to reach the top rung.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mlpfctl.config.schema import HpoSection
from mlpfctl.hpo.sim_plan import Source


@dataclass
class CampaignPlan:
    scheduler: str
    trials: int
    workers: int
    gpus: int  # devices the allocation holds (GPU-hours are charged on all of them)
    rungs: list[int]
    wall_s: float
    wall_s_std: float
    gpu_hours: float
    first_top_s: float | None  # mean time until the first full-budget result
    top_job_s: float  # one job of the top rung (what must fit between two checkpoints of a requeue)
    time_limit_s: int | None
    repeats: int
    sources: list[str]
    promoted_top: bool = False  # a top-rung job resumes the rung below (promotion schedulers)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        from mlpfctl.hpo.sim_report import duration, duration_pm

        top = f"; first top-rung result after {duration(self.first_top_s)}" if self.first_top_s else ""
        return [
            f"campaign plan ({', '.join(self.sources)}; {self.repeats} simulated replays): {self.scheduler}, "
            f"{self.trials} configurations, rungs {self.rungs}, on {self.workers} worker(s) / {self.gpus} "
            f"device(s): wall time {duration_pm(self.wall_s, self.wall_s_std, ' ± ')}, "
            f"{self.gpu_hours:.3g} GPU-hours{top}"
        ]


def plan_campaign(
    hpo: HpoSection,
    workers: int,
    gpus: int,
    time_limit_s: int | None,
    sources: Sequence[Source],
    repeats: int = 20,
) -> CampaignPlan:
    """Simulate the job's campaign ``repeats`` times on ``workers`` workers."""
    from mlpfctl.hpo import sim_plan

    request = sim_plan.SimRequest(
        sources=tuple(sources),
        schedulers=(hpo.scheduler,),
        workers=(workers,),
        trials=hpo.trials,
        min_resource=hpo.min_resource,
        max_resource=hpo.max_resource,
        eta=hpo.reduction_factor,
        ranks_per_trial=hpo.ranks_per_trial,
        max_ranks_per_trial=hpo.max_ranks_per_trial,
        repeats=repeats,
    )
    prepared = sim_plan.prepare(request)
    result = sim_plan.run(prepared)
    row = next(r for r in result.rows if r["workers"] == workers)
    costs, rungs = prepared.costs, prepared.rungs
    budgets = rungs.budgets
    promoted_from = (
        budgets[-2] if prepared.campaign(hpo.scheduler, workers).promotion and len(budgets) > 1 else 0
    )
    top_ranks = prepared.ranks_per_trial
    top_job = costs.startup_s + (costs.resume_s if promoted_from else 0.0)
    top_job += (budgets[-1] - promoted_from) * costs.step_time(top_ranks, prepared.ranks_per_trial)
    wall = float(row["wall_s"])
    devices = gpus or workers * prepared.ranks_per_trial
    plan = CampaignPlan(
        scheduler=hpo.scheduler,
        trials=prepared.trials,
        workers=workers,
        gpus=devices,
        rungs=budgets if hpo.scheduler != "none" else budgets[-1:],
        wall_s=wall,
        wall_s_std=float(row.get("wall_s_std") or 0.0),
        gpu_hours=devices * wall / 3600,
        first_top_s=row.get("first_top_s"),
        top_job_s=top_job,
        time_limit_s=time_limit_s,
        repeats=repeats,
        sources=[s.study for s in sources],
        promoted_top=bool(promoted_from),
    )
    plan.warnings = prepared.notes + time_limit_warnings(plan)
    return plan


def time_limit_warnings(plan: CampaignPlan) -> list[str]:
    from mlpfctl.hpo.sim_report import duration

    out: list[str] = []
    if plan.first_top_s is None:
        out.append(
            f"in the simulated campaigns no configuration reaches the top rung ({plan.rungs[-1]} steps): "
            "give more --trials or a smaller --eta"
        )
    limit = plan.time_limit_s
    if limit is None:
        return out
    shown = duration(limit)
    if plan.top_job_s > limit:
        start = (
            f"steps {plan.rungs[-2]} to {plan.rungs[-1]}" if plan.promoted_top else f"{plan.rungs[-1]} steps"
        )
        out.append(
            f"one top-rung job ({start}) takes about {duration(plan.top_job_s)}, longer than "
            f"the time limit {shown}: it can finish only across requeues, from its checkpoints; "
            "raise --time or lower hpo.max_resource"
        )
    elif plan.first_top_s is not None and plan.first_top_s > limit:
        out.append(
            f"the first configuration reaches the top rung ({plan.rungs[-1]} steps) after about "
            f"{duration(plan.first_top_s)}, beyond the time limit {shown}: this allocation ends before "
            "any full-budget result; raise --time or lower hpo.max_resource"
        )
    if plan.wall_s > limit:
        out.append(
            f"the campaign needs about {duration(plan.wall_s)}: about {math.ceil(plan.wall_s / limit)} "
            f"allocations of {shown} (the job requeues itself and resumes the study)"
        )
    return out
