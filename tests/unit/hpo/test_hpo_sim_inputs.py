"""What the simulator learns from a recorded study: job costs, learning curves and how it draws them."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from mlpfctl.errors import UsageError
from mlpfctl.hpo.sim_costs import concurrency, dispatch_gap, fit_costs
from mlpfctl.hpo.sim_curves import CurvePool
from mlpfctl.hpo.sim_source import RecordedConfig, RecordedJob, from_trials


def job(start: int, steps: int, seconds: float, at: float = 0.0, ranks: int = 1) -> RecordedJob:
    return RecordedJob(start, steps, ranks, seconds, at, at + seconds)


def test_cost_fit_recovers_startup_resume_and_step_time() -> None:
    # 2 s start-up, 3 s more to resume, 0.5 s per step, exactly.
    jobs = [job(0, 20, 12.0), job(0, 20, 12.0), job(20, 40, 25.0), job(60, 120, 65.0), job(0, 180, 92.0)]
    fit = fit_costs(jobs, base_ranks=1)
    assert fit.startup_s == pytest.approx(2.0)
    assert fit.resume_s == pytest.approx(3.0)
    assert fit.step_s == pytest.approx(0.5)
    assert fit.jitter == pytest.approx((1.0,) * 5)
    assert fit.notes == ()


def test_cost_fit_measures_the_efficiency_of_extra_ranks() -> None:
    jobs = [job(0, 20, 12.0), job(0, 60, 32.0), job(20, 40, 2.0 + 3.0 + 40 * 0.5 / 0.8, ranks=4)]
    fit = fit_costs([*jobs, job(0, 100, 52.0), job(40, 60, 35.0)], base_ranks=1)
    assert fit.efficiency == {4: pytest.approx(0.8)}


def test_cost_fit_with_one_job_length_folds_startup_into_steps() -> None:
    fit = fit_costs([job(0, 100, 50.0), job(0, 100, 70.0)], base_ranks=1)
    assert fit.startup_s == 0.0 and fit.step_s == pytest.approx(0.6)
    assert fit.notes and "same number of steps" in fit.notes[0]


def test_cost_fit_divides_out_a_changing_machine_load() -> None:
    # 0.5 s/step + 2 s start-up; the last third of the campaign ran twice as slow (others computing).
    jobs = []
    at = 0.0
    for i in range(30):
        steps = (20, 40, 120)[i % 3]
        seconds = (2.0 + 0.5 * steps) * (2.0 if i >= 20 else 1.0)
        jobs.append(job(0, steps, seconds, at))
        at += seconds
    fit = fit_costs(jobs, base_ranks=1)
    assert fit.step_s == pytest.approx(0.5, rel=0.02) and fit.startup_s == pytest.approx(2.0, abs=0.2)
    factors = [f for _, f in fit.load]
    assert factors[:17] == pytest.approx([1.0] * 17, abs=0.02)
    assert factors[-7:] == pytest.approx([2.0] * 7, abs=0.05)
    assert max(fit.residuals) - min(fit.residuals) < 0.1  # the load explains the spread
    assert max(fit.jitter) / min(fit.jitter) > 1.8  # without it, it is scatter


def test_load_timing_follows_the_recorded_profile() -> None:
    from mlpfctl.hpo.simulate import Costs

    costs = Costs(step_s=1.0, load=((0.0, 1.0), (100.0, 3.0)), residuals=(1.0,))
    rng = random.Random(0)
    assert [costs.ratio(t, rng) for t in (0.0, 99.0, 100.0, 1e6)] == [1.0, 1.0, 3.0, 3.0]
    assert Costs(step_s=1.0).ratio(5.0, rng) == 1.0


def test_workers_and_dispatch_gaps_from_the_timeline() -> None:
    # Two workers: A runs 0-10 then 10.5-20; B runs 0-8 then 8.25-30.
    jobs = [job(0, 1, 10.0, 0.0), job(0, 1, 8.0, 0.0), job(0, 1, 9.5, 10.5), job(0, 1, 21.75, 8.25)]
    assert concurrency(jobs) == 2
    assert dispatch_gap(jobs) == pytest.approx((0.25 + 0.5) / 2)


def config(curve: dict[int, float], position: float = 0.5, diverged: int | None = None) -> RecordedConfig:
    return RecordedConfig("s#0", curve, diverged, position)


def test_curves_are_interpolated_in_log_step_and_continued_by_the_fitted_chain() -> None:
    full = [config({10: 2.0 + i, 20: 1.5 + i, 40: 1.0 + i, 90: 0.5 + i}) for i in range(6)]
    partial = config({10: 9.0, 20: 8.0})
    pool = CurvePool([*full, partial], [10, 30, 90])
    # Between steps 20 and 40, step 30 sits at log(30/20)/log(2) of the way.
    w = 0.5849625007211562
    assert pool.known[0][1] == pytest.approx((1 - w) * 1.5 + w * 1.0)
    assert pool.known[-1] == [9.0, None, None]
    # The full curves all fall alike: slope 1, no scatter; the partial one continues the same way.
    assert [link.b for link in pool.links] == pytest.approx([1.0, 1.0])
    assert pool.links[0].a == pytest.approx(-0.5 - 0.5 * w)
    assert pool.links[1].a == pytest.approx(-1.0 + 0.5 * w)
    drawn = pool._bootstrap(6, random.Random(0))
    assert (drawn.at(10), drawn.at(30), drawn.at(90)) == pytest.approx((9.0, 8.5 - 0.5 * w, 7.5))


def test_draws_keep_the_samplers_trend() -> None:
    early = [config({10: 5.0 + i / 10, 30: 4.0}, position=0.05 + i / 100) for i in range(5)]
    late = [config({10: 1.0 + i / 10, 30: 0.5}, position=0.95 - i / 100) for i in range(5)]
    pool = CurvePool(early + late, [10, 30])
    drawn = pool.draw(20, random.Random(1), "bootstrap", trend=True)
    assert all(c.at(10) >= 5.0 for c in drawn[:2]) and all(c.at(10) < 2.0 for c in drawn[-2:])
    mixed = pool.draw(400, random.Random(1), "bootstrap", trend=False)
    assert 0.3 < sum(c.at(10) < 2.0 for c in mixed[:200]) / 200 < 0.7
    model = pool.draw(50, random.Random(2), "model")
    assert len({c.at(10) for c in model}) == 50  # unseen configurations, not copies


def test_curve_pool_refuses_what_the_recordings_cannot_support() -> None:
    with pytest.raises(UsageError, match="start at step 20") as early:
        CurvePool([config({20: 1.0, 40: 0.5})], [10, 40])
    assert "--min-resource 20" in (early.value.hint or "")


def test_curves_past_the_recordings_keep_their_last_loss() -> None:
    pool = CurvePool([config({10: 1.0, 30: 0.5}), config({10: 2.0, 30: 1.5})], [10, 30, 90, 270])
    assert pool.extrapolated and pool.recorded_max == 30
    drawn = pool.draw(4, random.Random(0))
    assert all(c.at(90) == c.at(270) == c.at(30) for c in drawn)


def frozen(
    number: int, state: str, attrs: dict[str, Any], values: dict[int, float], t0: float, t1: float
) -> Any:
    import optuna

    base = dt.datetime(2026, 1, 1)
    trial = optuna.trial.create_trial(
        state=getattr(optuna.trial.TrialState, state),
        params={},
        distributions={},
        user_attrs=attrs,
        intermediate_values=values,
        value=list(values.values())[-1] if state == "COMPLETE" else None,
    )
    trial.number = number
    trial.datetime_start = base + dt.timedelta(seconds=t0)
    trial.datetime_complete = base + dt.timedelta(seconds=t1)
    return trial


def test_recorded_asha_study_gives_curves_jobs_and_positions() -> None:
    from mlpfctl.hpo.settings import StudySettings

    settings = StudySettings.from_dict(
        {
            "space": {}, "sampler": "tpe", "scheduler": "asha", "trials": 2, "ranks_per_trial": 1,
            "max_ranks_per_trial": 1, "min_resource": 10, "max_resource": 30, "reduction_factor": 3,
            "min_early_stopping_rate": 0, "seed": 0, "directions": ["maximize"], "metrics": ["m"],
            "objective": None, "on_divergence": "prune", "heartbeat_interval": 1.0, "grace_period": 2.0,
            "max_retry": 0, "poll_interval": 0.5, "timeout": None, "workdir": "/tmp",
        }
    )  # fmt: skip
    paused = {"mlpfctl.config": 0, "mlpfctl.rung": 0, "mlpfctl.start": 0, "mlpfctl.budget": 10}
    promoted = {
        **paused,
        "mlpfctl.rung": 1,
        "mlpfctl.start": 10,
        "mlpfctl.budget": 30,
        "mlpfctl.outcome": "top",
    }
    trials = [
        frozen(0, "PRUNED", {**paused, "mlpfctl.outcome": "paused"}, {10: 2.0}, 0.0, 6.0),
        frozen(1, "PRUNED", {**paused, "mlpfctl.config": 1, "mlpfctl.outcome": "diverged"}, {}, 0.0, 3.0),
        frozen(2, "COMPLETE", {**promoted, "mlpfctl.kind": "promotion"}, {10: 2.0, 30: 3.0}, 6.5, 20.0),
    ]
    recorded = from_trials("s", "sqlite:///x", settings, trials)
    assert [c.curve for c in recorded.configs] == [{10: -2.0, 30: -3.0}, {}]  # maximised: sign flipped
    assert recorded.configs[1].diverged_at == 1
    assert [c.position for c in recorded.configs] == [0.25, 0.75]
    assert [(j.start_step, j.steps, j.seconds, j.started_s) for j in recorded.jobs] == [
        (0, 10, 6.0, 0.0),
        (10, 20, 13.5, 6.5),
    ]
    assert recorded.span_s == 20.0


def test_time_limit_warnings_of_a_campaign_plan() -> None:
    from mlpfctl.hpo.campaign_plan import CampaignPlan, time_limit_warnings

    def plan(limit: int | None, top_job: float = 600.0, first_top: float | None = 1800.0) -> CampaignPlan:
        return CampaignPlan(
            "asha", 64, 8, 8, [100, 300, 900], 7200.0, 300.0, 16.0, first_top, top_job, limit, 20, ["s"]
        )

    assert time_limit_warnings(plan(None)) == []
    assert time_limit_warnings(plan(8 * 3600)) == []
    too_short = time_limit_warnings(plan(300))
    assert (
        "one top-rung job (900 steps) takes about 10.0 min, longer than the time limit 5.0 min"
        in too_short[0]
    )
    first = time_limit_warnings(plan(1200))
    assert "reaches the top rung (900 steps) after about 30.0 min" in first[0]
    assert "about 6 allocations of 20.0 min" in first[1]
    assert time_limit_warnings(plan(3600, first_top=None)) == [
        "in the simulated campaigns no configuration reaches the top rung (900 steps): give more --trials "
        "or a smaller --eta",
        "the campaign needs about 2.00 h: about 2 allocations of 60.0 min (the job requeues itself and "
        "resumes the study)",
    ]
