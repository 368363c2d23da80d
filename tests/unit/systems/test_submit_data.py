"""``mlpfctl submit -- data generate``: one job, or an array of one-node tasks followed by the manifest
step (its own script in the run directory, queued after the whole array, whatever its tasks did)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mlpfctl.config import resolve
from mlpfctl.config.loader import Override
from mlpfctl.config.schema import SubmitSection
from mlpfctl.errors import UsageError
from mlpfctl.systems import jobs
from mlpfctl.systems import submit as service
from mlpfctl.systems.profiles import load_profile
from mlpfctl.systems.request import build_request
from tests.helpers import run_cli
from tests.unit.systems.fakes import FakeSlurm

ENV = {"XDG_CONFIG_HOME": "/nonexistent-mlpfctl-test"}
GENERATE = ["generate", "--events", "1000", "--events-per-shard", "100", "--out", "data/x"]


def request_for(args: list[str], **settings: object):  # type: ignore[no-untyped-def]
    profile = load_profile("jureca", ENV)
    section = replace(SubmitSection(system="jureca", account="acct", venv="/v"), **settings)  # type: ignore[arg-type]
    return build_request(profile, section, "data", args, out_dir="/scratch/runs", run_name="r")


def test_a_data_job_asks_for_cpus_not_gpus_and_an_array_task_is_one_node() -> None:
    one = request_for(GENERATE)
    assert one.gpus_per_node == 0 and one.nodes == 1 and one.tasks_per_node == 1 and one.array is None
    array = request_for(GENERATE, array="16%4")
    assert array.array is not None and array.array.sbatch == "0-15%4" and array.nodes == 1
    assert request_for(GENERATE, gpus_per_node=2).gpus_per_node == 2


@pytest.mark.parametrize(
    ("args", "settings", "message"),
    [
        (["inspect", "x"], {}, "a data job generates a dataset"),
        ([], {}, "a data job generates a dataset"),
        ([*GENERATE, "--task-index", "3"], {"array": "4"}, "sets --task-index itself"),
        ([*GENERATE, "--manifest-only"], {}, "sets --manifest-only itself"),
        (GENERATE, {"nodes": 4}, "runs on one node, not 4"),
    ],
)
def test_bad_data_jobs(args: list[str], settings: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        request_for(args, **settings)


def config(tmp_path: Path, **submit: object):  # type: ignore[no-untyped-def]
    overrides = [
        Override("run.out_dir", str(tmp_path / "runs"), "test"),
        Override("submit.registry", str(tmp_path / "jobs.jsonl"), "test"),
        Override("submit.cpus_per_task", 1, "test"),
    ]
    overrides += [Override(f"submit.{k}", v, "test") for k, v in submit.items()]
    return resolve(None, overrides, env={}, cwd=tmp_path).config


def test_an_array_is_followed_by_the_manifest_step_after_every_task(tmp_path: Path) -> None:
    cfg = config(tmp_path, array="4")
    fake = FakeSlurm()
    plan = service.plan(cfg, "data", GENERATE, fake)
    record = service.submit(plan, fake, service.registry_path(cfg))
    then = service.follow_up(plan, record["job_id"])
    assert then is not None
    service.submit(then, fake, service.registry_path(cfg))
    run_dir = plan.request.run_dir
    assert fake.calls[-1] == [
        "sbatch",
        "--parsable",
        "--dependency=afterany:77",
        "--kill-on-invalid-dep=yes",
        str(run_dir / "manifest.sh"),
    ]
    tasks, final = (run_dir / "job.sh").read_text(), (run_dir / "manifest.sh").read_text()
    assert "#SBATCH --array=0-3" in tasks and '--task-index "$SLURM_ARRAY_TASK_ID" --task-count 4' in tasks
    assert "--array" not in final and "--out data/x --manifest-only" in final
    assert "#SBATCH --job-name=mlpf-data-manifest" in final
    records = jobs.read_records(service.registry_path(cfg))
    assert [r.get("after") for r in records] == [None, ["77:any"]]
    # one job without --array writes its manifest itself: nothing follows
    assert service.follow_up(service.plan(config(tmp_path), "data", GENERATE, fake), "78") is None


def test_dry_run_shows_the_tasks_script_and_the_step_after_them(tmp_path: Path) -> None:
    env = {
        "MLPFCTL_RUN__OUT_DIR": str(tmp_path / "runs"),
        "MLPFCTL_SUBMIT__SYSTEM": "jureca",
        "MLPFCTL_SUBMIT__ACCOUNT": "acct",
        "MLPFCTL_SUBMIT__VENV": "/v",
    }
    proc = run_cli(
        "submit", "--array", "8", "--dry-run", "--json", "--", "data", *GENERATE, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --array=0-7" in json.loads(proc.stdout)["script"]
    assert "--dependency=afterany:ARRAY_JOB_ID" in proc.stderr and "manifest.sh" in proc.stderr
    assert not (tmp_path / "runs").exists()
