"""ASHA promotion decisions on hand-built rung tables and tickets (no storage, no workers)."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from mlpfctl.errors import ConfigError
from mlpfctl.hpo.asha import (
    ATTR_BUDGET,
    ATTR_CONFIG,
    ATTR_KIND,
    ATTR_OUTCOME,
    ATTR_PARENT,
    ATTR_RUNG,
    ATTR_SLOT,
    claim_order,
    job_ranks,
    promotion_candidates,
    rung_table,
    void_tickets,
)
from mlpfctl.hpo.schedulers import Rungs
from mlpfctl.hpo.storage import ATTR_RETRY_OF

S = optuna.trial.TrialState
BUDGETS = Rungs(10, 90, 3).budgets  # [10, 30, 90]
DIST = {"x": optuna.distributions.FloatDistribution(0, 1)}


class Book:
    """Builds a study's trial list (paused jobs with values, slots) and its WAITING tickets."""

    def __init__(self) -> None:
        self.trials: list[optuna.trial.FrozenTrial] = []
        self.tickets: list[optuna.trial.FrozenTrial] = []

    def _add(
        self,
        state: S,
        attrs: dict[str, Any],
        value: float | None = None,
        inter: dict[int, float] | None = None,
    ) -> int:
        number = len(self.trials)
        trial = optuna.trial.create_trial(
            state=state,
            params={"x": 0.5},
            distributions=DIST,
            user_attrs=attrs,
            value=value if state == S.COMPLETE else None,
            intermediate_values=inter or {},
        )
        trial.number = number
        trial._trial_id = 1000 + number
        self.trials.append(trial)
        return number

    def paused(self, config: int | None, rung: int, value: float) -> int:
        number = len(self.trials)
        attrs = {
            ATTR_KIND: "new" if rung == 0 else "promotion",
            ATTR_CONFIG: number if config is None else config,
            ATTR_RUNG: rung,
            ATTR_BUDGET: BUDGETS[rung],
            ATTR_OUTCOME: "paused",
        }
        self._add(S.PRUNED, attrs, inter={BUDGETS[rung]: value})
        ticket = optuna.trial.create_trial(
            state=S.WAITING,
            user_attrs={
                ATTR_KIND: "promotion",
                ATTR_PARENT: number,
                ATTR_RUNG: rung + 1,
                ATTR_CONFIG: attrs[ATTR_CONFIG],
            },
        )
        ticket.number = len(self.tickets)
        ticket._trial_id = 5000 + ticket.number
        self.tickets.append(ticket)
        return number

    def candidate_of(self, parent: int) -> int:
        return next(t._trial_id for t in self.tickets if t.user_attrs.get(ATTR_PARENT) == parent)

    def candidates(self, maximize: bool = False, rule: str = "quota") -> list[int]:
        return promotion_candidates(
            self.trials, self.tickets, eta=3, top_rung=2, maximize=maximize, rule=rule
        )

    def promote(self, parent: int) -> None:
        """The parent's ticket was claimed: it is no longer WAITING."""
        ticket = self.candidate_of(parent)
        next(t for t in self.tickets if t._trial_id == ticket).state = S.COMPLETE

    def slot(self, index: int, retry_of: int | None = None) -> int:
        attrs: dict[str, Any] = {ATTR_KIND: "new", ATTR_SLOT: index}
        if retry_of is not None:
            attrs[ATTR_RETRY_OF] = retry_of
        return 1000 + self._add(S.WAITING, attrs)


def test_nothing_is_promoted_until_a_rung_has_eta_entries() -> None:
    book = Book()
    book.paused(None, 0, 1.0)
    book.paused(None, 0, 0.5)
    assert book.candidates() == []
    best = book.paused(None, 0, 0.1)
    assert book.candidates() == [book.candidate_of(best)]


def test_top_floor_n_over_eta_and_best_first() -> None:
    book = Book()
    numbers = [book.paused(None, 0, v) for v in (0.9, 0.2, 0.7, 0.1, 0.5, 0.3)]
    # 6 entries, eta 3: the top 2 (values 0.1 and 0.2) are promotable, best first.
    assert book.candidates() == [
        book.candidate_of(numbers[3]),
        book.candidate_of(numbers[1]),
    ]
    # Maximising flips the ranking.
    assert book.candidates(maximize=True) == [
        book.candidate_of(numbers[0]),
        book.candidate_of(numbers[2]),
    ]


