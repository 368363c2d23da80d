"""scale-bench end to end on real generated events: training scaling (gloo), scaling-law fit, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import assert_user_error, run_cli
from tests.integration.train.conftest import tiny_sets


def _sets(data: Path, *extra: str) -> list[str]:
    out: list[str] = []
    for item in tiny_sets(data, *extra):
        out += ["--set", item]
    return out


@pytest.mark.slow
def test_strong_scaling_1_and_2_ranks(ttbar_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sb"
    proc = run_cli(
        "scale-bench",
        "train",
        "--world-sizes",
        "1,2",
        "--mode",
        "strong",
        "--steps",
        "4",
        "--warmup",
        "1",
        "--comm-steps",
        "2",
        "--out",
        str(out),
        "--json",
        *_sets(ttbar_dir, "data.max_elements_per_batch=2048"),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = {r["world_size"]: r for r in data["train-strong"]}
    assert set(rows) == {1, 2}
    for row in rows.values():
        assert row["events_per_s"] > 0 and row["step_s_p50"] > 0 and row["step_s_p90"] >= row["step_s_p50"]
        assert 0 <= row["data_share"] < 1
        assert row["peak_memory_mib"] > 0
    assert rows[1]["speedup"] == pytest.approx(1.0) and rows[1]["comm_share"] is None
    assert rows[2]["comm_share"] is not None and 0 <= rows[2]["comm_share"] <= 1
    assert rows[2]["efficiency"] == pytest.approx(rows[2]["speedup"] / 2)
    # strong scaling keeps the global batch: 2 ranks x half the events per rank step ~ 1 rank's events
    global_1 = rows[1]["events_per_rank_step"]
    global_2 = 2 * rows[2]["events_per_rank_step"]
    assert global_2 == pytest.approx(global_1, rel=0.35)
    # strong scaling: each of the 2 ranks gets half the world-1 element budget
    record = json.loads((out / "train-strong-world_size2.json").read_text())
    assert record["settings"]["max_elements_per_batch"] == 1024
    assert record["versions"]["torch"] and record["machine"]["cpu_model"] and record["backend"] == "cpu"
    assert (out / "train-strong.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "train-strong.csv").read_text().startswith(("world_size", "device", "steps"))


@pytest.mark.slow
def test_scaling_law_four_sizes(ttbar_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "law"
    proc = run_cli(
        "scale-bench",
        "scaling-law",
        "--train-events",
        "20,40,80,160",
        "--steps",
        "12",
        "--extrapolate",
        "1000",
        "--out",
        str(out),
        "--json",
        *_sets(ttbar_dir, "train.val_every=6", "train.checkpoint_every=12"),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [r["train_events"] for r in data["scaling-law"]] == [20, 40, 80, 160]
    fit = json.loads((out / "scaling-law-fit.json").read_text())
    assert {"a", "b", "c", "b_err", "covariance"} <= set(fit)
    assert fit["extrapolation"][0]["train_events"] == 1000
    assert (out / "scaling-law.png").is_file()
    # the runs really trained on nested subsets of the same split
    configs = sorted((out / "runs").glob("D*-r0/config.toml"))
    assert (
        len(configs) == 4
        and "max_train_events = 160" in (out / "runs" / "D160-r0" / "config.toml").read_text()
    )


def test_bad_inputs(ttbar_dir: Path, tmp_path: Path) -> None:
    assert_user_error(
        run_cli("scale-bench", "train", "--world-sizes", "1,x", "--out", str(tmp_path)), "--world-sizes"
    )
    assert_user_error(
        run_cli("scale-bench", "train", "--mode", "diagonal", "--out", str(tmp_path)), "diagonal"
    )
    assert_user_error(
        run_cli(
            "scale-bench",
            "scaling-law",
            "--train-events",
            "10,20",
            "--out",
            str(tmp_path),
        ),
        "at least 4 distinct sizes",
    )
    assert_user_error(run_cli("scale-bench", "report", str(tmp_path / "nothing")), "not a directory")


@pytest.mark.slow
def test_hpo_scaling_1_and_2_workers(tmp_path: Path) -> None:
    fake = Path(__file__).resolve().parents[1] / "hpo" / "hpo_fake_objectives.py"
    out = tmp_path / "hpo"
    proc = run_cli(
        "scale-bench",
        "hpo",
        "--workers",
        "1,2",
        "--out",
        str(out),
        "--json",
        "--",
        "--space",
        "quadratic",
        "--objective",
        f"{fake}:curve",
        "--sampler",
        "tpe",
        "--scheduler",
        "asha",
        "--trials",
        "9",  # under the promotion quota 9 = eta**2 configurations bring one to the top rung
        "--min-resource",
        "50",
        "--max-resource",
        "450",
        "--eta",
        "3",
        "--seed",
        "3",
        env={"HPO_FAKE_SLEEP": "0.02", "MLPFCTL_HPO_NO_DEVICE_PROBE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["workers"]: r for r in json.loads(proc.stdout)["hpo"]}
    assert set(rows) == {1, 2}
    for row in rows.values():
        assert row["trials"] == 9 and row["wall_s"] > 0
        assert row["promotions"] >= 1  # promotion-type ASHA continued configurations from their checkpoints
        if row["full_budget_results"]:  # with few trials, async ASHA may promote nothing to the top rung
            assert row["time_to_target_s"] is not None and row["time_to_target_s"] <= row["wall_s"]
    assert any(r["time_to_target_s"] is not None for r in rows.values())
    assert rows[2]["efficiency"] == pytest.approx(rows[2]["speedup"] / 2)
    assert (out / "hpo.png").is_file() and (out / "hpo-w2.db").is_file()
    assert (out / "work-w1").is_dir() and (out / "work-w2").is_dir()  # no trial directory shared


def test_hpo_scaling_refuses_its_own_options(tmp_path: Path) -> None:
    assert_user_error(
        run_cli("scale-bench", "hpo", "--out", str(tmp_path), "--", "--workers", "3"), "--workers"
    )
