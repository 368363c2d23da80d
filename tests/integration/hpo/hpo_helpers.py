"""Helpers for HPO integration tests: build settings, create studies, run in-process workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpfctl.config import Override, resolve

FAKE = Path(__file__).with_name("hpo_fake_objectives.py")


def argv(text: str) -> list[str]:
    """Command-line words of ``text`` (test paths have no spaces)."""
    return text.split()


# Rungs 50, 150, 450 (the fake objectives report every 50 steps).
RUNGS = ["--min-resource", "50", "--max-resource", "450", "--eta", "3"]


def make_config(tmp_path: Path, storage: str, study: str = "s", objective: str = "curve", **hpo: Any) -> Any:
    values: dict[str, Any] = {
        "storage": storage,
        "study": study,
        "space": "quadratic",
        "objective": f"{FAKE}:{objective}",
        "min_resource": 50,
        "max_resource": 450,
        "reduction_factor": 3,
        "heartbeat_interval": 0.5,
        "grace_period": 2.0,
        "poll_interval": 0.1,
        "workdir": str(tmp_path / "work"),
    }
    values.update(hpo)
    overrides = [Override(f"hpo.{k}", v, "test") for k, v in values.items()]
    overrides.append(Override("run.out_dir", str(tmp_path / "runs"), "test"))
    return resolve(None, overrides, env={}, cwd=tmp_path).config


def create_study(config: Any, resume: bool = False) -> Any:
    from mlpfctl.hpo.driver import RunRequest, prepare_study
    from mlpfctl.hpo.settings import StudySettings
    from mlpfctl.hpo.storage import parse_url

    request = RunRequest(
        parse_url(config.hpo.storage),
        config.hpo.study,
        StudySettings.from_config(config, config.hpo.study),
        config.hpo.workers,
        resume,
        env={"MLPFCTL_HPO_NO_DEVICE_PROBE": "1"},
    )
    return prepare_study(request)


def run_inprocess(config: Any, worker_index: int = 0) -> Any:
    from mlpfctl.hpo.storage import parse_url
    from mlpfctl.hpo.worker import WorkerRequest, run_worker

    return run_worker(WorkerRequest(parse_url(config.hpo.storage), config.hpo.study, worker_index))


def load_trials(config: Any, study: str | None = None) -> list[Any]:
    """The trials of the config's study (or of ``study`` in the same storage)."""
    import optuna

    from mlpfctl.hpo.storage import open_storage, parse_url

    storage = open_storage(
        parse_url(config.hpo.storage), heartbeat_interval=60, grace_period=120, max_retry=0
    )
    return optuna.load_study(study_name=study or config.hpo.study, storage=storage).get_trials()