@pytest.mark.parametrize("rule", ["quota", "eager"])
def test_promoted_configs_are_not_promoted_twice_and_higher_rungs_come_first(rule: str) -> None:
    book = Book()
    low = [book.paused(None, 0, v) for v in (0.4, 0.3, 0.2)]
    book.promote(low[2])  # the best bottom-rung config was promoted
    assert book.candidates(rule=rule) == []
    # Three rung-1 results: the best one is promotable to rung 2, before anything at rung 0.
    mids = [book.paused(low[2], 1, v) for v in (0.05, 0.15, 0.25)]
    more = [book.paused(None, 0, v) for v in (0.01, 0.02, 0.03)]
    order = book.candidates(rule=rule)
    assert order[0] == book.candidate_of(mids[0])
    # Six at rung 0, one of them promoted: the quota (6 // 3 = 2) leaves room for one more.
    expected = [more[0]] if rule == "quota" else [more[0], more[1]]
    assert order[1:] == [book.candidate_of(n) for n in expected]


def test_the_quota_keeps_an_improving_rung_at_one_in_eta() -> None:
    """Each newcomer better than all before: eager promotes nearly every one, the quota 1 in 3."""
    promoted: dict[str, int] = {}
    for rule in ("quota", "eager"):
        book = Book()
        for value in [1.0 - i / 100 for i in range(30)]:  # every newcomer the best so far
            book.paused(None, 0, value)
            for ticket in book.candidates(rule=rule):
                parent = next(t.user_attrs[ATTR_PARENT] for t in book.tickets if t._trial_id == ticket)
                book.promote(parent)
        promoted[rule] = sum(t.state == S.COMPLETE for t in book.tickets)
    assert promoted["quota"] == 30 // 3
    assert promoted["eager"] == 28  # all but the first two, each promoted once it is the best of 3+


def test_an_unknown_promotion_rule_names_the_known_ones() -> None:
    book = Book()
    for v in (0.3, 0.2, 0.1):
        book.paused(None, 0, v)
    with pytest.raises(ConfigError, match="unknown promotion rule 'lazy'") as info:
        book.candidates(rule="lazy")
    assert info.value.hint == "available: quota, eager"


def test_a_promotion_waits_for_room_and_then_goes_to_the_best_open_job() -> None:
    book = Book()
    first = [book.paused(None, 0, v) for v in (0.9, 0.8, 0.7)]
    book.promote(first[2])
    later = [book.paused(None, 0, v) for v in (0.6, 0.5)]  # both beat the promoted one: no room yet
    assert book.candidates() == []
    assert book.candidates(rule="eager") == [book.candidate_of(later[1])]
    last = book.paused(None, 0, 0.55)  # six results: room for a second promotion, the best open one
    assert book.candidates() == [book.candidate_of(later[1])]
    assert last not in book.candidates()


def test_diverged_and_failed_jobs_never_rank() -> None:
    book = Book()
    for v in (0.4, 0.3, 0.2, 0.1):
        book.paused(None, 0, v)
    book.trials[0].user_attrs[ATTR_OUTCOME] = "diverged"
    # Killed after it was told "paused" but before the tell landed: failed, re-run as a retry.
    book.trials[3].state = S.FAIL
    assert [e.value for e in rung_table(book.trials)[0]] == [0.2, 0.3]


def test_claim_order_retries_then_promotions_then_slots_by_index() -> None:
    book = Book()
    slot2 = book.slot(2)
    slot0 = book.slot(0)
    best = [book.paused(None, 0, v) for v in (0.3, 0.2, 0.1)][2]
    retry = book.slot(1, retry_of=0)
    order = claim_order(
        book.trials, book.tickets, promotion=True, eta=3, top_rung=2, maximize=False, rule="quota"
    )
    assert order == [("job", retry), ("ticket", book.candidate_of(best)), ("job", slot0), ("job", slot2)]
    assert claim_order(book.trials, promotion=False, eta=3, top_rung=2, maximize=False, rule="quota") == [
        ("job", retry),
        ("job", slot0),
        ("job", slot2),
    ]


def test_tickets_of_failed_jobs_are_void() -> None:
    book = Book()
    kept, killed = book.paused(None, 0, 0.3), book.paused(None, 0, 0.2)
    # The worker of 'killed' died after queueing the ticket, before telling: reaped as FAIL.
    book.trials[killed].state = S.FAIL
    assert void_tickets(book.trials, book.tickets) == [book.candidate_of(killed)]
    assert book.candidate_of(kept) not in void_tickets(book.trials, book.tickets)


def test_rasda_rank_growth() -> None:
    assert [job_ranks(2, k, 2, True, 16) for k in range(5)] == [2, 4, 8, 16, 16]
    assert [job_ranks(2, k, 2, False, 16) for k in range(3)] == [2, 2, 2]
