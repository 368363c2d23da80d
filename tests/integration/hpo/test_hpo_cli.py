"""The mlpfctl hpo commands end to end: run, status, report (plots, best config), errors."""

from __future__ import annotations

import json
from pathlib import Path

from mlpfctl.config import resolve
from tests.helpers import assert_user_error, run_cli

from .hpo_helpers import FAKE, RUNGS, argv

ENV = {"MLPFCTL_HPO_NO_DEVICE_PROBE": "1"}


def _common(tmp_path: Path) -> list[str]:
    return [
        "--storage",
        f"sqlite:///{tmp_path / 's.db'}",
        "--study",
        "cli",
        "--set",
        f"hpo.workdir={tmp_path / 'work'}",
        "--set",
        f"run.out_dir={tmp_path / 'runs'}",
    ]


def test_run_status_report_and_best_config(tmp_path: Path) -> None:
    study = (
        f"--objective {FAKE}:curve --space quadratic --sampler tpe --scheduler asha --trials 6 --workers 2"
    )
    run = run_cli("hpo", "run", *_common(tmp_path), *argv(study), *RUNGS, "--json", env=ENV, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads(run.stdout)
    assert data["states"]["PRUNED"] >= 6 and data["best"]["rung"] >= 1  # 6 configs: rung 2 needs 3 at rung 1
    status = run_cli("hpo", "status", *_common(tmp_path), "--json", env=ENV, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["jobs_per_rung"]["0"] == 6 and info["scheduler"] == "asha" and info["rungs"] == [50, 150, 450]
    table = run_cli("hpo", "status", *_common(tmp_path), env=ENV, cwd=tmp_path)
    assert "best configurations" in table.stdout
    out = tmp_path / "report"
    report = run_cli("hpo", "report", *_common(tmp_path), "--out", str(out), env=ENV, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    for name in ("history.png", "intermediate_values.png", "parallel_coordinates.png", "report.json"):
        assert (out / name).stat().st_size > 0, name
    assert "parameter importances" in report.stdout
    best = out / "best_config.toml"
    text = best.read_text()
    assert "mlpfctl train --config" in text
    resolve(best, env={})  # a valid config file for mlpfctl train --config


def test_dry_run_creates_nothing(tmp_path: Path) -> None:
    proc = run_cli(
        "hpo",
        "run",
        *_common(tmp_path),
        *argv(f"--objective {FAKE}:curve --space quadratic --dry-run --json"),
        env=ENV,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    # Derived from train.steps = 1000 and train.val_every = 100, geometric (docs/hpo.md, Rungs).
    assert plan["rungs"] == [100, 300, 1000] and plan["scheduler"] == "asha"
    assert plan["promotion_rule"] == "quota"
    assert not (tmp_path / "s.db").exists()


def test_user_errors(tmp_path: Path) -> None:
    assert_user_error(run_cli("hpo", "run", *_common(tmp_path), "--sampler", "hyperopt", env=ENV), "hyperopt")
    assert_user_error(
        run_cli("hpo", "run", *_common(tmp_path), "--objective", "no_such_module_xyz:f", env=ENV),
        "no_such_module_xyz",
    )
    assert_user_error(
        run_cli(
            "hpo",
            "run",
            *_common(tmp_path),
            *argv(f"--space quadratic --sampler grid --objective {FAKE}:curve"),
            env=ENV,
        ),
        "cannot enumerate",
    )
    assert_user_error(run_cli("hpo", "status", *_common(tmp_path), env=ENV), "does not exist")
    proc = run_cli("hpo", "status", "--storage", "mysql://u:hunter2@h/db", env=ENV)
    assert_user_error(proc, "unsupported storage URL")
    assert "hunter2" not in proc.stderr


def test_unreachable_postgres_is_a_runtime_failure_with_masked_password(tmp_path: Path) -> None:
    proc = run_cli(
        "hpo", "status", "--storage", "postgresql+psycopg://u:s3cr3t@127.0.0.1:1/db", "--study", "x", env=ENV
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "s3cr3t" not in proc.stderr and "u:***@" in proc.stderr
