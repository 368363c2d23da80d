"""``mlpfctl submit`` against a real SLURM (scripts/local-slurm.sh): test-only of every rendered
script, and jobs that run end to end.

The end-to-end jobs for ``train`` and ``hpo`` call the real ``mlpfctl train`` / ``mlpfctl hpo``
commands and skip (saying so) while those commands are not part of this installation.
"""

from __future__ import annotations

import json
import os
import re
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


# ---- the time-limit warning, for real: SLURM signals the batch script submit.warning_seconds
# before the limit; the job stops the training at a step, checkpoints, requeues and resumes there.
# The local SLURM's minimum --time is 1 minute and a requeued job waits ~2 minutes before it starts
# again, so each of these takes 4-5 minutes.

WARNED_TIME = ["--time", "3", "--set", "submit.warning_seconds=90"]  # the warning 90 s after start
NEVER = ["--set", "train.checkpoint_every=1000000", "--set", "train.val_every=1000000"]


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _wait_for(what: str, predicate: Any, timeout: float, job_id: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], check=False)
            pytest.fail(f"job {job_id}: no {what} after {timeout:.0f} s")
        time.sleep(1)


def _steps(metrics: Path) -> list[int]:
    lines = [json.loads(line) for line in _text(metrics).splitlines() if line.strip()]
    return [int(r["step"]) for r in lines if r.get("kind") == "train"]


def _check_resume_at_the_warning_step(record: dict[str, Any], metrics: Path, result: Path) -> tuple[int, int]:
    """Wait for the warning, the checkpoint and the requeue, then for the resumed run; return
    (warning step, resume step). The resumed run is cancelled once it has shown where it started."""
    job_id, log = record["job_id"], Path(record["run_dir"]) / f"slurm-{record['job_id']}.out"
    try:
        _wait_for("requeue", lambda: "requeueing job" in _text(log), 600, job_id)
        text = _text(log)
        # the srun client is never signalled: no "forcing job termination" (srun --kill-on-bad-exit
        # may still end the last rank after the barrier, once the checkpoint is written)
        assert "time-limit warning" in text and "forcing job termination" not in text, text
        stopped = json.loads(_text(result)) if result.exists() else {}
        warning_step = int(stopped.get("step", -1))
        assert stopped.get("status") == "checkpointed" and warning_step > 0, (stopped, text)
        before = _steps(metrics)
        assert before and before[-1] == warning_step, (before[-5:], warning_step)
        match = _wait_for(
            "resumed run", lambda: re.search(r"resum\w* (?:at|from) step (\d+)", _text(log)), 420, job_id
        )
        resume_step = int(match.group(1))
        _wait_for("step after the resume", lambda: len(_steps(metrics)) > len(before), 300, job_id)
        after = _steps(metrics)
        # no step twice, none missing: the resumed run continued exactly after the warning step
        assert after == list(range(after[0], after[-1] + 1)), after
        return warning_step, resume_step
    finally:
        subprocess.run(["scancel", job_id], check=False)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["srun", "torchrun"])
def test_time_limit_warning_checkpoints_requeues_and_resumes_at_that_step(
    tmp_path: Path, launcher: str
) -> None:
    if reason := _command_missing("train"):
        pytest.skip(reason)
    data = _generated(tmp_path)
    train = ["train", "--data", str(data), "--steps", "1000000", "--backend", "cpu", "--preset", "tiny"]
    train += [*NEVER, "--set", "train.log_every=1"]
    record = submit(tmp_path, *WARNED_TIME, "--launcher", launcher, "--", *train)
    run_dir = Path(record["run_dir"])
    warning_step, resume_step = _check_resume_at_the_warning_step(
        record, run_dir / "metrics.jsonl", run_dir / "result.json"
    )
    assert resume_step == warning_step
    assert list((run_dir / "checkpoints").glob(f"*{warning_step}*")), list(run_dir.rglob("*"))
    assert job_row(tmp_path, record["job_id"])["restarts"] >= 1


@pytest.mark.slow
def test_time_limit_warning_gives_the_hpo_trial_back_and_the_requeued_job_continues_it(
    tmp_path: Path,
) -> None:
    for words in (("hpo", "run"), ("hpo", "worker"), ("train",)):
        if reason := _command_missing(*words):
            pytest.skip(reason)
    data = _generated(tmp_path)
    hpo = ["hpo", "--trials", "1", "--sampler", "random", "--scheduler", "none", "--max-resource", "1000000"]
    hpo += ["--set", f"data.path={data}", "--set", "model.preset=tiny", "--set", "run.backend=cpu"]
    hpo += [*NEVER, "--set", "train.log_every=1"]
    record = submit(tmp_path, *WARNED_TIME, "--set", "submit.hpo_workers=1", "--", *hpo)
    trial = Path(record["run_dir"]) / "hpo" / "mlpf" / "trial-00000" / "checkpoint"
    job_id, log = record["job_id"], Path(record["run_dir"]) / f"slurm-{record['job_id']}.out"
    try:
        _wait_for("requeue", lambda: "requeueing job" in _text(log), 600, job_id)
        text = _text(log)
        given = re.search(r"trial 0 checkpointed at step (\d+)", text)
        assert given and "forcing job termination" not in text, text
        warning_step = int(given.group(1))
        before = _steps(trial / "metrics.jsonl")
        assert warning_step > 0 and before[-1] == warning_step, (before[-5:], text)
        resumed = _wait_for(
            "resumed trial",
            lambda: re.search(r"trial 0 continues from its checkpoint at step (\d+)", _text(log)),
            420,
            job_id,
        )
        assert int(resumed.group(1)) == warning_step
        _wait_for(
            "step after the resume", lambda: len(_steps(trial / "metrics.jsonl")) > len(before), 300, job_id
        )
        after = _steps(trial / "metrics.jsonl")
        assert after[len(before)] == warning_step + 1  # the training itself restarted at the warning step
        assert after == list(range(after[0], after[-1] + 1)), after
    finally:
        subprocess.run(["scancel", job_id], check=False)
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = Path(record["run_dir"]) / "optuna-journal.log"
    study = optuna.load_study(study_name="mlpf", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]


def test_a_bad_job_is_refused_before_anything_is_queued(tmp_path: Path) -> None:
    for job in (["hpo", "--data", "X"], ["train", "--steps", "-1"]):
        proc = run_cli("submit", "--", *job, env=submit_env(tmp_path), cwd=tmp_path, timeout=120)
        assert proc.returncode == 2 and f"{job[0]} job:" in proc.stderr, proc.stderr
    # sbatch runs only after the job script is written into its run directory and before the
    # registry records it: neither exists
    assert not (tmp_path / "runs").exists() and not (tmp_path / "jobs.jsonl").exists()


def test_cancel_of_a_job_id_slurm_does_not_know(tmp_path: Path) -> None:
    proc = run_cli("cancel", "987654321", env=submit_env(tmp_path), cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no job 987654321"), proc.stderr


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
