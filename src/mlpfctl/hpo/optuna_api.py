"""Everything mlpfctl needs from Optuna beyond its public API, in one place.

Optuna's public API has no compare-and-set on a trial's state, cannot create a RUNNING trial and
return its id, and writes to a trial only through a live ``optuna.Trial`` in the process that
asked for it. Workers need all three: claims, promotions and stale-trial reaping are state
transitions that exactly one process may win, and a multi-rank trial reports from another process
than the one that claimed it. These functions use ``Study._storage``, ``Study._study_id`` and
``FrozenTrial._trial_id`` (stable since Optuna 2, used the same way by optuna-integration and
optuna-dashboard) and nothing else private. ``tests/integration/hpo/test_optuna_api.py`` checks
each of them on SQLite, the journal file and PostgreSQL, and ``pyproject.toml`` bounds ``optuna``
to the major version those tests ran on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial, TrialState


def trial_id(trial: FrozenTrial | optuna.Trial) -> int:
    """The storage-wide id of a trial (``number`` counts within its study only)."""
    return int(trial._trial_id)


def storage(study: optuna.Study) -> BaseStorage:
    return study._storage


def claim(study: optuna.Study, trial: int) -> bool:
    """WAITING -> RUNNING: True for exactly one caller, False for every other (or if finished).

    The storage's own compare-and-set (what ``Study.ask`` uses for enqueued trials): PostgreSQL
    locks the row, the journal replays claims in log order, SQLite needs ``BEGIN IMMEDIATE``
    transactions (``mlpfctl.hpo.storage.open_storage`` sets them).
    """
    import optuna

    try:
        return bool(study._storage.set_trial_state_values(trial, state=optuna.trial.TrialState.RUNNING))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def finish(study: optuna.Study, trial: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
    """Move an unfinished trial to a finished ``state``; False if it was already finished."""
    return _set_state(study, trial, state, values)


def give_back(study: optuna.Study, trial: int) -> bool:
    """RUNNING -> WAITING: the next claim continues the trial (False if it was finished meanwhile)."""
    import optuna

    return _set_state(study, trial, optuna.trial.TrialState.WAITING, None)


def _set_state(study: optuna.Study, trial: int, state: TrialState, values: Sequence[float] | None) -> bool:
    import optuna

    try:
        return bool(study._storage.set_trial_state_values(trial, state=state, values=values))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def create(study: optuna.Study, template: FrozenTrial) -> int:
    """Add ``template`` (any state, e.g. RUNNING) to the study; the new trial's id."""
    return int(study._storage.create_new_trial(study._study_id, template_trial=template))


def get(study: optuna.Study, trial: int) -> FrozenTrial:
    return study._storage.get_trial(trial)


def set_intermediate(study: optuna.Study, trial: int, step: int, value: float) -> None:
    study._storage.set_trial_intermediate_value(trial, step, value)


def set_user_attr(study: optuna.Study, trial: int, key: str, value: Any) -> None:
    study._storage.set_trial_user_attr(trial, key, value)
