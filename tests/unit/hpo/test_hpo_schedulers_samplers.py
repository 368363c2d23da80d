"""Rung budgets, pruner construction, sampler registry and planned configurations."""

from __future__ import annotations

import optuna
import pytest

from mlpfctl.errors import ConfigError
from mlpfctl.hpo import samplers, schedulers
from mlpfctl.hpo.schedulers import Rungs
from mlpfctl.hpo.settings import StudySettings
from mlpfctl.hpo.space import config_key, load_space


def test_rung_budgets_use_exact_integer_arithmetic() -> None:
    # math.log(243, 3) = 4.999...: Optuna's Hyperband bracket count bug; ours has all 6 rungs.
    assert Rungs(1, 243, 3).budgets == [1, 3, 9, 27, 81, 243]
    assert Rungs(100, 900, 3).budgets == [100, 300, 900]
    assert Rungs(100, 1000, 3).budgets == [100, 300, 900, 1000]  # R is always the top rung
    assert Rungs(100, 900, 3, min_early_stopping_rate=1).budgets == [300, 900]
    assert Rungs(100, 900, 3).top == 2


@pytest.mark.parametrize(
    ("rungs", "expected"),
    [
        ((1, 90, 3), [1, 3, 9, 29, 90]),  # eta spacing: 1, 3, 9, 27, 81, 90
        ((10, 1000, 3), [10, 30, 100, 320, 1000]),  # eta spacing: 10, 30, 90, 270, 810, 1000
        ((10, 200, 3), [10, 40, 200]),
        ((1, 243, 3), [1, 3, 9, 27, 81, 243]),  # R a power of eta: both spacings agree
        ((100, 900, 3), [100, 300, 900]),
        ((10, 10, 3), [10]),
    ],
)
def test_geometric_rungs_span_bottom_to_top_in_equal_log_steps(
    rungs: tuple[int, int, int], expected: list[int]
) -> None:
    geometric = Rungs(*rungs, spacing="geometric").budgets
    assert geometric == expected
    eta_ladder = Rungs(*rungs).budgets
    assert geometric[0] == eta_ladder[0] and geometric[-1] == eta_ladder[-1]
    assert len(eta_ladder) - 1 <= len(geometric) <= len(eta_ladder)
    assert all(b % rungs[0] == 0 for b in geometric)


def test_rung_spacing_applies_to_promotion_schedulers_only() -> None:
    from mlpfctl.config import Override, resolve

    def rungs(scheduler: str, spacing: str | None) -> list[int]:
        overrides = [
            Override("train.steps", 90, "test"),
            Override("train.val_every", 1, "test"),
            Override("hpo.space", "mlpf-small", "test"),
            Override("hpo.scheduler", scheduler, "test"),
        ]
        if spacing:
            overrides.append(Override("hpo.rung_spacing", spacing, "test"))
        settings = StudySettings.from_config(resolve(None, overrides, env={}).config, "s")
        return StudySettings.from_dict(settings.to_dict()).rungs.budgets  # as a worker reads them

    assert rungs("asha", None) == rungs("rasda", None) == [1, 3, 9, 29, 90]  # the default
    assert rungs("asha", "eta") == rungs("rasda", "eta") == [1, 3, 9, 27, 81, 90]
    assert rungs("sha", "geometric") == rungs("sha", None) == [1, 3, 9, 27, 81, 90]  # Optuna's own
    with pytest.raises(ConfigError, match="rung spacing"):
        Rungs(1, 90, 3, spacing="log").budgets  # noqa: B018


def test_a_study_stored_before_rung_spacing_and_promotion_rule_keeps_its_ladder_and_rule() -> None:
    from mlpfctl.config import Override, resolve

    overrides = [
        Override("train.steps", 100, "test"),
        Override("train.val_every", 10, "test"),
        Override("hpo.space", "mlpf-small", "test"),
    ]
    stored = StudySettings.from_config(resolve(None, overrides, env={}).config, "s").to_dict()
    assert StudySettings.from_dict(stored).rungs.budgets == [10, 30, 100]
    assert StudySettings.from_dict(stored).promotion_rule == "quota"
    del stored["rung_spacing"], stored["promotion_rule"]
    assert StudySettings.from_dict(stored).rungs.budgets == [10, 30, 90, 100]
    assert StudySettings.from_dict(stored).promotion_rule == "eager"


