"""Promotion-type ASHA (Li et al., arXiv:1810.05934) and RASDA (arXiv:2412.02729) on an Optuna study.

Representation (everything lives in the study storage, so any worker on any node can act):

* One Optuna trial per **job** = (configuration, rung). A configuration's first job is a queued
  "new" slot; its later jobs are "promotion" trials carrying the same parameters. User attrs link
  them: ``mlpfctl.config`` (number of the configuration's first trial), ``mlpfctl.rung``,
  ``mlpfctl.parent`` (number of the job it continues), ``mlpfctl.budget`` (step budget of the rung),
  ``mlpfctl.checkpoint`` (where the job left its state).
* A job that reaches a rung below the top is *paused*: its value at the rung budget is recorded as
  an intermediate value, the trial is told PRUNED (so samplers read it as a learning curve that
  stopped at that step, exactly like Optuna's own pruned trials), and before that its worker queues
  one WAITING **promotion candidate** for the next rung. A top-rung job is told COMPLETE.
* A free worker scans rungs top-down: for rung k it ranks the paused jobs by value and, for those in
  the top ``floor(n_k / eta)`` whose candidate is still WAITING, tries to **claim** the candidate;
  if no promotion is possible it claims a queued "new" slot (a new configuration at the bottom).

Concurrency argument. A claim is the storage's WAITING -> RUNNING transition
(``storage.set_trial_state_values(id, RUNNING)``), the same primitive Optuna's ``enqueue_trial``
relies on: PostgreSQL takes a row lock (``SELECT ... FOR UPDATE``) and re-checks the state; SQLite
serialises writers on the database lock (a racing writer gets "database is locked", never a second
success); the journal appends the claim to the log, and replay in log order lets exactly the first
claim win (the others read False). So each candidate runs at most once, and because only the worker
that paused a job creates its candidate (before telling the job finished), each promotion decision
exists exactly once. A candidate outside the top ``1/eta`` simply stays WAITING: ASHA may promote
it later as the rung grows. Decisions are taken on a snapshot; a worker acting on a slightly stale
snapshot may promote a configuration that a just-finished job would have pushed out of the top
``1/eta``: the "mispromotion" that the ASHA paper accepts in exchange for never waiting.

RASDA: identical, but a job at rung k runs with ``ranks_per_trial * eta**k`` data-parallel ranks
(capped by ``max_ranks_per_trial``); the training loop rescales the learning rate for the larger
global batch by ``train.lr_scaling`` (linear or square root).
"""

from __future__ import annotations

import math
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from mlpfctl.hpo.storage import ATTR_RETRY_OF

if TYPE_CHECKING:
    import optuna

ATTR_KIND = "mlpfctl.kind"  # "new" | "promotion"
ATTR_SLOT = "mlpfctl.slot"
ATTR_CONFIG = "mlpfctl.config"
ATTR_RUNG = "mlpfctl.rung"
ATTR_PARENT = "mlpfctl.parent"
ATTR_BUDGET = "mlpfctl.budget"
ATTR_START = "mlpfctl.start"
ATTR_RANKS = "mlpfctl.ranks"
ATTR_CHECKPOINT = "mlpfctl.checkpoint"
ATTR_OUTCOME = "mlpfctl.outcome"  # "paused" | "top" | "complete" | "pruned" | "diverged" | "failed"
ATTR_DEDUPE = "mlpfctl.dedupe_attempts"
ATTR_DUPLICATE_OF = "mlpfctl.duplicate_of"
RUNG_OUTCOMES = ("paused", "top")

K = TypeVar("K")


@dataclass(frozen=True)
class RungEntry:
    number: int
    trial_id: int
    config: int
    rung: int
    value: float


