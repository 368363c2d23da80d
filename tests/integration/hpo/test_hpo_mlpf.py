"""The MLPF training objective end to end: ASHA resumes real checkpoints; a 2-rank trial reports
from rank 0 and stops together. Skipped until the training and data layers are installed."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from mlpfctl.config import resolve
from tests.helpers import run_cli

from .hpo_helpers import argv

pytest.importorskip("mlpfctl.train.api", reason="needs the training layer (mlpfctl.train)")

ENV = {"MLPFCTL_HPO_NO_DEVICE_PROBE": "1"}


@pytest.fixture(scope="session")
def hpo_ttbar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    generate = pytest.importorskip("mlpfctl.data.generate", reason="needs the event generator")
    pytest.importorskip("pythia8mc", reason="event generation needs the physics extra (pythia8mc)")
    out = tmp_path_factory.mktemp("hpo_ttbar")
    generate.generate_dataset(out, process="ee_ttbar", events=240, seed=11)
    return out


def _args(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    tiny = "--set model.preset=tiny --set train.val_every=10 --set train.progress=false"
    splits = "--set data.valid_fraction=0.15 --set data.test_fraction=0.15"
    where = f"--storage sqlite:///{tmp_path / 'hpo.db'} --study mlpf --set hpo.workdir={tmp_path / 'work'}"
    return [*argv(f"hpo run --space mlpf-small {where} --set data.path={data} {tiny} {splits}"), *extra]


@pytest.mark.slow
def test_asha_on_mlpf_resumes_checkpoints_and_exports_a_train_config(tmp_path: Path, hpo_ttbar: Path) -> None:
    proc = run_cli(
        *_args(
            tmp_path,
            hpo_ttbar,
            *argv("--sampler random --scheduler asha --trials 3 --workers 1"),
            *argv(f"--min-resource 10 --max-resource 30 --eta 3 --report {tmp_path / 'report'}"),
        ),
        env=ENV,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    trials = optuna.load_study(study_name="mlpf", storage=storage).get_trials()
    top = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(top) == 1 and top[0].user_attrs["mlpfctl.rung"] == 1
    # The promoted piece continued the parent's run: its first training record is after step 10.
    metrics = tmp_path / "work" / f"trial-{top[0].number:05d}" / "checkpoint" / "metrics.jsonl"
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if '"train"' in line]
    assert steps and min(steps) > 10 and max(steps) <= 30
    best = tmp_path / "report" / "best_config.toml"
    config = resolve(best, env={}).config
    assert config.train.steps == 30  # type: ignore[attr-defined]
    assert config.train.lr == pytest.approx(top[0].params["train.lr"])  # type: ignore[attr-defined]


@pytest.mark.slow
def test_two_rank_trials_prune_together(tmp_path: Path, hpo_ttbar: Path) -> None:
    proc = run_cli(
        *_args(
            tmp_path,
            hpo_ttbar,
            *argv("--sampler random --scheduler sha --trials 2 --workers 1 --ranks-per-trial 2"),
            *argv("--min-resource 10 --max-resource 20 --eta 2 --set run.backend=cpu"),
        ),
        env=ENV,
        cwd=tmp_path,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    trials = optuna.load_study(study_name="mlpf", storage=f"sqlite:///{tmp_path / 'hpo.db'}").get_trials()
    states = [t.state for t in trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) + states.count(optuna.trial.TrialState.PRUNED) == 2
    assert all(t.user_attrs["mlpfctl.ranks"] == 2 for t in trials)


@pytest.mark.slow
def test_multi_objective_val_loss_against_jet_iqr(tmp_path: Path, hpo_ttbar: Path) -> None:
    """HPO optimises physics directly: each trial reports its validation loss and jet-response IQR."""
    proc = run_cli(
        *_args(
            tmp_path,
            hpo_ttbar,
            *argv("--sampler nsga2 --scheduler none --trials 2 --workers 1"),
            *argv("--min-resource 20 --max-resource 20"),
            *argv("--set hpo.metrics=val_loss,jet_iqr --set hpo.directions=minimize,minimize"),
        ),
        env=ENV,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    study = optuna.load_study(study_name="mlpf", storage=f"sqlite:///{tmp_path / 'hpo.db'}")
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
    for trial in done:
        val_loss, jet_iqr = trial.values
        assert val_loss > 0 and 0 < jet_iqr < 2
        history = tmp_path / "work" / f"trial-{trial.number:05d}" / "checkpoint" / "metrics.jsonl"
        valid = [json.loads(x) for x in history.read_text().splitlines() if '"valid"' in x]
        assert valid[-1]["jet_response_iqr"] == pytest.approx(jet_iqr)
