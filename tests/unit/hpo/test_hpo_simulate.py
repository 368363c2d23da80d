"""The campaign simulator's event logic against hand-computed schedules and the real decision rules."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mlpfctl.errors import UsageError
from mlpfctl.hpo.schedulers import Rungs
from mlpfctl.hpo.simulate import Campaign, Costs, SimConfig, decision_steps, simulate

LADDER = Rungs(10, 90, 3)  # rungs 10, 30, 90
# Three configurations: slot 1 is the best at every rung, slot 2 the worst.
CONFIGS = [
    SimConfig({10: 5.0, 30: 4.0, 90: 3.0}),
    SimConfig({10: 4.0, 30: 3.0, 90: 2.0}),
    SimConfig({10: 6.0, 30: 5.0, 90: 4.0}),
]
ONE_S_PER_STEP = Costs(step_s=1.0)


def jobs(replay: Any) -> list[tuple[Any, ...]]:
    return [
        (j.number, j.config, j.rung, j.start_step, j.budget, j.claimed_s, j.ended_s, j.outcome)
        for j in replay.jobs
    ]


def test_asha_one_worker_hand_computed() -> None:
    replay = simulate(Campaign("asha", 3, 1, LADDER), CONFIGS, ONE_S_PER_STEP)
    # t=0..30: the three slots at rung 0 (10 s each). Only at n=3 is one of them (slot 1, the best)
    # in the top floor(3/3); its candidate is the second one queued (numbers 3, 4, 5 in pause order),
    # so it runs as trial 4, resuming at step 10: 20 steps. Rung 1 then holds one entry: no promotion.
    assert jobs(replay) == [
        (0, 0, 0, 0, 10, 0.0, 10.0, "paused"),
        (1, 1, 0, 0, 10, 10.0, 20.0, "paused"),
        (2, 2, 0, 0, 10, 20.0, 30.0, "paused"),
        (4, 1, 1, 10, 30, 30.0, 50.0, "paused"),
    ]
    assert replay.wall_s == 50.0
    assert replay.reused_steps == 10 and replay.reused_s == 10.0
    assert replay.steps == 50
    assert replay.best is None  # nobody reached the top rung
    assert replay.utilisation == 1.0


def test_asha_two_workers_and_the_reuse_counterfactual() -> None:
    replay = simulate(Campaign("asha", 3, 2, LADDER), CONFIGS, ONE_S_PER_STEP)
    assert jobs(replay) == [
        (0, 0, 0, 0, 10, 0.0, 10.0, "paused"),
        (1, 1, 0, 0, 10, 0.0, 10.0, "paused"),
        (2, 2, 0, 0, 10, 10.0, 20.0, "paused"),
        (4, 1, 1, 10, 30, 20.0, 40.0, "paused"),
    ]
    assert replay.wall_s == 40.0
    # Busy 10+10+10+20 worker-seconds out of 2 x 40.
    assert replay.utilisation == pytest.approx(50 / 80)
    retrain = simulate(Campaign("asha", 3, 2, LADDER, reuse=False), CONFIGS, ONE_S_PER_STEP)
    assert [(j.start_step, j.ended_s) for j in retrain.jobs][-1] == (0, 50.0)
    assert retrain.wall_s == 50.0 and retrain.reused_steps == 0


def test_costs_enter_where_they_belong() -> None:
    costs = Costs(step_s=1.0, startup_s=2.0, resume_s=3.0, checkpoint_s=0.5, dispatch_s=0.25, launch_s=7.0)
    replay = simulate(Campaign("asha", 3, 1, LADDER), CONFIGS, costs)
    # Each rung-0 job: dispatch 0.25, then 2 + 10 + 0.5 (it pauses); the promotion adds the resume.
    ends = [j.ended_s for j in replay.jobs]
    assert ends == pytest.approx([12.75, 25.5, 38.25, 38.5 + 2 + 3 + 20 + 0.5])
    assert replay.wall_s == pytest.approx(7.0 + ends[-1])
    assert replay.busy_s == pytest.approx(3 * 12.5 + 25.5)


def test_top_rung_results_and_time_to_target() -> None:
    ladder = Rungs(10, 30, 3)  # rungs 10, 30: a promotion reaches the top
    configs = [SimConfig({10: v, 30: v - 1}) for v in (5.0, 4.0, 6.0)]
    replay = simulate(Campaign("asha", 3, 1, ladder), configs, ONE_S_PER_STEP)
    assert replay.full_budget == [(50.0, 3.0)]
    assert replay.best == 3.0 and replay.first_top_s == 50.0
    assert replay.time_to(3.5) == 50.0 and replay.time_to(2.0) is None
    assert replay.count("top") == 1


def test_stopping_schedulers_hand_computed() -> None:
    none = simulate(Campaign("none", 3, 2, LADDER), CONFIGS, ONE_S_PER_STEP)
    assert [(j.number, j.last_step, j.ended_s, j.outcome) for j in none.jobs] == [
        (0, 90, 90.0, "complete"),
        (1, 90, 90.0, "complete"),
        (2, 90, 180.0, "complete"),
    ]
    # SHA: trial 2 starts at t=90 and is the worst of three at step 10: Optuna's rule keeps only
    # the best of n < eta... here n = 3 and floor(3/3) = 1, so it is pruned at t = 100.
    sha = simulate(Campaign("sha", 3, 2, LADDER), CONFIGS, ONE_S_PER_STEP)
    assert [(j.number, j.last_step, j.ended_s, j.outcome) for j in sha.jobs] == [
        (0, 90, 90.0, "complete"),
        (1, 90, 90.0, "complete"),
        (2, 10, 100.0, "pruned"),
    ]
    assert sha.wall_s == 100.0 and sha.best == 2.0


def test_divergence_ends_the_job_where_it_diverges() -> None:
    configs = [SimConfig({10: 5.0, 30: 4.0, 90: 3.0}, diverges_at=25), *CONFIGS[1:]]
    asha = simulate(Campaign("asha", 3, 1, LADDER), configs, ONE_S_PER_STEP)
    none = simulate(Campaign("none", 1, 1, LADDER), configs, ONE_S_PER_STEP)
    assert asha.jobs[0].outcome == "paused"  # 25 is past rung 0
    assert (none.jobs[0].last_step, none.jobs[0].ended_s, none.jobs[0].outcome) == (25, 25.0, "diverged")
    early = [SimConfig({}, diverges_at=3), *CONFIGS[1:]]
    first = simulate(Campaign("asha", 3, 1, LADDER), early, ONE_S_PER_STEP).jobs[0]
    assert (first.last_step, first.ended_s, first.outcome, first.value) == (3, 3.0, "diverged", None)


def test_rasda_grows_a_promoted_job_onto_idle_workers() -> None:
    ladder = Rungs(10, 40, 2)  # rungs 10, 20, 40
    configs = [SimConfig({10: 2.0, 20: 1.5, 40: 1.0}), SimConfig({10: 1.0, 20: 0.5, 40: 0.2})]
    costs = Costs(step_s=1.0, default_efficiency=0.5)
    replay = simulate(Campaign("rasda", 2, 4, ladder, max_ranks_per_trial=4), configs, costs)
    promoted = replay.jobs[2]
    # At t=10 slot 1 (the better) is promoted with 2 ranks: its own worker and the one freed by
    # slot 0 a moment earlier. 10 steps at half efficiency: 20 s.
    assert (promoted.config, promoted.rung, promoted.ranks, sorted(promoted.slots)) == (1, 1, 2, [0, 1])
    assert promoted.ended_s == 30.0
    asha = simulate(Campaign("asha", 2, 4, ladder), configs, costs)
    assert asha.jobs[2].ranks == 1 and asha.jobs[2].ended_s == 20.0
    assert replay.device_s == pytest.approx(10 + 10 + 2 * 20)


def test_unknown_scheduler_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown scheduler 'bohb'") as info:
        Campaign("bohb", 3, 1, LADDER)
    assert info.value.hint is not None and "asha" in info.value.hint


def test_decision_steps_cover_every_scheduler() -> None:
    assert decision_steps(LADDER, ["none"]) == [90]
    assert decision_steps(LADDER, ["asha"]) == [10, 30, 90]
    assert decision_steps(Rungs(10, 100, 3), ["sha", "none"]) == [10, 30, 90, 100]


def random_configs(n: int, ladder: list[int], seed: int) -> list[SimConfig]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        value = rng.uniform(1.0, 2.0)
        curve = {}
        for step in ladder:
            value -= rng.uniform(0.0, 0.3)
            curve[step] = value
        out.append(SimConfig(curve))
    return out


@pytest.mark.parametrize("scheduler", ["sha", "hyperband"])
@pytest.mark.parametrize("workers", [1, 3])
def test_stopping_decisions_match_optuna_pruners(scheduler: str, workers: int) -> None:
    """Every rung check of a simulated campaign, replayed in order on a real Optuna study."""
    import optuna

    from mlpfctl.hpo.schedulers import make_pruner

    rungs = Rungs(10, 270, 3)
    configs = random_configs(40, decision_steps(rungs, [scheduler]), seed=workers)
    campaign = Campaign(scheduler, 40, workers, rungs, study_name="conformance")
    trace: list[tuple[Any, ...]] = []
    simulate(campaign, configs, Costs(step_s=1.0, jitter=(0.6, 1.0, 1.7)), seed=5, trace=trace)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="conformance", pruner=make_pruner(scheduler, rungs))
    trials: dict[int, optuna.Trial] = {}
    checks = 0
    for event in trace:
        if event[0] == "claim":
            trials[event[2]] = study.ask()
            assert trials[event[2]].number == event[2]
        elif event[0] == "check":
            _, _, number, step, value, kept = event
            trials[number].report(value, step)
            assert trials[number].should_prune() is (not kept), event
            checks += 1
        elif event[0] == "end":
            _, _, number, _, _, value, outcome = event
            if outcome == "complete":
                study.tell(trials[number], value)
            else:
                study.tell(trials[number], state=optuna.trial.TrialState.PRUNED)
    assert checks > 40 and any(e[0] == "check" and not e[5] for e in trace)


@pytest.mark.parametrize("rule", ["quota", "eager"])
@pytest.mark.parametrize("workers", [1, 2, 5])
def test_asha_claims_match_the_workers_claim_order(workers: int, rule: str) -> None:
    """At every claim, the real ``claim_order`` on the same study state picks the simulated job."""
    rungs = Rungs(10, 270, 3)
    configs = random_configs(30, rungs.budgets, seed=workers)
    trace: list[tuple[Any, ...]] = []
    campaign = Campaign("asha", 30, workers, rungs, promotion_rule=rule)
    simulate(campaign, configs, Costs(step_s=1.0, jitter=(0.7, 1.0, 1.9)), 3, trace)
    promotions = 0
    for index, event in enumerate(trace):
        if event[0] != "claim":
            continue
        expected = _real_first_claim(trace[:index], 30, rungs, rule)
        assert expected == event[2], f"claim {index}: real order picks {expected}, simulation {event[2]}"
        promotions += event[4] > 0
    assert promotions >= 5


def _real_first_claim(history: list[tuple[Any, ...]], trials: int, rungs: Rungs, rule: str) -> int:
    """Rebuild the study the workers would see after ``history`` and ask ``asha.claim_order``."""
    import optuna

    from mlpfctl.hpo import asha

    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
    budgets = rungs.budgets
    frozen: dict[int, optuna.trial.FrozenTrial] = {}

    def add(number: int, state: Any, attrs: dict[str, Any], values: dict[int, float] | None = None) -> None:
        trial = optuna.trial.create_trial(
            state=state,
            params={"x": 0.5},
            distributions={"x": distribution},
            user_attrs=attrs,
            intermediate_values=values or {},
            value=None if state != optuna.trial.TrialState.COMPLETE else 0.0,
        )
        trial.number = number
        trial._trial_id = number
        frozen[number] = trial

    for slot in range(trials):
        add(slot, optuna.trial.TrialState.WAITING, {asha.ATTR_KIND: "new", asha.ATTR_SLOT: slot})
    # promotions are WAITING tickets in the companion study; the simulation numbers the promoted
    # job as the ticket's id
    tickets: dict[int, optuna.trial.FrozenTrial] = {}
    claimed: dict[int, tuple[int, int]] = {}
    next_number = trials
    for event in history:
        if event[0] == "claim":
            _, _, number, config, rung = event
            claimed[number] = (config, rung)
            tickets.pop(number, None)  # a claimed ticket is no longer WAITING
            frozen[number] = optuna.trial.create_trial(
                state=optuna.trial.TrialState.RUNNING, params={"x": 0.5}, distributions={"x": distribution}
            )
            frozen[number].number = number
        elif event[0] == "end":
            _, _, number, config, rung, value, outcome = event
            attrs = {
                asha.ATTR_KIND: "new" if rung == 0 else "promotion",
                asha.ATTR_CONFIG: config,
                asha.ATTR_RUNG: rung,
                asha.ATTR_BUDGET: budgets[rung],
                asha.ATTR_OUTCOME: outcome,
            }
            state = optuna.trial.TrialState.COMPLETE if outcome == "top" else optuna.trial.TrialState.PRUNED
            add(number, state, attrs, {budgets[rung]: value})
            if outcome == "paused":
                ticket = optuna.trial.create_trial(
                    state=optuna.trial.TrialState.WAITING,
                    user_attrs={asha.ATTR_PARENT: number, asha.ATTR_RUNG: rung + 1},
                )
                ticket.number = ticket._trial_id = next_number
                tickets[next_number] = ticket
                next_number += 1
    order = asha.claim_order(
        list(frozen.values()),
        list(tickets.values()),
        promotion=True,
        eta=rungs.reduction_factor,
        top_rung=len(budgets) - 1,
        maximize=False,
        rule=rule,
    )
    kind, number = order[0]
    assert kind == ("ticket" if number in tickets else "job")
    return number