def rung_value(trial: optuna.trial.FrozenTrial) -> float | None:
    """A finished job's value at its rung budget (None if it has none, e.g. it diverged)."""
    if trial.user_attrs.get(ATTR_OUTCOME) not in RUNG_OUTCOMES:
        return None
    budget = trial.user_attrs.get(ATTR_BUDGET)
    value = trial.intermediate_values.get(int(budget)) if budget is not None else None
    if value is None:
        value = trial.value
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def rung_table(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[int, list[RungEntry]]:
    """Finished jobs per rung, best first (minimisation; callers flip signs to maximise)."""
    table: dict[int, list[RungEntry]] = {}
    for trial in trials:
        if not trial.state.is_finished() or ATTR_RUNG not in trial.user_attrs:
            continue
        value = rung_value(trial)
        if value is None:
            continue
        rung = int(trial.user_attrs[ATTR_RUNG])
        table.setdefault(rung, []).append(
            RungEntry(trial.number, trial._trial_id, int(trial.user_attrs[ATTR_CONFIG]), rung, value)
        )
    for entries in table.values():
        entries.sort(key=lambda e: (e.value, e.number))
    return table


def promotion_candidates(
    trials: Sequence[optuna.trial.FrozenTrial], eta: int, top_rung: int, maximize: bool = False
) -> list[int]:
    """Trial ids of WAITING candidates that ASHA may promote now, in the order to try them."""
    import optuna

    waiting_by_parent: dict[int, int] = {}
    for trial in trials:
        if (
            trial.state == optuna.trial.TrialState.WAITING
            and trial.user_attrs.get(ATTR_KIND) == "promotion"
            and ATTR_RETRY_OF not in trial.user_attrs
        ):
            waiting_by_parent[int(trial.user_attrs[ATTR_PARENT])] = trial._trial_id
    if maximize:
        trials = [_negated(t) for t in trials]
    table = rung_table(trials)
    out: list[int] = []
    for rung in range(top_rung - 1, -1, -1):
        ranked = [entry.number for entry in table.get(rung, [])]
        out += [waiting_by_parent[number] for number in rung_promotions(ranked, eta, waiting_by_parent)]
    return out


def rung_promotions(ranked: Sequence[K], eta: int, open_: Container[K]) -> list[K]:
    """ASHA's promotion rule for one rung, free of any storage (``mlpfctl hpo simulate`` uses it too).

    ``ranked`` holds the rung's finished jobs, best first (value, then trial number); ``open_`` the
    jobs whose promotion has not been claimed yet. A job may be promoted if it is in the top
    ``floor(n / eta)`` of its rung and still open; the result lists those, best first.
    """
    return [key for key in ranked[: len(ranked) // eta] if key in open_]


def _negated(trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    import copy

    clone = copy.copy(trial)
    clone.intermediate_values = {k: -v for k, v in trial.intermediate_values.items()}
    if trial.values is not None:
        clone.values = [-v for v in trial.values]
    return clone


def claim_order(
    trials: Sequence[optuna.trial.FrozenTrial], *, promotion: bool, eta: int, top_rung: int, maximize: bool
) -> list[int]:
    """Trial ids of WAITING trials in the order a free worker should try to claim them.

    Retries of killed jobs first (their decision was taken already), then ASHA promotions from the
    highest rung down, then new configurations by slot.
    """
    import optuna

    waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
    retries = sorted(
        (t for t in waiting if ATTR_RETRY_OF in t.user_attrs),
        key=lambda t: (-int(t.user_attrs.get(ATTR_RUNG, 0)), t.number),
    )
    order = [t._trial_id for t in retries]
    if promotion:
        order += promotion_candidates(trials, eta, top_rung, maximize)
    new = sorted(
        (t for t in waiting if t.user_attrs.get(ATTR_KIND) == "new" and ATTR_RETRY_OF not in t.user_attrs),
        key=lambda t: (int(t.user_attrs.get(ATTR_SLOT, 0)), t.number),
    )
    order += [t._trial_id for t in new]
    return order


def job_ranks(base_ranks: int, rung: int, eta: int, rasda: bool, max_ranks: int) -> int:
    """Data-parallel ranks of a rung-``rung`` job: constant for ASHA, eta-fold per rung for RASDA."""
    if not rasda:
        return base_ranks
    grown: int = base_ranks * eta**rung
    return max(base_ranks, min(grown, max_ranks))


def candidate_attrs(
    parent: optuna.trial.FrozenTrial, budgets: Sequence[int], checkpoint: str
) -> dict[str, Any]:
    """User attrs of the promotion candidate that continues ``parent`` one rung higher."""
    rung = int(parent.user_attrs[ATTR_RUNG]) + 1
    return {
        ATTR_KIND: "promotion",
        ATTR_CONFIG: int(parent.user_attrs[ATTR_CONFIG]),
        ATTR_RUNG: rung,
        ATTR_PARENT: parent.number,
        ATTR_START: int(budgets[rung - 1]),
        ATTR_BUDGET: int(budgets[rung]),
        ATTR_CHECKPOINT + ".parent": checkpoint,
    }
