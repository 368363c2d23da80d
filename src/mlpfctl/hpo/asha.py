"""Promotion-type ASHA (Li et al., arXiv:1810.05934) and RASDA (arXiv:2412.02729) on an Optuna study.

Representation (everything lives in the study storage, so any worker on any node can act):

* One Optuna trial per **job** = (configuration, rung). A configuration's first job is a queued
  "new" slot; its later jobs are "promotion" trials carrying the same parameters. User attrs link
  them: ``mlpfctl.config`` (number of the configuration's first trial), ``mlpfctl.rung``,
  ``mlpfctl.parent`` (number of the job it continues), ``mlpfctl.budget`` (step budget of the rung),
  ``mlpfctl.checkpoint`` (where the job left its state), ``mlpfctl.ticket`` (see below).
* A job that reaches a rung below the top is *paused*: its value at the rung budget is recorded as
  an intermediate value and the trial is told PRUNED with ``mlpfctl.outcome = "paused"`` (samplers
  read it as a learning curve that stopped at that step). A top-rung job is told COMPLETE.
* Before telling a paused job, its worker queues one **promotion ticket**: a WAITING trial in the
  companion study ``<study>:promotions`` (``queue_name``) with the job's parameters and the next
  rung's attributes. Tickets are bookkeeping, never a trial to optimise: the study itself only
  holds jobs that ran or run, so ``study.ask()`` and optuna-dashboard never pick up a paused
  configuration. A ticket stays WAITING while its configuration is paused, becomes COMPLETE (value:
  the rung value that earned the promotion, ``mlpfctl.job``: the job it became) when promoted, and
  FAIL when it is void (its job was killed and re-run, which queued a fresh ticket).
* A free worker scans rungs top-down: for rung k it ranks the paused jobs by value and, for those in
  the top ``floor(n_k / eta)`` whose ticket is still WAITING, tries to **claim** the ticket (under
  the default ``quota`` rule only while fewer than ``floor(n_k / eta)`` of the rung's jobs were
  promoted, ``rung_promotions``); if no promotion is possible it claims a queued "new" slot (a new
  configuration at the bottom).

Concurrency argument. A claim is the storage's WAITING -> RUNNING transition, the compare-and-set
that Optuna's ``enqueue_trial`` relies on (``mlpfctl.hpo.optuna_api.claim``): exactly one worker
wins a ticket, and only the worker that paused a job creates its ticket, so each promotion happens
at most once. The winner then adds the promotion job to the study as RUNNING (``mlpfctl.ticket``
names the ticket) and finishes the ticket COMPLETE. A worker killed between those steps leaves a
RUNNING ticket; after the grace period any worker finishes it: COMPLETE if the job exists (the
job's own heartbeat and retry take over), otherwise FAIL plus a fresh WAITING copy. Both are
compare-and-set transitions, so a slow (not dead) winner that finds its ticket FAILed drops the job
it created, and the promotion still runs exactly once. Decisions are taken on a snapshot; a worker
acting on a slightly stale snapshot may promote a configuration that a just-finished job would
have pushed out of the top ``1/eta``: the "mispromotion" that the ASHA paper accepts in exchange
for never waiting.

RASDA: identical, but a job at rung k runs with ``ranks_per_trial * eta**k`` data-parallel ranks
(capped by ``max_ranks_per_trial``); the training loop rescales the learning rate for the larger
global batch by ``train.lr_scaling`` (linear or square root).
"""

from __future__ import annotations

import math
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from mlpfctl.errors import ConfigError
from mlpfctl.hpo import schedulers
from mlpfctl.hpo.optuna_api import trial_id
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
ATTR_TICKET = "mlpfctl.ticket"  # on a promotion job: the id of the ticket it came from
ATTR_JOB = "mlpfctl.job"  # on a used ticket: the number of the job it became
# "paused" | "top" | "complete" | "pruned" | "diverged" | "failed" | "duplicate" | "superseded"
ATTR_OUTCOME = "mlpfctl.outcome"
ATTR_DEDUPE = "mlpfctl.dedupe_attempts"
ATTR_DUPLICATE_OF = "mlpfctl.duplicate_of"
RUNG_OUTCOMES = ("paused", "top")
QUEUE_SUFFIX = ":promotions"

Claim = tuple[Literal["job", "ticket"], int]


def queue_name(study_name: str) -> str:
    """The companion study that holds a promotion study's tickets."""
    return study_name + QUEUE_SUFFIX


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
    import optuna

    table: dict[int, list[RungEntry]] = {}
    ran = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for trial in trials:
        # A FAIL job (killed, then re-run as a retry) never competes: its retry does.
        if trial.state not in ran or ATTR_RUNG not in trial.user_attrs:
            continue
        value = rung_value(trial)
        if value is None:
            continue
        rung = int(trial.user_attrs[ATTR_RUNG])
        table.setdefault(rung, []).append(
            RungEntry(trial.number, trial_id(trial), int(trial.user_attrs[ATTR_CONFIG]), rung, value)
        )
    for entries in table.values():
        entries.sort(key=lambda e: (e.value, e.number))
    return table