@pytest.mark.parametrize(
    ("steps", "val_every", "eta", "rungs"),
    [
        (1000, 100, 3, [100, 300, 900, 1000]),
        (1000, 10, 3, [10, 30, 90, 270, 810, 1000]),
        (180, 20, 3, [20, 60, 180]),
        (90, 1, 3, [1, 3, 9, 27, 81, 90]),
        (2000, 100, 3, [200, 600, 1800, 2000]),  # two intervals: still the most rungs, closer to R
        (100, 100, 3, [100]),  # one interval: nothing to halve
        (400, 50, 2, [50, 100, 200, 400]),
    ],
)
def test_default_rungs_are_derived_from_the_budget_and_the_validation_interval(
    steps: int, val_every: int, eta: int, rungs: list[int]
) -> None:
    from mlpfctl.config import Override, resolve

    overrides = [
        Override("train.steps", steps, "test"),
        Override("train.val_every", val_every, "test"),
        Override("hpo.reduction_factor", eta, "test"),
        Override("hpo.space", "mlpf-small", "test"),
    ]
    default = StudySettings.from_config(resolve(None, overrides, env={}).config, "s").rungs
    # The derived bottom rung is the same for both spacings; the table gives the eta ladder.
    overrides.append(Override("hpo.rung_spacing", "eta", "test"))
    settings = StudySettings.from_config(resolve(None, overrides, env={}).config, "s")
    assert settings.rungs.budgets == rungs
    assert default.budgets == Rungs(rungs[0], steps, eta, spacing="geometric").budgets
    assert all(b % val_every == 0 for b in settings.rungs.budgets[:-1] + default.budgets[:-1])
    # --min-resource and --max-resource still override the rule.
    overrides += [
        Override("hpo.min_resource", val_every, "test"),
        Override("hpo.max_resource", 3 * steps, "test"),
    ]
    given = StudySettings.from_config(resolve(None, overrides, env={}).config, "s").rungs.budgets
    assert given[0] == val_every and given[-1] == 3 * steps


def test_bad_rungs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="must be >= 2"):
        Rungs(1, 10, 1)
    with pytest.raises(ConfigError, match="exceeds max_resource"):
        Rungs(100, 50, 2)
    with pytest.raises(ConfigError, match=r"not multiples of train\.val_every = 40"):
        Rungs(100, 900, 3).check_multiple_of(40, "train.val_every")


def test_pruners_by_name() -> None:
    rungs = Rungs(10, 90, 3)
    assert isinstance(schedulers.make_pruner("sha", rungs), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(schedulers.make_pruner("hyperband", rungs), optuna.pruners.HyperbandPruner)
    assert isinstance(schedulers.make_pruner("median", rungs), optuna.pruners.MedianPruner)
    for name in ("none", "asha", "rasda"):
        assert isinstance(schedulers.make_pruner(name, rungs), optuna.pruners.NopPruner)
    with pytest.raises(ConfigError) as info:
        schedulers.check_name("bohb", 1)
    assert "available schedulers: none, median, sha, hyperband, asha, rasda" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="single objective"):
        schedulers.check_name("asha", 2)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("tpe", "TPESampler"),
        ("gp", "GPSampler"),
        ("cmaes", "CmaEsSampler"),
        ("random", "RandomSampler"),
        ("grid", "RandomSampler"),
    ],
)
def test_sampler_registry(name: str, cls: str) -> None:
    sampler = samplers.make_sampler(name, seed=1, worker_index=2, n_objectives=1)
    assert type(sampler).__name__ == cls


def test_sampler_errors_list_names() -> None:
    with pytest.raises(ConfigError) as info:
        samplers.check_name("hyperopt", 1)
    assert "available samplers: grid, random, qmc, tpe" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="multi-objective"):
        samplers.check_name("nsga2", 1)
    with pytest.raises(ConfigError, match="single-objective"):
        samplers.check_name("cmaes", 2)
    assert (
        type(samplers.make_sampler("nsga2", seed=0, worker_index=0, n_objectives=2)).__name__
        == "NSGAIISampler"
    )


@pytest.mark.parametrize("name", ["random", "qmc"])
def test_planned_configs_are_distinct_and_reproducible(name: str) -> None:
    space = load_space("quadratic")
    first = samplers.plan_configs(space, name, 40, seed=3)
    again = samplers.plan_configs(space, name, 40, seed=3)
    assert first == again
    assert len({config_key(p) for p in first}) == 40


def test_planned_random_stops_when_a_small_space_is_exhausted(tmp_path: object) -> None:
    from mlpfctl.hpo.space import SearchSpace

    space = SearchSpace.from_dict({"params": {"a": {"type": "categorical", "choices": [1, 2, 3]}}})
    plans = samplers.plan_configs(space, "random", 10, seed=0)
    assert sorted(p["a"] for p in plans) == [1, 2, 3]
