"""``mlpfctl submit`` against a real SLURM (scripts/local-slurm.sh): test-only of every rendered
script, and jobs that run end to end.

The end-to-end jobs for ``train`` and ``hpo`` call the real ``mlpfctl train`` / ``mlpfctl hpo``
commands and skip (saying so) while those commands are not part of this installation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mlpfctl.systems.discover import with_discovered
from mlpfctl.systems.examples import example_request
from mlpfctl.systems.profiles import load_profile, profile_files
from mlpfctl.systems.render import render
from mlpfctl.systems.request import KINDS
from mlpfctl.systems.runner import run_command
from tests.helpers import run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("local_slurm")]
SYSTEMS = sorted(profile_files({}))
HOSTILE = 'it\'s a "job" $(touch PWNED); `touch PWNED2` %x #1'
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("system", SYSTEMS)
def test_sbatch_accepts_every_rendered_script(system: str, kind: str, tmp_path: Path) -> None:
    profile = with_discovered(load_profile(system, {}), run_command)
    # one node: the local cluster has one (multi-node scripts differ only in --nodes)
    request = example_request(profile, kind, nodes=1, out_dir=str(tmp_path), python=sys.executable)
    script = tmp_path / f"{system}-{kind}.sh"
    script.write_text(render(profile, request))
    proc = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"sbatch --test-only rejected the {system} {kind} script: {proc.stderr}"


def submit_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "MLPFCTL_RUN__OUT_DIR": str(tmp_path / "runs"),
        "MLPFCTL_SUBMIT__REGISTRY": str(tmp_path / "jobs.jsonl"),
        "MLPFCTL_SUBMIT__SYSTEM": "local",
        "MLPFCTL_SUBMIT__GPUS_PER_NODE": "0",
        "MLPFCTL_SUBMIT__CPUS_PER_TASK": "1",
        "MLPFCTL_SUBMIT__TASKS_PER_NODE": "2",
        "MLPFCTL_SUBMIT__VENV": sys.prefix,
        "GLOO_SOCKET_IFNAME": "lo",
        **extra,
    }


def submit(tmp_path: Path, *argv: str, **env: str) -> dict[str, Any]:
    proc = run_cli("submit", "--json", *argv, env=submit_env(tmp_path, **env), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def job_row(tmp_path: Path, job_id: str) -> dict[str, Any]:
    proc = run_cli("jobs", "--json", env=submit_env(tmp_path), cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return next(r for r in json.loads(proc.stdout) if r["job_id"] == job_id)


def wait_done(tmp_path: Path, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row = job_row(tmp_path, job_id)
        if row["state"] in TERMINAL:
            return row
        assert time.monotonic() < deadline, f"job {job_id} still {row['state']} after {timeout} s"
        time.sleep(1)


def logs(tmp_path: Path, job_id: str) -> str:
    proc = run_cli("logs", job_id, env=submit_env(tmp_path), cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_two_task_gloo_job_via_runenv(tmp_path: Path) -> None:
    """The rendered training launcher (srun, one task per process) on a real cluster: both ranks
    find each other through RunEnv and all-reduce; the hostile job name survives sbatch as text."""
    record = submit(tmp_path, "--job-name", HOSTILE, "--time", "10", "--", "check")
    row = wait_done(tmp_path, record["job_id"], timeout=240)
    text = logs(tmp_path, record["job_id"])
    assert row["state"] == "COMPLETED", text
    assert text.count(" sum 3 OK") == 2, text
    assert "source slurm" in text
    info = subprocess.run(["scontrol", "show", "job", "-o", record["job_id"]], capture_output=True, text=True)
    assert f"JobName={HOSTILE} UserId=" in info.stdout
    assert not list(tmp_path.rglob("PWNED*"))


def test_cancel(tmp_path: Path) -> None:
    record = submit(tmp_path, "--time", "10", "--", "check")
    proc = run_cli("cancel", record["job_id"], env=submit_env(tmp_path), cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert wait_done(tmp_path, record["job_id"], timeout=60)["state"] == "CANCELLED"


def test_impossible_request_is_refused_before_sbatch(tmp_path: Path) -> None:
    proc = run_cli(
        "submit", "--partition", "nosuch", "--", "check", env=submit_env(tmp_path), cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 2 and "no partition 'nosuch'" in proc.stderr
    assert not (tmp_path / "jobs.jsonl").exists()


def _command_missing(*words: str) -> str | None:
    proc = subprocess.run([sys.executable, "-m", "mlpfctl", *words, "--help"], capture_output=True, text=True)
    return None if proc.returncode == 0 else f"`mlpfctl {' '.join(words)}` is not in this installation yet"


def _generated(tmp_path: Path) -> Path:
    """A 200-event dataset (Pythia8 + detector simulation, a few seconds)."""
    try:
        from mlpfctl.data.generate import generate_dataset  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pytest.skip("mlpfctl.data.generate is not in this installation yet")
    data = tmp_path / "data"
    generate_dataset(data, process="ee_ttbar", events=200, seed=1)
    return data


def _submit_training(tmp_path: Path, minutes: int, steps: int) -> dict[str, Any]:
    """A 2-task CPU (gloo) training job on a freshly generated 200-event dataset."""
    if reason := _command_missing("train"):
        pytest.skip(reason)
    data = _generated(tmp_path)
    train = ["train", "--data", str(data), "--steps", str(steps), "--backend", "cpu", "--preset", "tiny"]
    return submit(tmp_path, "--time", str(minutes), "--", *train)


@pytest.mark.slow
def test_two_task_gloo_ddp_training_job(tmp_path: Path) -> None:
    record = _submit_training(tmp_path, minutes=20, steps=4)
    row = wait_done(tmp_path, record["job_id"], timeout=900)
    assert row["state"] == "COMPLETED", logs(tmp_path, record["job_id"])
    run_dir = Path(record["run_dir"])
    assert list(run_dir.glob("**/*.pt")) or list(run_dir.glob("**/checkpoint*"))


@pytest.mark.slow
def test_warning_signal_checkpoints_requeues_and_finishes(tmp_path: Path) -> None:
    record = _submit_training(tmp_path, minutes=30, steps=300)
    job_id = record["job_id"]
    metrics = Path(record["run_dir"]) / "metrics.jsonl"
    deadline = time.monotonic() + 600
    while not (metrics.exists() and '"step"' in metrics.read_text()):  # training is under way
        assert time.monotonic() < deadline, "training never started"
        time.sleep(1)
    # exactly what --signal=B:USR1@N does at the warning time, without waiting for it
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True, timeout=30)
    row = wait_done(tmp_path, job_id, timeout=1200)
    text = logs(tmp_path, job_id)
    assert row["state"] == "COMPLETED", text
    assert row["restarts"] >= 1 and "requeueing job" in text, text
    steps = [json.loads(line).get("step", 0) for line in metrics.read_text().splitlines() if line.strip()]
    assert max(steps) == 300  # the requeued run resumed and finished


@pytest.mark.slow
def test_scale_bench_job_measures_every_world_size(tmp_path: Path) -> None:
    if reason := _command_missing("scale-bench", "train"):
        pytest.skip(reason)
    data = _generated(tmp_path)
    out = tmp_path / "scale"
    bench = ["scale-bench", "train", "--data", str(data), "--steps", "2", "--warmup", "1", "--backend", "cpu"]
    record = submit(tmp_path, "--time", "20", "--", *bench, "--out", str(out), "--set", "model.preset=tiny")
    row = wait_done(tmp_path, record["job_id"], timeout=900)
    text = logs(tmp_path, record["job_id"])
    assert row["state"] == "COMPLETED", text
    assert "scale point: 1 processes" in text and "scale point: 2 processes" in text
    assert sorted(p.name for p in out.glob("*world_size*.json")) == [
        "train-strong-world_size1.json",
        "train-strong-world_size2.json",
    ]


def quadratic(ctx: Any) -> float:
    """A trivial objective for the generic ``--objective`` hook of ``mlpfctl hpo``."""
    return float((ctx.params["x"] - 1.0) ** 2 + (ctx.params["y"] + 1.0) ** 2)


@pytest.mark.slow
def test_hpo_two_workers_share_one_study(tmp_path: Path) -> None:
    for words in (("hpo", "run"), ("hpo", "worker")):
        if reason := _command_missing(*words):
            pytest.skip(reason)
    hpo = ["hpo", "--space", "quadratic", "--objective", f"{__name__}:quadratic", "--trials", "6"]
    hpo += ["--sampler", "random", "--scheduler", "none"]
    record = submit(
        tmp_path,
        "--time",
        "20",
        "--set",
        "submit.hpo_workers=2",
        "--",
        *hpo,
        PYTHONPATH=os.pathsep.join(sys.path),
    )
    row = wait_done(tmp_path, record["job_id"], timeout=900)
    text = logs(tmp_path, record["job_id"])
    assert row["state"] == "COMPLETED", text
    assert "worker 0" in text and "worker 1" in text, text
    journal = Path(record["run_dir"]) / "optuna-journal.log"

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="mlpf", storage=JournalStorage(JournalFileBackend(str(journal))))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 6
