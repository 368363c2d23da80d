"""Two real HPO worker processes never share a device: the driver partitions the backend's pool.

The driver runs in this process with the accelerator faked at the probe boundary (a ROCm node);
the workers are real ``mlpfctl hpo worker`` processes running a real Optuna study, and every
trial holds exclusive locks on the device ids its environment gives it.
"""

from __future__ import annotations

import itertools
import json
import os
import types
from pathlib import Path
from typing import Any

import pytest

from mlpfctl.backends import probes
from mlpfctl.config import Override, resolve
from mlpfctl.hpo.driver import RunRequest, run_driver
from mlpfctl.hpo.settings import StudySettings
from mlpfctl.hpo.storage import parse_url

OBJECTIVE = Path(__file__).with_name("slot_objective.py")


def _config(tmp_path: Path, workers: int, ranks: int) -> Any:
    values: dict[str, Any] = {
        "storage": f"sqlite:///{tmp_path / 'study.db'}",
        "study": "slots",
        "space": "quadratic",
        "objective": f"{OBJECTIVE}:hold_devices",
        "scheduler": "none",
        "sampler": "random",
        "trials": 8,
        "workers": workers,
        "ranks_per_trial": ranks,
        "poll_interval": 0.1,
        "workdir": str(tmp_path / "work"),
    }
    overrides = [Override(f"hpo.{k}", v, "test") for k, v in values.items()]
    overrides.append(Override("run.out_dir", str(tmp_path / "runs"), "test"))
    return resolve(None, overrides, env={}, cwd=tmp_path).config


def _rocm_node(monkeypatch: pytest.MonkeyPatch, gcds: int) -> None:
    fake = types.SimpleNamespace(version=types.SimpleNamespace(cuda=None, hip="6.2.41133"))
    monkeypatch.setattr(probes, "torch_module", lambda: fake)
    monkeypatch.setattr(probes, "cuda_device_count", lambda: gcds)
    monkeypatch.setattr(probes, "rocm_smi", lambda: None)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bound", "pool"),
    [
        (None, {"0", "1", "2", "3"}),  # nothing set: the ROCm probe counts 4 GCDs, ROCR is set
        ("4,5,6,7", {"4", "5", "6", "7"}),  # SLURM bound 4 GCDs of 8 (LUMI): its binding is narrowed
    ],
)
def test_two_workers_never_share_a_device(
    bound: str | None, pool: set[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _rocm_node(monkeypatch, 4 if bound is None else 8)
    slots = tmp_path / "slots"
    slots.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_VISIBLE_DEVICES")}
    env |= {"SLOT_DIR": str(slots), "SLOT_VAR": "ROCR_VISIBLE_DEVICES", "OMP_NUM_THREADS": "1"}
    if bound is not None:
        env["ROCR_VISIBLE_DEVICES"] = bound
    cfg = _config(tmp_path, workers=2, ranks=2)
    request = RunRequest(
        parse_url(cfg.hpo.storage), "slots", StudySettings.from_config(cfg, "slots"), 2, env=env
    )
    result = run_driver(request)
    assert result.worker_exit_codes == [0, 0] and result.states == {"COMPLETE": 8}

    trials = [json.loads(line) for line in (slots / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 8
    assert all(not t["shared"] for t in trials), trials  # no lock was ever held by another trial
    assert all(len(t["ids"]) == 2 for t in trials)  # each trial gets its 2 ranks' devices
    by_worker: dict[int, set[str]] = {}
    for t in trials:
        by_worker.setdefault(t["pid"], set()).update(t["ids"])
    assert len(by_worker) == 2  # both workers ran trials
    first, second = by_worker.values()
    assert not first & second and first | second == pool
    # The workers really ran side by side: otherwise "never shared" would prove nothing.
    overlaps = [
        (a, b)
        for a, b in itertools.combinations(trials, 2)
        if a["pid"] != b["pid"] and a["start"] < b["end"] and b["start"] < a["end"]
    ]
    assert overlaps
