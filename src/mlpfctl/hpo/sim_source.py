"""What a finished (or running) study recorded, in the shape the campaign simulator needs.

* **configurations**: each one's learning curve (the intermediate values it reported, in
  minimisation sign; an ASHA configuration's jobs each carry the whole curve so far, because a
  promoted job copies its parent's), and the step where it diverged, if it did;
* **jobs**: one per finished trial, with the steps it trained (from its start step: promoted ASHA
  jobs resume), its ranks and its wall-clock seconds from Optuna's start and completion times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlpfctl.errors import UsageError
from mlpfctl.hpo.asha import (
    ATTR_BUDGET,
    ATTR_CONFIG,
    ATTR_DUPLICATE_OF,
    ATTR_KIND,
    ATTR_OUTCOME,
    ATTR_RANKS,
    ATTR_START,
)
from mlpfctl.hpo.settings import StudySettings

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class RecordedConfig:
    key: str  # "<study>#<configuration number>"
    curve: dict[int, float]  # step -> value, minimisation sign
    diverged_at: int | None = None  # the step after its last finite value, if it diverged
    position: float = 0.5  # where in its campaign it was sampled: (rank + 0.5) / configurations


@dataclass(frozen=True)
class RecordedJob:
    start_step: int
    steps: int
    ranks: int
    seconds: float
    started_s: float  # since the study's first job started
    ended_s: float

    @property
    def resumed(self) -> bool:
        return self.start_step > 0


@dataclass(frozen=True)
class RecordedStudy:
    name: str
    storage: str  # masked
    settings: StudySettings
    configs: tuple[RecordedConfig, ...]
    jobs: tuple[RecordedJob, ...]

    @property
    def span_s(self) -> float:
        """First job start to last job end."""
        return max((j.ended_s for j in self.jobs), default=0.0)

    @property
    def max_step(self) -> int:
        return max((max(c.curve) for c in self.configs if c.curve), default=0)


def load_recorded(storage_url: str, study_name: str) -> RecordedStudy:
    """Read a study; exit-2 errors for a missing study and for one without learning curves."""
    from mlpfctl.hpo.report import load
    from mlpfctl.hpo.storage import parse_url

    study, settings = load(storage_url, study_name)
    if len(settings.directions) != 1:
        raise UsageError(
            f"study '{study_name}' has {len(settings.directions)} objectives; the simulator replays "
            "single-objective campaigns",
            "simulate from a single-objective study",
        )
    recorded = from_trials(
        study_name, parse_url(storage_url).masked, settings, study.get_trials(deepcopy=False)
    )
    if not any(c.curve for c in recorded.configs):
        raise UsageError(
            f"study '{study_name}' has no learning curves (no trial reported an intermediate value)",
            "simulate from a study whose trials report their validation loss (mlpfctl hpo run with "
            "train.val_every dividing the rung budgets)",
        )
    if not recorded.jobs:
        raise UsageError(
            f"study '{study_name}' has no finished trial with start and end times",
            "let the study run until some trials finish, then simulate",
        )
    return recorded


def from_trials(
    name: str, storage: str, settings: StudySettings, trials: list[optuna.trial.FrozenTrial]
) -> RecordedStudy:
    import optuna

    sign = -1.0 if settings.maximize else 1.0
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None and t.state in finished]
    t0 = min(starts) if starts else None
    curves: dict[int, dict[int, float]] = {}
    diverged: dict[int, int] = {}
    jobs: list[RecordedJob] = []
    for trial in trials:
        if trial.state not in finished or ATTR_DUPLICATE_OF in trial.user_attrs:
            continue
        if not settings.promotion and trial.user_attrs.get(ATTR_KIND, "new") != "new":
            continue
        config = int(trial.user_attrs.get(ATTR_CONFIG, trial.number))
        curve = curves.setdefault(config, {})
        finite = {int(s): sign * float(v) for s, v in trial.intermediate_values.items() if math.isfinite(v)}
        curve.update(finite)
        outcome = trial.user_attrs.get(ATTR_OUTCOME)
        last = max(finite, default=int(trial.user_attrs.get(ATTR_START, 0)))
        if outcome == "diverged" or len(finite) < len(trial.intermediate_values):
            diverged[config] = last + 1
        start = int(trial.user_attrs.get(ATTR_START, 0)) if settings.promotion else 0
        if settings.promotion and outcome in ("paused", "top"):
            end = int(trial.user_attrs.get(ATTR_BUDGET, last))
        else:
            end = last
        if t0 is None or trial.datetime_start is None or trial.datetime_complete is None or end <= start:
            continue
        jobs.append(
            RecordedJob(
                start_step=start,
                steps=end - start,
                ranks=int(trial.user_attrs.get(ATTR_RANKS, settings.ranks_per_trial)),
                seconds=(trial.datetime_complete - trial.datetime_start).total_seconds(),
                started_s=(trial.datetime_start - t0).total_seconds(),
                ended_s=(trial.datetime_complete - t0).total_seconds(),
            )
        )
    kept = [(config, curve) for config, curve in sorted(curves.items()) if curve or config in diverged]
    configs = tuple(
        RecordedConfig(
            f"{name}#{config}", dict(sorted(curve.items())), diverged.get(config), (rank + 0.5) / len(kept)
        )
        for rank, (config, curve) in enumerate(kept)
    )
    return RecordedStudy(name, storage, settings, configs, tuple(jobs))
