"""``mlpfctl hpo simulate`` from a real study recorded by ``mlpfctl hpo run``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import assert_user_error, run_cli

from .hpo_helpers import FAKE, RUNGS, argv

# 0.5 s per reported 50 steps: jobs of 0.5, 1 and 3 s of "training" at rungs 50, 150, 450, well
# above the ~1 s of sampling and storage writes per job on a loaded machine.
ENV = {"MLPFCTL_HPO_NO_DEVICE_PROBE": "1", "HPO_FAKE_SLEEP": "0.5"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("recorded")
    url = f"sqlite:///{tmp / 'rec.db'}"
    study = (
        f"--objective {FAKE}:curve --space quadratic --sampler tpe --scheduler asha --trials 12 --workers 2"
    )
    run = run_cli(
        "hpo",
        "run",
        "--storage",
        url,
        "--study",
        "rec",
        *argv(study),
        *RUNGS,
        "--set",
        f"hpo.workdir={tmp / 'work'}",
        "--set",
        "hpo.poll_interval=0.1",
        env=ENV,
        cwd=tmp,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp, url


def simulate(url: str, *args: str, study: str = "rec") -> tuple[int, str, str]:
    proc = run_cli("hpo", "simulate", "--from", study, "--storage", url, *args, env=ENV)
    return proc.returncode, proc.stdout, proc.stderr


def test_simulates_the_recorded_campaign_and_writes_outputs(recorded: tuple[Path, str]) -> None:
    import optuna

    tmp, url = recorded
    out = tmp / "sim"
    code, stdout, stderr = simulate(
        url, "--workers", "2,8", "--repeats", "6", "--scheduler", "asha,sha", "--json", "--out", str(out)
    )
    assert code == 0, stderr[-3000:]
    data = json.loads(stdout)
    plan = data["plan"]
    assert plan["rungs"] == [50, 150, 450] and plan["trials"] == 12 and plan["workers"] == [1, 2, 8]
    assert plan["fit"]["workers"] == 2  # two jobs ran at once in the recording
    # The fake objective sleeps 0.5 s per 50 steps: the fitted step time must find that.
    assert 0.01 * 0.7 < plan["costs"]["step_s"] < 0.01 * 2
    rows = {(r["scheduler"], r["workers"]): r for r in data["rows"]}
    assert set(rows) == {(s, w) for s in ("asha", "sha") for w in (1, 2, 8)}
    assert rows[("asha", 1)]["speedup"] == 1.0
    assert rows[("asha", 2)]["speedup"] > 1.3 and rows[("asha", 8)]["speedup"] > rows[("asha", 2)]["speedup"]
    assert rows[("asha", 2)]["reuse_gain"] > 1.0 and "reuse_gain" not in rows[("sha", 2)]
    # Replaying the recorded set-up (2 workers) predicts its span from its own job times.
    storage = optuna.storages.RDBStorage(url)
    trials = optuna.load_study(study_name="rec", storage=storage).get_trials()
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    span = (max(ends) - min(starts)).total_seconds()
    assert 0.6 < rows[("asha", 2)]["wall_s"] / span < 1.6, (rows[("asha", 2)]["wall_s"], span)
    assert {p.name for p in out.iterdir()} == {"simulate.json", "simulate.csv", "simulate.png"}
    assert (out / "simulate.png").stat().st_size > 10_000
    assert json.loads((out / "simulate.json").read_text())["rows"] == data["rows"]
    assert data["simulated_trials"] == 6 * 12 * (3 * 2 + 3)


def test_table_and_dry_run(recorded: tuple[Path, str]) -> None:
    tmp, url = recorded
    code, stdout, stderr = simulate(url, "--workers", "4", "--repeats", "3", "--draw", "model")
    assert code == 0, stderr
    assert "hpo simulate: 12 configurations" in stdout
    assert "reuse gain: wall time without trial reuse" in stdout
    code, stdout, _ = simulate(url, "--workers", "4", "--dry-run", "--json", "--out", str(tmp / "dry"))
    assert code == 0
    plan = json.loads(stdout)
    assert plan["schedulers"] == ["asha"] and plan["sources"][0]["jobs"] >= 12
    assert not (tmp / "dry").exists()


def test_bad_input_is_exit_2(recorded: tuple[Path, str], tmp_path: Path) -> None:
    _, url = recorded
    assert_user_error(
        run_cli("hpo", "simulate", "--from", "nope", "--storage", url, env=ENV), "no study 'nope'"
    )
    assert_user_error(run_cli("hpo", "simulate", "--storage", url, env=ENV), "no study to simulate from")
    assert_user_error(
        run_cli("hpo", "simulate", "--from", "rec", "--storage", url, "--scheduler", "bohb", env=ENV),
        "unknown scheduler 'bohb'",
    )
    assert_user_error(
        run_cli("hpo", "simulate", "--from", "rec", "--storage", url, "--min-resource", "10", env=ENV),
        "start at step 50",
    )
    assert_user_error(
        run_cli("hpo", "simulate", "--from", "rec", "--storage", url, "--draw", "gp", env=ENV),
        "unknown --draw",
    )
    # Past the recorded curves the plan still holds for time and GPU-hours, with a note saying so.
    longer = run_cli(
        "hpo", "simulate", "--from", "rec", "--storage", url, "--max-resource", "2000", "--json", env=ENV
    )
    assert longer.returncode == 0 and "the recorded learning curves end at step 450" in longer.stderr
    assert json.loads(longer.stdout)["plan"]["rungs"] == [50, 150, 600, 2000]  # geometric, as recorded
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    assert_user_error(
        run_cli("hpo", "simulate", "--from", "rec", "--storage", missing, env=ENV), "does not exist"
    )
    assert not (tmp_path / "missing.db").exists()
    # A study whose objective reports nothing has no learning curves to replay.
    flat = f"sqlite:///{tmp_path / 'flat.db'}"
    run = run_cli(
        "hpo",
        "run",
        "--storage",
        flat,
        "--study",
        "flat",
        *argv(f"--objective {FAKE}:trivial --space quadratic --sampler random --scheduler none --trials 3"),
        "--set",
        f"hpo.workdir={tmp_path / 'work'}",
        env=ENV,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert_user_error(
        run_cli("hpo", "simulate", "--from", "flat", "--storage", flat, env=ENV), "has no learning curves"
    )


def test_submit_dry_run_shows_the_campaign_plan(recorded: tuple[Path, str], tmp_path: Path) -> None:
    _, url = recorded
    job = [
        "--",
        "hpo",
        *argv(f"--objective {FAKE}:curve --space quadratic --scheduler asha --trials 30"),
        *RUNGS,
    ]
    common = [
        "submit",
        "--system",
        "local",
        "--plan-from",
        "rec",
        "--plan-storage",
        url,
        "--dry-run",
        "--json",
    ]
    proc = run_cli(*common, "--time", "02:00:00", *job, env=ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(proc.stdout)["campaign_plan"]
    assert plan["scheduler"] == "asha" and plan["trials"] == 30 and plan["rungs"] == [50, 150, 450]
    assert plan["wall_s"] > 0 and plan["gpu_hours"] == pytest.approx(plan["gpus"] * plan["wall_s"] / 3600)
    assert plan["warnings"] == [] and "campaign plan (rec; 20 simulated replays)" in proc.stderr
    # A limit shorter than one top-rung job (geometric rungs 50, 45000: 44950 steps at ~0.01 s) is
    # flagged.
    longer = [*job, "--max-resource", "45000", "--eta", "100"]  # the last ones count
    short = run_cli(
        *common, "--time", "00:02:00", "--set", "submit.warning_seconds=60", *longer, env=ENV, cwd=tmp_path
    )
    assert short.returncode == 0, short.stderr[-2000:]
    assert "one top-rung job (steps 50 to 45000) takes about" in short.stderr
    assert "longer than the time limit 2.0 min" in short.stderr
    # eta 100 over 30 configurations promotes none: the plan says so
    assert "no configuration reaches the top rung (45000 steps)" in short.stderr
    train = run_cli(*common, "--", "train", "--steps", "10", env=ENV, cwd=tmp_path)
    assert_user_error(train, "--plan-from plans HPO campaigns")
