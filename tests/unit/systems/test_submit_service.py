"""submit / jobs / cancel / logs with a fake runner at the process boundary (sbatch, scontrol, scancel)."""

from __future__ import annotations

import json
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from mlpfctl.cli.app import run
from mlpfctl.config import resolve
from mlpfctl.config.loader import Override
from mlpfctl.errors import RuntimeFailure, UsageError
from mlpfctl.systems import jobs
from mlpfctl.systems import submit as service
from mlpfctl.systems.runner import Result
from tests.unit.systems.fakes import FakeSlurm


def config(tmp_path: Path, **submit: str):  # type: ignore[no-untyped-def]
    overrides = [
        Override("run.out_dir", str(tmp_path / "runs"), "test"),
        Override("submit.registry", str(tmp_path / "jobs.jsonl"), "test"),
    ]
    overrides += [Override(f"submit.{k}", v, "test") for k, v in submit.items()]
    return resolve(None, overrides, env={}, cwd=tmp_path).config


def test_submit_writes_script_calls_sbatch_and_records(tmp_path: Path) -> None:
    cfg = config(tmp_path, system="lumi", account="project_1", nodes="2", venv="/project/venv")
    fake = FakeSlurm()
    plan = service.plan(cfg, "train", ["--steps", "10"], fake)
    record = service.submit(plan, fake, service.registry_path(cfg))
    script = plan.request.script_path
    assert script.read_text() == plan.script
    assert script.stat().st_mode & stat.S_IXUSR
    assert fake.calls == [["sbatch", "--parsable", str(script)]]
    assert record["job_id"] == "77" and record["system"] == "lumi" and record["run_dir"] == str(script.parent)
    assert jobs.read_records(tmp_path / "jobs.jsonl") == [record]


def test_pgpass_is_private_and_the_password_is_nowhere_else(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        system="lumi",
        account="p",
        venv="/project/venv",
        hpo_storage="postgresql://mlpf:HUNTER2@db:5432/optuna",
    )
    fake = FakeSlurm()
    plan = service.plan(cfg, "hpo", [], fake)
    service.submit(plan, fake, service.registry_path(cfg))
    pgpass = plan.request.run_dir / ".pgpass"
    assert pgpass.read_text() == "db:5432:optuna:mlpf:HUNTER2\n"
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    for path in (plan.request.script_path, tmp_path / "jobs.jsonl"):
        assert "HUNTER2" not in path.read_text()


