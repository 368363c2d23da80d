"""mlpfctl.hpo.optuna_api (the only place that touches Optuna's private API) on every storage."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from mlpfctl.hpo import optuna_api as api
from mlpfctl.hpo.storage import open_storage, parse_url

S = optuna.trial.TrialState


@pytest.fixture(params=["sqlite", "journal", pytest.param("postgresql", marks=pytest.mark.postgres)])
def study(request: pytest.FixtureRequest, tmp_path: Path) -> optuna.Study:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'api.db'}"
    elif request.param == "journal":
        url = f"journal://{tmp_path / 'api.log'}"
    else:
        url = request.getfixturevalue("postgres_url")
    storage = open_storage(parse_url(url), heartbeat_interval=60, grace_period=120, max_retry=0)
    name = f"api-{abs(hash(str(tmp_path))) % 10**8}"
    return optuna.create_study(study_name=name, storage=storage)


def test_claim_is_won_once_and_never_on_a_finished_trial(study: optuna.Study) -> None:
    study.enqueue_trial({})
    (queued,) = study.get_trials(states=(S.WAITING,))
    ident = api.trial_id(queued)
    assert api.claim(study, ident) is True
    assert api.claim(study, ident) is False  # already RUNNING: the second claimant loses
    assert api.get(study, ident).state == S.RUNNING
    assert api.give_back(study, ident) is True  # checkpointed at a stop request: WAITING again
    assert api.claim(study, ident) is True
    assert api.finish(study, ident, S.FAIL) is True
    assert api.finish(study, ident, S.COMPLETE, [1.0]) is False  # finished: nobody wins again
    assert api.give_back(study, ident) is False
    assert api.claim(study, ident) is False
    assert api.get(study, ident).state == S.FAIL


def test_create_a_running_trial_and_write_to_it(study: optuna.Study) -> None:
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    template = optuna.trial.create_trial(
        state=S.RUNNING, params={"x": 0.25}, distributions=dist, user_attrs={"mlpfctl.kind": "promotion"}
    )
    ident = api.create(study, template)
    api.set_intermediate(study, ident, 30, 0.5)
    api.set_user_attr(study, ident, "mlpfctl.rung", 1)
    frozen = api.get(study, ident)
    assert frozen.state == S.RUNNING and frozen.params == {"x": 0.25}
    assert frozen.intermediate_values == {30: 0.5}
    assert frozen.user_attrs == {"mlpfctl.kind": "promotion", "mlpfctl.rung": 1}
    assert api.trial_id(study.get_trials()[frozen.number]) == ident
    assert api.finish(study, ident, S.PRUNED) is True
    assert study.get_trials()[frozen.number].state == S.PRUNED