def waiting_tickets(tickets: Sequence[optuna.trial.FrozenTrial]) -> dict[int, int]:
    """Parent job number -> id of its WAITING ticket."""
    import optuna

    out: dict[int, int] = {}
    for ticket in tickets:
        if ticket.state == optuna.trial.TrialState.WAITING and ATTR_PARENT in ticket.user_attrs:
            out.setdefault(int(ticket.user_attrs[ATTR_PARENT]), trial_id(ticket))
    return out


def promotion_candidates(
    trials: Sequence[optuna.trial.FrozenTrial],
    tickets: Sequence[optuna.trial.FrozenTrial],
    eta: int,
    top_rung: int,
    maximize: bool = False,
    *,
    rule: str,
) -> list[int]:
    """Ids of the WAITING tickets that ASHA may promote now, in the order to try them."""
    waiting = waiting_tickets(tickets)
    if maximize:
        trials = [_negated(t) for t in trials]
    table = rung_table(trials)
    out: list[int] = []
    for rung in range(top_rung - 1, -1, -1):
        ranked = [entry.number for entry in table.get(rung, [])]
        out += [waiting[number] for number in rung_promotions(ranked, eta, waiting, rule=rule)]
    return out


def rung_promotions(ranked: Sequence[K], eta: int, open_: Container[K], *, rule: str) -> list[K]:
    """ASHA's promotion rule for one rung, free of any storage (``mlpfctl hpo simulate`` uses it too).

    ``ranked`` holds the rung's finished jobs, best first (value, then trial number); ``open_`` the
    jobs whose promotion has not been claimed yet (the others were promoted). A job may be promoted
    if it is in the top ``floor(n / eta)`` of its rung and still open; the result lists those, best
    first. ``rule`` (``hpo.promotion_rule``, mlpfctl.hpo.schedulers.PROMOTION_RULES):

    * ``eager``, the rule of the ASHA paper: nothing more.
    * ``quota``: at most ``floor(n / eta)`` of the rung's jobs are ever promoted. Under ``eager`` a
      job is promoted while it is in the top 1/eta of the results *so far*; when the sampler's
      proposals improve, each newcomer pushes the earlier ones out of the top after they were
      promoted, and far more than 1/eta climb (about 70% per rung with TPE on MFHartmann6), so
      the upper rungs eat the budget and few configurations are tried. The quota keeps ASHA's
      intended 1/eta; a promotion then waits until the rung has room, and goes to the best open
      job at that moment.
    """
    top = [key for key in ranked[: len(ranked) // eta] if key in open_]
    if rule == "eager":
        return top
    if rule != "quota":
        raise ConfigError(
            f"unknown promotion rule '{rule}'", f"available: {', '.join(schedulers.PROMOTION_RULES)}"
        )
    promoted = sum(1 for key in ranked if key not in open_)
    return top[: max(0, len(ranked) // eta - promoted)]


def void_tickets(
    trials: Sequence[optuna.trial.FrozenTrial], tickets: Sequence[optuna.trial.FrozenTrial]
) -> list[int]:
    """WAITING tickets whose parent job was failed (killed after queueing it, then re-run)."""
    import optuna

    failed = {t.number for t in trials if t.state == optuna.trial.TrialState.FAIL}
    return [ticket for parent, ticket in waiting_tickets(tickets).items() if parent in failed]


def _negated(trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    import copy

    clone = copy.copy(trial)
    clone.intermediate_values = {k: -v for k, v in trial.intermediate_values.items()}
    if trial.values is not None:
        clone.values = [-v for v in trial.values]
    return clone


def claim_order(
    trials: Sequence[optuna.trial.FrozenTrial],
    tickets: Sequence[optuna.trial.FrozenTrial] = (),
    *,
    promotion: bool,
    eta: int,
    top_rung: int,
    maximize: bool,
    rule: str,
) -> list[Claim]:
    """What a free worker should try to claim, in order: WAITING jobs of the study and tickets.

    Retries of killed jobs first (their decision was taken already), then ASHA promotions from the
    highest rung down, then new configurations by slot.
    """
    import optuna

    waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
    retries = sorted(
        (t for t in waiting if ATTR_RETRY_OF in t.user_attrs),
        key=lambda t: (-int(t.user_attrs.get(ATTR_RUNG, 0)), t.number),
    )
    order: list[Claim] = [("job", trial_id(t)) for t in retries]
    if promotion:
        candidates = promotion_candidates(trials, tickets, eta, top_rung, maximize, rule=rule)
        order += [("ticket", t) for t in candidates]
    new = sorted(
        (t for t in waiting if t.user_attrs.get(ATTR_KIND) == "new" and ATTR_RETRY_OF not in t.user_attrs),
        key=lambda t: (int(t.user_attrs.get(ATTR_SLOT, 0)), t.number),
    )
    order += [("job", trial_id(t)) for t in new]
    return order


def job_ranks(base_ranks: int, rung: int, eta: int, rasda: bool, max_ranks: int) -> int:
    """Data-parallel ranks of a rung-``rung`` job: constant for ASHA, eta-fold per rung for RASDA."""
    if not rasda:
        return base_ranks
    grown: int = base_ranks * eta**rung
    return max(base_ranks, min(grown, max_ranks))


def ticket_attrs(parent: optuna.trial.FrozenTrial, budgets: Sequence[int], checkpoint: str) -> dict[str, Any]:
    """User attrs of the ticket (and then the job) that continues ``parent`` one rung higher."""
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