def test_sbatch_rejection_is_a_runtime_failure_and_nothing_is_recorded(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    fake = FakeSlurm(Result(1, "", "sbatch: error: Batch job submission failed: Invalid account\n"))
    plan = service.plan(cfg, "check", [], fake)
    with pytest.raises(RuntimeFailure, match="Invalid account"):
        service.submit(plan, fake, service.registry_path(cfg))
    assert not (tmp_path / "jobs.jsonl").exists()
    assert not plan.request.run_dir.exists()  # the script written for sbatch is gone again


def test_a_run_directory_is_never_reused(tmp_path: Path) -> None:
    cfg = resolve(
        None,
        [
            Override("run.out_dir", str(tmp_path), "t"),
            Override("run.name", "same", "t"),
            Override("submit.registry", str(tmp_path / "j.jsonl"), "t"),
            Override("submit.system", "lumi", "t"),
            Override("submit.account", "a", "t"),
            Override("submit.venv", "/project/venv", "t"),
        ],
        env={},
    ).config
    fake = FakeSlurm()
    service.submit(service.plan(cfg, "train", [], fake), fake, tmp_path / "j.jsonl")
    with pytest.raises(RuntimeFailure, match="another job"):
        service.submit(service.plan(cfg, "train", [], fake), fake, tmp_path / "j.jsonl")


@pytest.mark.parametrize("stdout", ["", "Submitted batch job 5", "abc;x"])
def test_unparsable_sbatch_output(stdout: str) -> None:
    with pytest.raises(RuntimeFailure):
        service.parse_job_id(stdout)
    assert service.parse_job_id("123;cluster\n") == "123"


def test_jobs_status_cancel_and_logs(tmp_path: Path) -> None:
    registry = tmp_path / "jobs.jsonl"
    for job_id in ("5", "6"):
        service.append_record(registry, {"job_id": job_id, "run_dir": str(tmp_path / job_id)})
    registry.write_text(registry.read_text() + '{"job_id": "7", "run_d')  # a line cut by a crash
    fake = FakeSlurm()
    fake.states = {"5": "RUNNING"}
    rows = list(jobs.status(jobs.read_records(registry), fake))
    # 6 is known neither to SLURM nor to accounting, and has no log: it ended, nobody knows how
    assert [(r["job_id"], r["state"]) for r in rows] == [("5", "RUNNING"), ("6", "ENDED")]
    assert rows[0]["restarts"] == 1
    assert jobs.cancel("5", fake, registry) == "cancelled"
    assert fake.calls[-1] == ["scancel", "5"]
    with pytest.raises(UsageError):
        jobs.cancel("5; rm -rf ~", fake, registry)
    assert jobs.job_info("5", fake)["JobName"] == "a b c"
    assert jobs.log_paths("5", registry, fake) == [tmp_path / "5" / "slurm-5.out"]
    fake.states["8"] = "PENDING"  # not submitted by mlpfctl: scontrol knows its output file
    assert jobs.log_paths("8", registry, fake) == [Path("/o/8.out")]
    with pytest.raises(UsageError, match="neither known"):
        jobs.log_paths("99", registry, fake)


# ---- the CLI: exit codes, stdout carries only the script/ids, errors are error:/hint: lines


def test_cli_dry_run_prints_the_script_and_submits_nothing(
    cli_env: FakeSlurm, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        [
            "submit",
            "--system",
            "lumi",
            "--account",
            "project_465000001",
            "--dry-run",
            "--",
            "train",
            "--steps",
            "5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("#!/bin/bash\n") and "#SBATCH --account=project_465000001" in out
    assert cli_env.calls == []


def test_cli_dry_run_never_shows_the_password(cli_env: FakeSlurm, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        [
            "submit",
            "-s",
            "lumi",
            "-A",
            "p",
            "--dry-run",
            "--",
            "hpo",
            "--storage",
            "postgresql://u:PW123@h/db",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0 and "PW123" not in captured.out + captured.err
    assert "0600" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["submit", "-s", "lumi", "--dry-run", "--", "train"], "requires an account"),
        (["submit", "-s", "lumi", "-A", "p", "-t", "9-00:00:00", "--", "train"], "limit of partition"),
        (["submit", "-s", "nowhere", "--", "train"], "unknown system"),
        (["submit", "-s", "lumi", "-A", "p"], "no job given"),
        (["submit", "-s", "lumi", "-A", "p", "--", "fly"], "unknown job kind"),
        (["submit", "-s", "lumi", "-A", "p", "-t", "soon", "--", "train"], "not a SLURM time"),
    ],
)
def test_cli_usage_errors_exit_2_without_traceback(
    cli_env: FakeSlurm, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and message in captured.err and "\nhint: " in captured.err
    assert "Traceback" not in captured.err
    assert cli_env.calls == []


def test_cli_submit_json_and_jobs(cli_env: FakeSlurm, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["submit", "-s", "lumi", "-A", "p", "--json", "--", "train"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["job_id"] == "77"
    cli_env.states["77"] = "PENDING"
    assert run(["jobs", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["state"] == "PENDING"
    assert run(["cancel", "77"]) == 0
    assert cli_env.calls[-1] == ["scancel", "77"]


def test_cli_systems(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["systems", "--json"]) == 0
    names = [p["name"] for p in json.loads(capsys.readouterr().out)]
    assert {"lumi", "jureca", "juwels", "vega", "leonardo", "perlmutter", "karolina", "local"} <= set(names)
    assert run(["systems", "show", "lumi"]) == 0
    assert "[partitions.standard-g]" in capsys.readouterr().out
    assert run(["systems", "show", "lumi", "--script", "hpo"]) == 0
    assert "hpo worker" in capsys.readouterr().out
    assert run(["systems", "show", "lumy"]) == 2


def test_local_profile_without_slurm_falls_back_to_its_partitions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_slurm(argv: Sequence[str]) -> Result:
        raise RuntimeFailure(f"'{argv[0]}' is not installed here", "run this on a SLURM login node")

    plan = service.plan(config(tmp_path), "check", [], no_slurm)
    assert plan.request.partition.name == "debug"
    assert "'sinfo' is not installed here" in capsys.readouterr().err
