"""scale-bench batch end to end on real generated events: accumulation, LR rules, records, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import assert_user_error, run_cli
from tests.integration.train.conftest import tiny_sets


def _sets(data: Path) -> list[str]:
    out: list[str] = []
    for item in tiny_sets(data):
        out += ["--set", item]
    return out


@pytest.mark.slow
def test_batch_scan_with_accumulation_and_lr_rules(ttbar_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sb"
    args = ["--global-batches", "8,32", "--max-local-batch", "16", "--lr-scaling", "none,linear"]
    args += ["--optimizer", "lamb", "--epochs", "0.3", "--out", str(out), "--json", *_sets(ttbar_dir)]
    proc = run_cli("scale-bench", "batch", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    points = {(p["lr_scaling"], p["global_batch"]): p for p in data["batch"]}
    assert set(points) == {("none", 8), ("none", 32), ("linear", 8), ("linear", 32)}
    # 32 events = 2 micro-batches of 16 (--max-local-batch 16); the same epochs in fewer steps.
    assert (points[("linear", 32)]["local_batch"], points[("linear", 32)]["grad_accum"]) == (16, 2)
    small, large = points[("linear", 8)]["steps"], points[("linear", 32)]["steps"]
    assert small > large and abs(8 * small - 32 * large) <= 32
    base_lr = points[("none", 8)]["lr"]
    assert points[("none", 32)]["lr"] == pytest.approx(base_lr)
    assert points[("linear", 32)]["lr"] == pytest.approx(4 * base_lr)  # linear rule over the smallest batch
    for point in points.values():
        assert point["val_loss"] > 0 and point["events_per_s"] > 0
    assert points[("none", 8)]["gap"] == 0.0
    # the smallest batch is the reference: every rule's LR is the base LR there, so it trains once
    assert points[("linear", 8)]["lr"] == pytest.approx(base_lr)
    assert points[("linear", 8)]["val_loss"] == points[("none", 8)]["val_loss"]
    assert not (out / "runs" / "batch-lamb-linear-G8-r0").exists()
    assert (out / "runs" / "batch-lamb-none-G8-r0").is_dir()
    choices = {c["lr_scaling"]: c for c in data["batch-largest"]}
    assert set(choices) == {"none", "linear"} and choices["none"]["tolerance"] == 0.02
    record = json.loads(
        (out / "batch-global_batch32-lr_scalinglinear-optimizerlamb-repeat0.json").read_text()
    )
    assert record["kind"] == "batch" and record["settings"]["reference_batch"] == 8
    for name in ("batch.csv", "batch.png", "batch-largest.csv"):
        assert (out / name).stat().st_size > 0, name


def test_batch_scan_bad_input_and_dry_run(ttbar_dir: Path, tmp_path: Path) -> None:
    common = ["--out", str(tmp_path / "sb"), *_sets(ttbar_dir)]
    assert_user_error(
        run_cli("scale-bench", "batch", "--global-batches", "8,30", "--ranks", "4", *common),
        "does not divide",
    )
    assert_user_error(run_cli("scale-bench", "batch", "--lr-scaling", "cubic", *common), "cubic")
    assert_user_error(run_cli("scale-bench", "batch", "--global-batches", "8", *common), "at least two")
    proc = run_cli("scale-bench", "batch", "--global-batches", "8,64", "--dry-run", "--json", *common)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert len(plan["points"]) == 2 * 3 * 2 and not (tmp_path / "sb").exists()
