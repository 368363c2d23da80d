"""The sampler of a promotion-ASHA study sees configurations, not jobs.

An ASHA configuration runs as several jobs (one Optuna trial per rung). Handed the raw study, a
model-based sampler sees a configuration once per job: one at rung 4 weighs five times, its paused
jobs crowd the ranking of pruned trials, and the good region is over-counted in whatever order the
jobs happen to finish, which with several asynchronous workers goes badly (README, HPO
benchmarks: tpe+asha against tpe+asha-raw). ``RungSampler`` wraps the real sampler and shows it
a view of the study instead, after BOHB (Falkner et al., arXiv:1807.01774):

* results count once per configuration;
* the model rung b* is the highest rung with at least ``min_observations`` results; a
  configuration that reached b* is a COMPLETE trial with its value at b*, one that stopped below
  is a PRUNED trial with its value at the highest rung it reached (ranked below those at b*, as
  Optuna ranks pruned trials);
* every running job is a RUNNING trial with its parameters, as with Optuna's own constant liar: a
  pending evaluation, of a new configuration or a promotion, makes concurrent proposals look
  elsewhere (on MFHartmann6 with 4 workers this beat lying about new configurations only).

The view is a throw-away in-memory Optuna study built with the public API, so the wrapped sampler
runs unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna

from mlpfctl.hpo import optuna_api as api
from mlpfctl.hpo.asha import ATTR_CONFIG, ATTR_RUNG, rung_value

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

S = optuna.trial.TrialState


@dataclass
class Configuration:
    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    values: dict[int, float] = field(default_factory=dict)  # rung -> value there
    pending: bool = False  # one of its jobs is running


def configurations(trials: Sequence[FrozenTrial]) -> dict[int, Configuration]:
    """Results per configuration (rung -> value), and which configurations have a job running."""
    out: dict[int, Configuration] = {}
    for trial in trials:
        if trial.state == S.RUNNING:
            # A first job counts once its parameters are sampled (the worker suggests them at once).
            if trial.params:
                config = int(trial.user_attrs.get(ATTR_CONFIG, trial.number))
                entry = out.setdefault(config, Configuration(dict(trial.params), dict(trial.distributions)))
                entry.pending = True
            continue
        value = rung_value(trial) if trial.state.is_finished() else None
        if value is None or ATTR_CONFIG not in trial.user_attrs:
            continue
        config = int(trial.user_attrs[ATTR_CONFIG])
        entry = out.setdefault(config, Configuration(dict(trial.params), dict(trial.distributions)))
        entry.values[int(trial.user_attrs[ATTR_RUNG])] = value
    return out


def model_rung(configs: dict[int, Configuration], min_observations: int) -> int:
    """The highest rung with at least ``min_observations`` results (0 if none has)."""
    counts: dict[int, int] = {}
    for entry in configs.values():
        for rung in entry.values:
            counts[rung] = counts.get(rung, 0) + 1
    return max((rung for rung, n in counts.items() if n >= min_observations), default=0)


def view_trials(
    configs: dict[int, Configuration], budgets: Sequence[int], min_observations: int
) -> list[FrozenTrial]:
    """The trials of the view: one per configuration with results, one per configuration running."""
    rung = model_rung(configs, min_observations)
    out: list[FrozenTrial] = []
    for _, entry in sorted(configs.items()):
        if entry.pending:
            out.append(
                optuna.trial.create_trial(
                    state=S.RUNNING, params=entry.params, distributions=entry.distributions
                )
            )
        if rung in entry.values:
            out.append(
                optuna.trial.create_trial(
                    params=entry.params, distributions=entry.distributions, value=entry.values[rung]
                )
            )
        elif entry.values:
            top = max(entry.values)
            out.append(
                optuna.trial.create_trial(
                    state=S.PRUNED,
                    params=entry.params,
                    distributions=entry.distributions,
                    intermediate_values={budgets[top]: entry.values[top]},
                )
            )
    return out


class RungSampler(optuna.samplers.BaseSampler):
    """Delegates to ``base``, which samples from the one-trial-per-configuration view."""

    def __init__(
        self, base: optuna.samplers.BaseSampler, budgets: Sequence[int], min_observations: int
    ) -> None:
        self.base = base
        self.budgets = list(budgets)
        self.min_observations = min_observations
        self._cache: tuple[int, optuna.Study, FrozenTrial] | None = None

    def _view(self, study: optuna.Study, trial: FrozenTrial) -> tuple[optuna.Study, FrozenTrial]:
        # One view per trial being sampled: relative and independent sampling share it.
        ident = api.trial_id(trial)
        if self._cache is not None and self._cache[0] == ident:
            return self._cache[1], self._cache[2]
        others = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        view = optuna.create_study(storage=optuna.storages.InMemoryStorage(), directions=study.directions)
        view.add_trials(view_trials(configurations(others), self.budgets, self.min_observations))
        view.add_trial(optuna.trial.create_trial(state=S.RUNNING))
        current = view.get_trials(deepcopy=False)[-1]
        self._cache = (ident, view, current)
        return view, current

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        view, current = self._view(study, trial)
        return self.base.infer_relative_search_space(view, current)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        view, current = self._view(study, trial)
        return self.base.sample_relative(view, current, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        view, current = self._view(study, trial)
        return self.base.sample_independent(view, current, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
