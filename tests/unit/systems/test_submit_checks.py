"""Bad input to `submit` is refused before anything is written or queued: the job's own command
line (parsed and resolved by the job's own command), templates, job names, job ids, names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlpfctl.cli.app import run
from mlpfctl.systems import render as render_mod
from tests.helpers import assert_user_error, run_cli
from tests.unit.systems.fakes import FakeSlurm


@pytest.fixture
def local_cli(cli_env: FakeSlurm, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    """The fake SLURM (conftest), with a CPU job on the local profile by default."""
    monkeypatch.setenv("MLPFCTL_SUBMIT__SYSTEM", "local")
    monkeypatch.setenv("MLPFCTL_SUBMIT__GPUS_PER_NODE", "0")
    return cli_env


def refused(
    local_cli: FakeSlurm, capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], *fragments: str
) -> str:
    """Exit 2, one error: and one hint: line, no traceback, no sbatch, no run directory."""
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["error", "hint"], captured.err
    for fragment in fragments:
        assert fragment in captured.err, (fragment, captured.err)
    assert not any(call[0] == "sbatch" for call in local_cli.calls)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "jobs.jsonl").exists()
    return captured.err


# ---- the job's own command line, parsed and resolved as on the node


@pytest.mark.parametrize(
    ("job", "fragments"),
    [
        (["hpo", "--data", "X"], ("hpo job: No such option: --data", "mlpfctl hpo run --help")),
        (["train", "--steps", "-1"], ("train job:", "train.steps")),
        (["train", "--steps", "many"], ("train job: Invalid value for '--steps'",)),
        (["train", "--set", "train.nosuch=1"], ("train job:", "train.nosuch")),
        (["train", "--set", "train.lr=-0.5"], ("train job:", "train.lr")),
        (["train", "--config", "missing.toml"], ("train job:", "missing.toml")),
        (["train", "--help"], ("would only print and exit",)),
        (["hpo", "--sampler", "annealing"], ("hpo job:", "annealing")),
        (["hpo", "--trials", "0"], ("hpo job:", "trials")),
        (["scale-bench", "fly"], ("scale-bench job: No such command 'fly'",)),
        (["scale-bench", "report"], ("cannot run as a scale-bench job",)),
        (["scale-bench", "train", "--mode", "sideways"], ("scale-bench job:", "sideways")),
        (["check", "--extra"], ("the check job takes no arguments",)),
    ],
)
def test_a_bad_job_command_is_the_jobs_own_error_and_nothing_is_queued(
    local_cli: FakeSlurm,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    job: list[str],
    fragments: tuple[str, ...],
) -> None:
    refused(local_cli, capsys, tmp_path, ["submit", "--", *job], *fragments)
    # --dry-run checks the same (it shows a script that would run)
    refused(local_cli, capsys, tmp_path, ["submit", "--dry-run", "--", *job], *fragments)


def test_a_good_job_is_checked_in_the_directory_it_runs_in(
    local_cli: FakeSlurm, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # a relative --config means the same on the node: the job runs where submit ran
    (tmp_path / "mine.toml").write_text("[train]\nsteps = 7\n")
    assert run(["submit", "--json", "--", "train", "--config", "mine.toml"]) == 0
    record = json.loads(capsys.readouterr().out)
    script = Path(record["script"]).read_text()
    assert f"cd {tmp_path} || exit 1" in script
    assert 'export MLPFCTL_RUN__OUT_DIR="$RUN_DIR"' in script
    assert any(call[0] == "sbatch" for call in local_cli.calls)


def test_scale_bench_records_go_to_the_run_directory_unless_told(
    local_cli: FakeSlurm, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(["submit", "--dry-run", "--json", "--", "scale-bench", "train", "--steps", "3"]) == 0
    plan = json.loads(capsys.readouterr().out)
    run_dir = Path(plan["script_path"]).parent
    assert f"scale-bench train --steps 3 --out {run_dir}/scale-bench" in plan["script"]
    assert run(["submit", "--dry-run", "--json", "--", "scale-bench", "train", "--out", "mine"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert "scale-bench train --out mine\n" in plan["script"]


# ---- names: kinds, systems, job names as paths


def test_job_kinds_and_systems_suggest_the_closest_name(
    local_cli: FakeSlurm, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    refused(
        local_cli,
        capsys,
        tmp_path,
        ["submit", "--", "trian"],
        "unknown job kind 'trian'",
        "did you mean 'train'?",
    )
    refused(local_cli, capsys, tmp_path, ["submit", "-s", "lumii", "--", "train"], "did you mean 'lumi'?")
    assert run(["systems", "show", "lumi", "--script", "hpp"]) == 2
    assert "did you mean 'hpo'?" in capsys.readouterr().err


def test_system_names_are_case_insensitive(local_cli: FakeSlurm, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "submit",
        "-s",
        "LUMI",
        "-A",
        "p",
        "--gpus-per-node",
        "8",
        "--set",
        "submit.venv=/p/venv",
        "--dry-run",
    ]
    argv += ["--", "train"]
    assert run(argv) == 0
    assert "on LUMI-G" in capsys.readouterr().out
    assert run(["systems", "show", "Jureca"]) == 0


@pytest.mark.parametrize("name", ["../../../x", "/etc/cron.d/x", "..", "a/../../b"])
def test_a_job_name_never_leaves_the_runs_directory(
    local_cli: FakeSlurm, capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    assert run(["submit", "--json", "-J", name, "--", "check"]) == 0
    record = json.loads(capsys.readouterr().out)
    run_dir = Path(record["run_dir"])
    assert run_dir.parent == tmp_path / "runs" and run_dir.resolve().parent == tmp_path / "runs"
    assert record["job_name"] == name  # SLURM still gets the name as typed (quoted in the script)
    assert not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "."])
def test_a_run_name_that_is_not_a_directory_name_is_refused(
    local_cli: FakeSlurm, capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    refused(
        local_cli,
        capsys,
        tmp_path,
        ["submit", "--set", f"run.name={name}", "--", "check"],
        "not a plain directory name",
    )


# ---- template faults: exit 2 naming the template and the line


@pytest.mark.parametrize(
    ("files", "fragments"),
    [
        (
            {"train.sh.j2": "#!/bin/bash\n{{ kind }}\n{{ no_such_variable }}\n"},
            ("'train.sh.j2' line 3", "undefined"),
        ),
        ({"train.sh.j2": "#!/bin/bash\n\n{% if kind %}\nunclosed\n"}, ("'train.sh.j2' line", "syntax error")),
        ({"train.sh.j2": '{% include "_gone.sh.j2" %}\n'}, ("'_gone.sh.j2' is missing",)),
        ({}, ("'train.sh.j2' is missing",)),
        (
            {"train.sh.j2": '{% include "_part.sh.j2" %}\n', "_part.sh.j2": "ok\n{{ 1 // 0 }}\n"},
            ("'_part.sh.j2' line 2",),
        ),
    ],
)
def test_template_faults_are_exit_2_with_template_and_line(
    local_cli: FakeSlurm,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str],
    fragments: tuple[str, ...],
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    for name, text in files.items():
        (templates / name).write_text(text)
    monkeypatch.setattr(render_mod, "template_dir", lambda: templates)
    refused(local_cli, capsys, tmp_path, ["submit", "--", "check"], *fragments)


# ---- cancel


def test_cancel_of_an_unknown_job_is_exit_2(local_cli: FakeSlurm, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["cancel", "99999"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no job 99999") and "\nhint: " in err
    assert not any(call[0] == "scancel" for call in local_cli.calls)


def test_cancel_of_an_ended_job_cancels_nothing(
    local_cli: FakeSlurm, capsys: pytest.CaptureFixture[str]
) -> None:
    local_cli.states["12"] = "COMPLETED"
    assert run(["cancel", "12"]) == 0
    assert "already ended (COMPLETED)" in capsys.readouterr().err
    local_cli.states["13"] = "RUNNING"
    assert run(["cancel", "13"]) == 0
    assert local_cli.calls[-1] == ["scancel", "13"]
    assert [c for c in local_cli.calls if c[0] == "scancel"] == [["scancel", "13"]]


def test_submit_errors_as_a_user_sees_them(tmp_path: Path) -> None:
    # the real process: one error: line, one hint: line, no traceback, exit 2
    env = {
        "MLPFCTL_RUN__OUT_DIR": str(tmp_path / "runs"),
        "MLPFCTL_SUBMIT__REGISTRY": str(tmp_path / "j.jsonl"),
    }
    proc = run_cli(
        "submit",
        "-s",
        "lumi",
        "-A",
        "p",
        "--set",
        "submit.venv=/v",
        "--",
        "hpo",
        "--data",
        "X",
        env=env,
        cwd=tmp_path,
    )
    assert_user_error(proc, "hpo job: No such option: --data")
    assert not (tmp_path / "runs").exists()


def test_the_job_check_leaves_the_environment_as_it_was(tmp_path: Path) -> None:
    script = (
        "import os\n"
        "from mlpfctl.cli.app import run\n"
        "os.environ['CUDA_VISIBLE_DEVICES'] = '3'\n"
        "assert run(['submit', '--dry-run', '--', 'hpo', '--trials', '2']) == 0\n"
        "print(os.environ.get('MLPFCTL_RUN__OUT_DIR'), os.environ.get('CUDA_VISIBLE_DEVICES'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPFCTL_")}
    env.update(MLPFCTL_SUBMIT__SYSTEM="local", MLPFCTL_SUBMIT__GPUS_PER_NODE="0")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "None 3"
