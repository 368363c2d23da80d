"""Search algorithms by name, all Optuna samplers.

Two families, because they need different treatment under parallel workers:

* **planned** (grid, random, qmc): the configurations do not depend on results, so the driver draws
  them once, up front, from ``hpo.seed`` and stores them in the study as queued trials. Workers claim
  queued trials atomically, so no two workers evaluate the same point, and the study is the same
  whatever the number of workers (Optuna's own GridSampler can hand one point to two workers, and
  RandomSampler with one seed per worker repeats sequences; hpo-reference.md §1).
* **adaptive** (tpe, gp, cmaes, nsga2): sampled when a worker starts a trial, from everything
  finished so far; each worker seeds its sampler with ``seed + 1000 * worker_index``, and TPE uses
  the constant liar so that running trials repel new proposals. A duplicate proposal is caught by
  the worker (see ``worker._reject_duplicate``) and re-drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlpfctl.errors import ConfigError
from mlpfctl.hpo.space import SearchSpace, config_key

if TYPE_CHECKING:
    import optuna

PLANNED = ("grid", "random", "qmc")
ADAPTIVE = ("tpe", "gp", "cmaes", "nsga2")
NAMES = PLANNED + ADAPTIVE
WORKER_SEED_STRIDE = 1000


def _tpe(seed: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True, n_startup_trials=8)


def _gp(seed: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=8)


def _cmaes(seed: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    import optuna

    # Pruned/paused trials carry the learning-curve information of SHA/ASHA studies.
    return optuna.samplers.CmaEsSampler(
        seed=seed,
        consider_pruned_trials=True,
        warn_independent_sampling=False,
        independent_sampler=optuna.samplers.RandomSampler(seed=seed),
    )


def _nsga2(seed: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)


def _random(seed: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


_ADAPTIVE_FACTORIES: dict[str, Callable[[int, int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "gp": _gp,
    "cmaes": _cmaes,
    "nsga2": _nsga2,
}


def check_name(name: str, n_objectives: int) -> None:
    if name not in NAMES:
        raise ConfigError(f"unknown sampler '{name}'", f"available samplers: {', '.join(NAMES)}")
    if name == "cmaes" and n_objectives > 1:
        raise ConfigError("the cmaes sampler is single-objective", "use --sampler nsga2 (or tpe) for several")
    if name == "nsga2" and n_objectives == 1:
        raise ConfigError(
            "nsga2 is for multi-objective studies",
            "set hpo.directions=minimize,maximize or use --sampler cmaes",
        )


def make_sampler(
    name: str, *, seed: int, worker_index: int, n_objectives: int
) -> optuna.samplers.BaseSampler:
    """The sampler a worker uses to start trials (planned studies only fill conditional gaps)."""
    check_name(name, n_objectives)
    worker_seed = seed + WORKER_SEED_STRIDE * worker_index
    if name in PLANNED:
        return _random(worker_seed, n_objectives)
    return _ADAPTIVE_FACTORIES[name](worker_seed, n_objectives)


def plan_configs(space: SearchSpace, name: str, count: int, seed: int) -> list[dict[str, Any]]:
    """Draw ``count`` distinct configurations for a planned sampler (fewer if the space is smaller)."""
    if name == "grid":
        points = space.grid()
        return points[:count]
    import optuna

    sampler: optuna.samplers.BaseSampler
    if name == "qmc":
        sampler = optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    draft = optuna.create_study(sampler=sampler)
    seen: set[Any] = set()
    plans: list[dict[str, Any]] = []
    # Discrete spaces can run out: stop after a generous number of rejected duplicates.
    attempts = 0
    while len(plans) < count and attempts < 50 * count + 100:
        attempts += 1
        trial = draft.ask()
        params = space.suggest(trial)
        draft.tell(trial, 0.0)
        key = config_key(params)
        if key in seen:
            continue
        seen.add(key)
        plans.append(params)
    return plans
