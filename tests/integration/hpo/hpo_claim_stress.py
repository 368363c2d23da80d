"""Claims WAITING trials as fast as it can; prints the ids it won (a test input, run as a process)."""

from __future__ import annotations

import json
import sys

import optuna

from mlpfctl.hpo import optuna_api as api
from mlpfctl.hpo.storage import open_storage, parse_url

optuna.logging.set_verbosity(optuna.logging.ERROR)
storage = open_storage(parse_url(sys.argv[1]), heartbeat_interval=60, grace_period=120, max_retry=0)
study = optuna.load_study(study_name=sys.argv[2], storage=storage)
won: list[int] = []
while True:
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    if not waiting:
        break
    for trial in waiting[:3]:
        try:
            if api.claim(study, api.trial_id(trial)):
                won.append(api.trial_id(trial))
                break
        except optuna.exceptions.StorageInternalError:
            continue
print(json.dumps(won))
