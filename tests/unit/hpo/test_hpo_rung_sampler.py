"""What the sampler of an ASHA study sees: one trial per configuration (mlpfctl.hpo.rung_sampler)."""

from __future__ import annotations

from typing import Any

import optuna

from mlpfctl.hpo.asha import ATTR_BUDGET, ATTR_CONFIG, ATTR_KIND, ATTR_OUTCOME, ATTR_RUNG
from mlpfctl.hpo.rung_sampler import RungSampler, configurations, model_rung, view_trials

S = optuna.trial.TrialState
BUDGETS = [1, 3, 9]
DIST = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}


def job(
    config: int, rung: int, value: float | None, x: float, state: S = S.PRUNED
) -> optuna.trial.FrozenTrial:
    attrs: dict[str, Any] = {ATTR_KIND: "new" if rung == 0 else "promotion", ATTR_RUNG: rung}
    if state != S.RUNNING:
        attrs.update({ATTR_CONFIG: config, ATTR_BUDGET: BUDGETS[rung], ATTR_OUTCOME: "paused"})
        if rung == len(BUDGETS) - 1:
            attrs[ATTR_OUTCOME], state = "top", S.COMPLETE
    elif rung > 0:
        attrs[ATTR_CONFIG] = config
    return optuna.trial.create_trial(
        state=state,
        params={"x": x},
        distributions=DIST,
        user_attrs=attrs,
        value=value if state == S.COMPLETE else None,
        intermediate_values={BUDGETS[rung]: value} if value is not None else {},
    )


def test_one_observation_per_configuration_at_the_highest_well_filled_rung() -> None:
    trials = [job(c, 0, 1.0 - c / 10, c / 10) for c in range(5)]  # five configurations at rung 0
    trials += [job(3, 1, 0.5, 0.3), job(4, 1, 0.4, 0.4)]  # two of them promoted to rung 1
    configs = configurations(trials)
    assert sorted(configs) == [0, 1, 2, 3, 4] and configs[4].values == {0: 0.6, 1: 0.4}
    assert model_rung(configs, min_observations=3) == 0  # rung 1 has only 2 results
    assert model_rung(configs, min_observations=2) == 1
    view = view_trials(configs, BUDGETS, min_observations=2)
    assert len(view) == 5  # one trial per configuration, not one per job
    complete = {t.params["x"]: t.value for t in view if t.state == S.COMPLETE}
    assert complete == {0.3: 0.5, 0.4: 0.4}  # values at the model rung
    pruned = [t for t in view if t.state == S.PRUNED]
    assert all(t.intermediate_values.keys() == {BUDGETS[0]} for t in pruned)


def test_every_running_job_is_a_constant_liar_lie_but_results_count_once() -> None:
    trials = [job(c, 0, 0.5, c / 10) for c in range(3)]
    trials.append(job(1, 1, None, 0.1, state=S.RUNNING))  # configuration 1 being promoted
    trials.append(job(7, 0, None, 0.7, state=S.RUNNING))  # a new configuration running
    view = view_trials(configurations(trials), BUDGETS, min_observations=3)
    assert sorted(t.params["x"] for t in view if t.state == S.RUNNING) == [0.1, 0.7]
    assert sorted(t.params["x"] for t in view if t.state == S.COMPLETE) == [0.0, 0.1, 0.2]


class Recorder(optuna.samplers.RandomSampler):
    """Records the trials the wrapped sampler is shown."""

    seen: list[optuna.trial.FrozenTrial]

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        self.seen = study.get_trials(deepcopy=False)
        return super().sample_independent(study, trial, name, dist)


def test_the_wrapped_sampler_is_shown_the_view_and_the_study_is_untouched() -> None:
    study = optuna.create_study()
    for c in range(6):
        study.add_trial(job(c, 0, c / 10, c / 10))
    study.add_trial(job(5, 1, 0.2, 0.5))  # configuration 5 promoted: a second job, same parameters
    study.add_trial(job(9, 0, None, 0.9, state=S.RUNNING))
    base = Recorder(seed=0)
    study.sampler = RungSampler(base, BUDGETS, min_observations=8)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    # 6 configurations (not 7 jobs), the running new configuration, and the trial being sampled.
    assert [t.state for t in base.seen] == [S.COMPLETE] * 6 + [S.RUNNING, S.RUNNING]
    assert [t.value for t in base.seen[:6]] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert base.seen[6].params == {"x": 0.9}
    assert len(study.trials) == 9  # the view lives in its own in-memory study
