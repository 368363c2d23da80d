"""``mlpfctl train/evaluate/export``: planning and user errors (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import assert_user_error, run_cli


def test_dry_run_prints_the_resolved_plan(tmp_path: Path) -> None:
    proc = run_cli(
        "train",
        "--data",
        str(tmp_path),
        "--steps",
        "7",
        "--nproc",
        "2",
        "--preset",
        "tiny",
        "--set",
        "train.lr_scaling=sqrt",
        "--run-dir",
        str(tmp_path / "r"),
        "--dry-run",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["nproc"] == 2 and plan["train"]["steps"] == 7 and plan["train"]["lr_scaling"] == "sqrt"
    assert plan["model"]["preset"] == "tiny" and plan["run_dir"] == str(tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_bad_values_are_user_errors(tmp_path: Path) -> None:
    assert_user_error(run_cli("train", "--set", "train.optimizer=adam", "--dry-run"), "train.optimizer")
    assert_user_error(run_cli("train", "--set", "train.lr=-1", "--dry-run"), "train.lr")
    assert_user_error(run_cli("train", "--data", str(tmp_path / "missing")), "does not exist")
    assert_user_error(run_cli("train", "--resume", str(tmp_path / "nope")), "--resume")


def test_evaluate_and_export_need_a_run(tmp_path: Path) -> None:
    assert_user_error(run_cli("evaluate", str(tmp_path / "none")), "does not exist")
    (tmp_path / "run").mkdir()
    assert_user_error(run_cli("export", str(tmp_path / "run")), "config.toml")


def test_help_of_training_commands_stays_light() -> None:
    import subprocess
    import sys

    for command in ("train", "evaluate", "export"):
        code = (
            "import sys\nfrom mlpfctl.cli.app import run\n"
            f"rc = run([{command!r}, '--help'])\n"
            "print('HEAVY=' + ','.join(m for m in ('torch', 'optuna', 'matplotlib') if m in sys.modules))\n"
            "sys.exit(rc)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.rstrip().endswith("HEAVY="), (command, proc.stdout[-200:])


def test_generated_run_directories_within_one_second_are_distinct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `train` runs started in the same second must not share `train-<stamp>`."""
    import datetime as dt

    from mlpfctl.cli import train as cli_train

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Frozen:
            return cls(2026, 12, 1, 9, 0, 48)

    monkeypatch.setattr(cli_train._dt, "datetime", Frozen)
    first = cli_train.default_run_dir(str(tmp_path), None)
    assert first == tmp_path / "train-20261201-090048"
    first.mkdir()
    assert cli_train.default_run_dir(str(tmp_path), None) == tmp_path / "train-20261201-090048-2"
    assert cli_train.default_run_dir(str(tmp_path), "mine") == tmp_path / "mine"
