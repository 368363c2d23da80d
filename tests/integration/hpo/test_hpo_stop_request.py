"""A trial whose training checkpoints at a stop request (SLURM's time-limit warning) goes back to
the study as a checkpointed piece: WAITING, not FAIL, no retry spent; the next worker (the
requeued job) claims it first and continues from that checkpoint under the same trial number."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from mlpfctl.errors import Checkpointed
from mlpfctl.hpo.storage import ATTR_RETRIES
from mlpfctl.hpo.worker import ATTR_RESUME, ATTR_RESUME_STEP

from .hpo_helpers import create_study, load_trials, make_config, run_inprocess

S = optuna.trial.TrialState

# what the MLPF objective does when its training returns "checkpointed"
OBJECTIVE = """
import json
from mlpfctl.hpo.objective import TrialCheckpointed


def stops_once(ctx):
    with (ctx.run_dir / "calls.jsonl").open("a") as log:
        log.write(json.dumps({"resume": str(ctx.resume_from) if ctx.resume_from else None}) + "\\n")
    if ctx.number == 0 and not (ctx.checkpoint_dir / "step-7").exists():
        (ctx.checkpoint_dir / "step-7").write_text("7")
        raise TrialCheckpointed(7, ctx.checkpoint_dir)
    for step in range(ctx.start_step + 50, ctx.budget + 1, 50):
        ctx.report(step, (ctx.params["x"] - 1) ** 2 + 1 / step)
    return (ctx.params["x"] - 1) ** 2 + 1 / ctx.budget
"""


@pytest.mark.parametrize("scheduler", ["none", "asha"])
def test_a_checkpointed_trial_is_given_back_and_continued(
    tmp_path: Path, journal_url: str, scheduler: str
) -> None:
    objective = tmp_path / "stopping.py"
    objective.write_text(OBJECTIVE)
    config = make_config(tmp_path, journal_url, trials=3, sampler="random", scheduler=scheduler)
    config.hpo.objective = f"{objective}:stops_once"
    create_study(config)

    with pytest.raises(Checkpointed, match="stop request"):
        run_inprocess(config)  # the job before the requeue
    (first,) = [t for t in load_trials(config) if t.number == 0]
    assert first.state == S.WAITING
    assert first.user_attrs[ATTR_RESUME] == str(tmp_path / "work" / "trial-00000" / "checkpoint")
    assert first.user_attrs[ATTR_RESUME_STEP] == 7
    assert ATTR_RETRIES not in first.user_attrs
    assert not [t for t in load_trials(config) if t.state == S.FAIL]

    result = run_inprocess(config)  # the requeued job
    assert result.failed == 0
    trials = load_trials(config)
    # (ASHA leaves unpromoted candidates WAITING: issue #12, not this one)
    assert not [t for t in trials if t.state in (S.FAIL, S.RUNNING)]
    assert trials[0].state in (S.COMPLETE, S.PRUNED)
    calls = [json.loads(line) for line in (tmp_path / "work" / "trial-00000" / "calls.jsonl").open()]
    # the same trial, its second call continuing from its own checkpoint; claimed first
    assert [c["resume"] for c in calls] == [None, first.user_attrs[ATTR_RESUME]]
    others = [t for t in trials if t.number != 0]
    assert all(t.datetime_start > trials[0].datetime_start for t in others if t.datetime_start)
