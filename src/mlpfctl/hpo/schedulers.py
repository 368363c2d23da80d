"""Adaptive configuration evaluation: rung budgets, Optuna pruners, and our promotion schedulers.

* ``none``, ``median``, ``sha``, ``hyperband``: Optuna pruners (stopping type: a trial runs from
  step 0 and is stopped at a rung if it is not good enough), configured from our flags.
* ``asha``, ``rasda``: promotion type (``mlpfctl.hpo.asha``): a trial pauses at every rung with a
  checkpoint and is continued later only if promoted; rasda also multiplies its ranks by eta.

Rung ladders, counted with integer arithmetic (``math.log(243, 3)`` is 4.999..., the bug in Optuna's
Hyperband bracket count, hpo-reference.md §1); b = ``r * eta**s`` is the bottom rung, K the most
eta-fold steps from b that fit below R (b * eta**K <= R):

* ``geometric`` spacing (``hpo.rung_spacing``, the default of the promotion schedulers): K + 1
  rungs evenly spaced in log from b to R, each rounded to a multiple of b: 1, 3, 9, 29, 90. Under
  the quota promotion rule (``mlpfctl.hpo.asha.rung_promotions``) a configuration reaches R after
  eta**K bottom-rung results instead of eta**(K+1): the first full training comes after 3.4
  instead of 10 full trainings of budget on MFHartmann6 (docs/hpo.md).
* ``eta`` spacing (the ladder of Optuna's pruners, which always use it): ``b * eta**k`` below R,
  then R. With R = 90, b = 1, eta = 3: 1, 3, 9, 27, 81, 90.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlpfctl.errors import ConfigError

if TYPE_CHECKING:
    import optuna

NAMES = ("none", "median", "sha", "hyperband", "asha", "rasda")
PROMOTION = ("asha", "rasda")
SPACINGS = ("geometric", "eta")
PROMOTION_RULES = ("quota", "eager")  # mlpfctl.hpo.asha.rung_promotions


@dataclass(frozen=True)
class Rungs:
    min_resource: int
    max_resource: int
    reduction_factor: int
    min_early_stopping_rate: int = 0
    spacing: str = "eta"  # the promotion schedulers use hpo.rung_spacing (module docstring)

    def __post_init__(self) -> None:
        if self.reduction_factor < 2:
            raise ConfigError(
                f"hpo.reduction_factor is {self.reduction_factor}, but must be >= 2", "set --eta 2 or more"
            )
        if self.spacing not in SPACINGS:
            raise ConfigError(f"unknown rung spacing '{self.spacing}'", f"available: {', '.join(SPACINGS)}")
        bottom = self.min_resource * self.reduction_factor**self.min_early_stopping_rate
        if bottom > self.max_resource:
            raise ConfigError(
                f"the bottom rung (min_resource * eta**s = {bottom}) exceeds "
                f"max_resource = {self.max_resource}",
                "lower hpo.min_resource / hpo.min_early_stopping_rate or raise hpo.max_resource",
            )

    @property
    def budgets(self) -> list[int]:
        """Step budget of each rung, bottom first; the last one is ``max_resource``."""
        bottom = self.min_resource * self.reduction_factor**self.min_early_stopping_rate
        eta, top = self.reduction_factor, self.max_resource
        if self.spacing == "geometric":
            steps = 0
            while bottom * eta ** (steps + 1) <= top:
                steps += 1
            ratio = top / bottom
            out = [bottom * max(1, round(ratio ** (k / steps))) for k in range(steps)] if steps else []
            return sorted({*out, bottom, top})
        out = []
        budget = bottom
        while budget < top:
            out.append(budget)
            budget *= eta
        out.append(top)
        return out

    @property
    def top(self) -> int:
        return len(self.budgets) - 1

    def check_multiple_of(self, interval: int, what: str) -> None:
        bad = [b for b in self.budgets if b % interval]
        if bad:
            raise ConfigError(
                f"rung budgets {bad} are not multiples of {what} = {interval}",
                f"choose hpo.min_resource/max_resource as multiples of {interval} (rungs: {self.budgets})",
            )


def derive_min_resource(max_resource: int, eta: int, quantum: int) -> int:
    """The bottom rung r when none is given: as many eta-fold rungs below R as the quantum allows.

    ``quantum`` is the smallest budget at which a trial has a value: the validation interval
    (``train.val_every``), since the objective reports at validations. K is the largest number of
    eta-fold steps from one quantum up to R (quantum * eta**K <= R), and r is R / eta**K rounded
    down to a multiple of the quantum: the most rungs the validation cadence allows, the bottom
    one as close to R / eta**K as it can be.
    """
    quantum = max(1, quantum)
    steps = 0
    while quantum * eta ** (steps + 1) <= max_resource:
        steps += 1
    bottom: int = max_resource // eta**steps // quantum * quantum
    return max(quantum, bottom)


def check_name(name: str, n_objectives: int) -> None:
    if name not in NAMES:
        raise ConfigError(f"unknown scheduler '{name}'", f"available schedulers: {', '.join(NAMES)}")
    if name != "none" and n_objectives > 1:
        raise ConfigError(
            f"scheduler '{name}' needs a single objective (Optuna prunes single-objective studies only)",
            "use --scheduler none for multi-objective studies",
        )


def make_pruner(name: str, rungs: Rungs) -> optuna.pruners.BasePruner:
    """The Optuna pruner behind a stopping-type scheduler (NopPruner for asha/rasda and none)."""
    import optuna

    check_name(name, 1)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=rungs.budgets[0] - 1)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=rungs.min_resource,
            reduction_factor=rungs.reduction_factor,
            min_early_stopping_rate=rungs.min_early_stopping_rate,
        )
    if name == "hyperband":
        # Brackets are hashed from study name + trial number, so every worker agrees on them.
        return optuna.pruners.HyperbandPruner(
            min_resource=rungs.min_resource,
            max_resource=rungs.max_resource,
            reduction_factor=rungs.reduction_factor,
        )
    return optuna.pruners.NopPruner()
