"""Promotion-type ASHA on a deterministic fake objective: rungs, promotions, resumed checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from mlpfctl.hpo.asha import (
    ATTR_CONFIG,
    ATTR_JOB,
    ATTR_OUTCOME,
    ATTR_PARENT,
    ATTR_RANKS,
    ATTR_RUNG,
    queue_name,
    rung_value,
)

from .hpo_helpers import create_study, load_trials, make_config, run_inprocess

S = optuna.trial.TrialState


def _jobs(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if t.state.is_finished() and ATTR_RUNG in t.user_attrs]


def test_asha_promotes_the_top_third_and_resumes_from_the_parent_checkpoint(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = make_config(tmp_path, sqlite_url, trials=9, sampler="random", scheduler="asha")
    create_study(config)
    result = run_inprocess(config)
    trials = load_trials(config)
    jobs = _jobs(trials)
    assert result.failed == 0
    by_rung = {k: [t for t in jobs if t.user_attrs[ATTR_RUNG] == k] for k in (0, 1, 2)}
    # Every configuration ran its bottom rung exactly once.
    assert sorted(t.user_attrs[ATTR_CONFIG] for t in by_rung[0]) == sorted(t.number for t in by_rung[0])
    assert len(by_rung[0]) == 9
    # One sequential worker: a promotion happens as soon as a job is in the top floor(n/3) of its
    # rung, so at least floor(9/3) configurations reach rung 1 and at least floor(|rung1|/3) rung 2.
    assert len(by_rung[1]) >= 3
    assert len(by_rung[2]) >= len(by_rung[1]) // 3 >= 1
    # The top-rung jobs are COMPLETE, the others paused (PRUNED for the samplers).
    assert all(t.state == S.COMPLETE and t.user_attrs[ATTR_OUTCOME] == "top" for t in by_rung[2])
    assert all(
        t.state == S.PRUNED and t.user_attrs[ATTR_OUTCOME] == "paused" for t in by_rung[0] + by_rung[1]
    )
    numbers = {t.number: t for t in trials}
    for job in by_rung[1] + by_rung[2]:
        parent = numbers[job.user_attrs[ATTR_PARENT]]
        assert parent.params == job.params
        assert parent.user_attrs[ATTR_RUNG] == job.user_attrs[ATTR_RUNG] - 1
        # The promoted job's curve continues the parent's (copied, then extended).
        assert set(parent.intermediate_values) < set(job.intermediate_values)
        calls = [
            json.loads(line)
            for line in (tmp_path / "work" / f"trial-{job.number:05d}" / "calls.jsonl").open()
        ]
        assert calls == [
            {
                "pid": calls[0]["pid"],
                "start": [50, 150][job.user_attrs[ATTR_RUNG] - 1],
                "budget": [150, 450][job.user_attrs[ATTR_RUNG] - 1],
            }
        ]
    # Promotion respects the ranking: the best bottom-rung configuration reached the top.
    best0 = min(by_rung[0], key=lambda t: rung_value(t) or 1e9)
    assert best0.user_attrs[ATTR_CONFIG] in {t.user_attrs[ATTR_CONFIG] for t in by_rung[2]}
    # Nothing is left running or WAITING in the study (study.ask() would pop it). Each paused
    # configuration that was not promoted keeps a WAITING ticket in the companion study, for a
    # later --resume; each promotion used exactly one ticket.
    assert not [t for t in trials if t.state in (S.RUNNING, S.WAITING)]
    tickets = load_trials(config, queue_name(config.hpo.study))
    promoted = {t.user_attrs[ATTR_PARENT] for t in by_rung[1] + by_rung[2]}
    paused = {t.number for t in by_rung[0] + by_rung[1]}
    waiting = sorted(t.user_attrs[ATTR_PARENT] for t in tickets if t.state == S.WAITING)
    used = [t for t in tickets if t.state == S.COMPLETE]
    assert waiting == sorted(paused - promoted)
    assert sorted(t.user_attrs[ATTR_PARENT] for t in used) == sorted(promoted)
    assert {t.user_attrs[ATTR_JOB] for t in used} == {t.number for t in by_rung[1] + by_rung[2]}


def test_rasda_gives_promoted_jobs_eta_times_more_ranks(tmp_path: Path, sqlite_url: str) -> None:
    config = make_config(
        tmp_path,
        sqlite_url,
        trials=6,
        sampler="random",
        scheduler="rasda",
        reduction_factor=2,
        min_resource=100,
        max_resource=400,
        max_ranks_per_trial=3,
    )
    create_study(config)
    run_inprocess(config)
    jobs = _jobs(load_trials(config))
    ranks = {int(t.user_attrs[ATTR_RUNG]): int(t.user_attrs[ATTR_RANKS]) for t in jobs}
    assert ranks[0] == 1 and ranks[1] == 2 and ranks[2] == 3  # 1, 2, 4 capped at 3


def test_sha_and_hyperband_prune_and_complete(tmp_path: Path, sqlite_url: str) -> None:
    for index, scheduler in enumerate(("sha", "hyperband", "median")):
        config = make_config(
            tmp_path,
            sqlite_url,
            study=f"s{index}",
            trials=12,
            sampler="tpe",
            scheduler=scheduler,
        )
        create_study(config)
        run_inprocess(config)
        states = [t.state for t in load_trials(config)]
        assert states.count(S.COMPLETE) + states.count(S.PRUNED) == 12, scheduler
        assert states.count(S.COMPLETE) >= 1, scheduler


def test_diverging_trials_are_pruned_and_the_study_continues(tmp_path: Path, sqlite_url: str) -> None:
    config = make_config(
        tmp_path, sqlite_url, trials=10, sampler="random", scheduler="none", objective="diverging"
    )
    create_study(config)
    run_inprocess(config)
    trials = load_trials(config)
    diverged = [t for t in trials if t.user_attrs.get(ATTR_OUTCOME) == "diverged"]
    assert diverged and all(t.state == S.PRUNED and t.params["x"] > 3 for t in diverged)
    assert len([t for t in trials if t.state == S.COMPLETE]) == 10 - len(diverged)


def test_multi_objective_nsga2(tmp_path: Path, sqlite_url: str) -> None:
    config = make_config(
        tmp_path,
        sqlite_url,
        trials=10,
        sampler="nsga2",
        scheduler="none",
        objective="two_objectives",
        directions=["minimize", "maximize"],
    )
    create_study(config)
    run_inprocess(config)
    complete = [t for t in load_trials(config) if t.state == S.COMPLETE]
    assert len(complete) == 10 and all(len(t.values) == 2 for t in complete)


def test_resume_with_more_trials_promotes_configurations_paused_before(
    tmp_path: Path, sqlite_url: str
) -> None:
    # Seed 1: under the quota rule a configuration paused before is promoted only if it is the best
    # open one when its rung gains room; with seed 0 the new configurations beat all of them.
    config = make_config(tmp_path, sqlite_url, trials=6, sampler="random", scheduler="asha", seed=1)
    create_study(config)
    run_inprocess(config)
    before = load_trials(config)
    paused = {t.number for t in before if t.user_attrs.get(ATTR_OUTCOME) == "paused"}
    continued = {t.user_attrs.get(ATTR_PARENT) for t in before}
    still_paused = paused - continued
    assert still_paused  # 6 configurations: most stay paused below the top
    bigger = make_config(tmp_path, sqlite_url, trials=15, sampler="random", scheduler="asha", seed=1)
    create_study(bigger, resume=True)
    run_inprocess(bigger)
    after = load_trials(bigger)
    # The rungs grew with the new configurations, so some configurations paused in the first
    # campaign were promoted in the second one (from their tickets, resuming their checkpoints).
    promoted_now = {t.user_attrs.get(ATTR_PARENT) for t in after if t.number >= len(before)}
    assert still_paused & promoted_now
    assert sorted(t.user_attrs["mlpfctl.slot"] for t in after if t.user_attrs.get(ATTR_RUNG) == 0) == list(
        range(15)
    )
    assert not [t for t in after if t.state in (S.RUNNING, S.WAITING)]
    # The quota held across the two campaigns: 15 bottom-rung results, at most 5 promoted from them.
    bottom = {t.number for t in after if t.user_attrs.get(ATTR_RUNG) == 0}
    assert 1 <= len({t.user_attrs.get(ATTR_PARENT) for t in after} & bottom) <= 15 // 3


def test_status_counts_configurations_and_jobs_separately(tmp_path: Path, sqlite_url: str) -> None:
    from mlpfctl.hpo import report

    config = make_config(tmp_path, sqlite_url, trials=9, sampler="random", scheduler="asha")
    create_study(config)
    run_inprocess(config)
    study, settings = report.load(sqlite_url, config.hpo.study)
    info = report.summary(study, settings)
    configs = info["configurations"]
    jobs = _jobs(load_trials(config))
    assert sum(configs.values()) == 9  # every configuration once, whatever its number of jobs
    assert configs["finished"] == len([t for t in jobs if t.user_attrs[ATTR_RUNG] == 2])
    paused = sum(v for k, v in configs.items() if k.startswith("paused@"))
    assert paused == info["promotion_tickets"] == 9 - configs["finished"]
    assert sum(info["states"].values()) == len(jobs) > 9
