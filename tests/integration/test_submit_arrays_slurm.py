"""Array jobs, dependencies and ``--wait`` on a real SLURM (scripts/local-slurm.sh)."""

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
from mlpfctl.systems.profiles import load_profile
from mlpfctl.systems.render import render
from mlpfctl.systems.runner import run_command
from tests.helpers import run_cli
from tests.integration.test_submit_slurm import SYSTEMS, TERMINAL, submit, submit_env

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("local_slurm")]
OBJECTIVES = Path(__file__).resolve().parent / "hpo" / "hpo_fake_objectives.py"


@pytest.mark.parametrize("system", SYSTEMS)
def test_sbatch_accepts_every_rendered_array_and_container_script(system: str, tmp_path: Path) -> None:
    profile = with_discovered(load_profile(system, {}), run_command)
    for name, submit_keys in {
        "array": {"array": "8%2"},
        "container": {"container": str(tmp_path / "mlpfctl.sif"), "container_binds": [str(tmp_path)]},
    }.items():
        kind = "hpo" if name == "array" else "train"
        request = example_request(
            profile, kind, nodes=1, out_dir=str(tmp_path), python=sys.executable, **submit_keys
        )
        script = tmp_path / f"{system}-{name}.sh"
        script.write_text(render(profile, request))
        proc = subprocess.run(
            ["sbatch", "--test-only", str(script)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"sbatch --test-only rejected the {system} {name} script: {proc.stderr}"


def jobs_rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    proc = run_cli("jobs", "--json", env=submit_env(tmp_path), cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {row["job_id"]: row for row in json.loads(proc.stdout)}


def wait_until(what: str, predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f} s"
        time.sleep(1)


@pytest.mark.slow
def test_hpo_array_of_four_finishes_the_study_although_one_task_is_killed(tmp_path: Path) -> None:
    """submit creates the study; 4 array tasks (at most 3 at once) each run one `hpo worker`; task 1
    is SIGKILLed in the middle of a trial (no clean-up at all): its trial's heartbeat goes stale,
    another worker runs it again, and every configuration of the study completes."""
    hpo = ["hpo", "--space", "quadratic", "--objective", f"{OBJECTIVES}:curve", "--trials", "8"]
    hpo += ["--sampler", "random", "--scheduler", "none", "--min-resource", "50", "--max-resource", "200"]
    hpo += ["--set", "hpo.heartbeat_interval=1", "--set", "hpo.grace_period=6"]
    record = submit(
        tmp_path,
        "--array",
        "4%3",
        "--time",
        "20",
        "--set",
        "submit.tasks_per_node=1",
        "--",
        *hpo,
        HPO_FAKE_SLEEP="1.5",  # 4 reports of 50 steps: a trial takes ~6 s
    )
    job_id, run_dir = record["job_id"], Path(record["run_dir"])
    assert record["array"] == "0-3%3" and record["array_size"] == 4
    # the study exists before any task ran: submit created it
    status = run_cli(
        "hpo",
        "status",
        "--storage",
        f"journal:///{(run_dir / 'optuna-journal.log').as_posix().lstrip('/')}",
        "--study",
        "mlpf",
        "--json",
        cwd=tmp_path,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    task_log = run_dir / f"slurm-{job_id}_1.out"
    try:
        wait_until(
            "trial in task 1",
            lambda: task_log.exists() and "worker 1: trial" in task_log.read_text(errors="replace"),
            300,
        )
        subprocess.run(["scancel", "--signal=KILL", f"{job_id}_1"], check=True, timeout=60)
        rows = wait_until(
            "end of the array",
            lambda: (r := jobs_rows(tmp_path)) and r[job_id]["state"] in TERMINAL and r,
            600,
        )
    finally:
        subprocess.run(["scancel", job_id], check=False)
    row = rows[job_id]
    tasks = row["tasks"]
    assert sorted(tasks) == ["0", "1", "2", "3"], row
    assert tasks["1"]["state"] != "COMPLETED", row  # the killed one
    assert all(tasks[i]["state"] == "COMPLETED" for i in ("0", "2", "3")), row

    import optuna

    from mlpfctl.hpo.asha import ATTR_SLOT
    from mlpfctl.hpo.storage import open_storage, parse_url

    journal = (run_dir / "optuna-journal.log").as_posix().lstrip("/")
    storage = open_storage(
        parse_url(f"journal:///{journal}"), heartbeat_interval=60, grace_period=120, max_retry=0
    )
    study = optuna.load_study(study_name="mlpf", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted({t.user_attrs[ATTR_SLOT] for t in complete}) == list(range(8)), [
        (t.number, t.state.name, t.user_attrs.get(ATTR_SLOT)) for t in study.trials
    ]
    # the killed task's trial was retried: one FAIL (stale), and the logs of the three others ran all 8
    assert any(t.state == optuna.trial.TrialState.FAIL for t in study.trials)


@pytest.mark.slow
def test_after_ok_dependant_of_a_failed_parent_is_cancelled_and_after_any_runs(tmp_path: Path) -> None:
    """afterok on a parent that never succeeds cancels the dependant (--kill-on-invalid-dep)
    instead of leaving it pending forever; afterany runs; --wait exits with each job's code."""
    held = ["--time", "10", "--sbatch-arg=--begin=now+3600"]  # the parent waits an hour
    parent = submit(tmp_path, *held, "--", "check")["job_id"]
    ok = submit(tmp_path, "--time", "10", "--after", parent, "--", "check")
    any_ = submit(tmp_path, "--time", "10", "--after", f"{parent}:any", "--", "check")
    info = subprocess.run(["scontrol", "show", "job", "-o", ok["job_id"]], capture_output=True, text=True)
    assert f"Dependency=afterok:{parent}" in info.stdout, info.stdout
    subprocess.run(["scancel", parent], check=True)
    env = submit_env(tmp_path)
    waited = run_cli("logs", any_["job_id"], "--follow", env=env, cwd=tmp_path, timeout=300)
    assert waited.returncode == 0 and " sum 3 OK" in waited.stdout, waited.stdout + waited.stderr
    rows = wait_until(
        "end of both dependants",
        lambda: (
            (r := jobs_rows(tmp_path)) and all(r[j["job_id"]]["state"] in TERMINAL for j in (ok, any_)) and r
        ),
        120,
    )
    assert rows[ok["job_id"]]["state"] == "CANCELLED", rows[ok["job_id"]]
    assert rows[any_["job_id"]]["state"] == "COMPLETED"
    assert rows[parent]["state"] == "CANCELLED"


@pytest.mark.slow
def test_wait_streams_the_log_and_exits_with_the_jobs_code(tmp_path: Path) -> None:
    env = submit_env(tmp_path)
    proc = run_cli("submit", "--time", "10", "--wait", "--", "check", env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    assert job_id.isdigit()
    assert (
        proc.stderr.count(" sum 3 OK") == 2 and f"mlpfctl: job {job_id} ended with exit code 0" in proc.stderr
    )
    assert f"job {job_id} ended: COMPLETED, exit code 0" in proc.stderr
    # a dependant of a job that does not succeed ends CANCELLED: --wait exits non-zero
    parent = submit(tmp_path, "--time", "10", "--sbatch-arg=--begin=now+3600", "--", "check")["job_id"]
    argv = ["submit", "--time", "10", "--after", parent, "--wait", "--", "check"]
    child = subprocess.Popen(
        [sys.executable, "-m", "mlpfctl", *argv],
        env={**os.environ, **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    child_id = child.stdout.readline().strip()  # submitted (and now waiting)
    assert child_id.isdigit(), child_id
    subprocess.run(["scancel", parent], check=True)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 1, err
    assert f"job {child_id} ended: CANCELLED, exit code 1" in err
