"""Run directories end to end: one run per directory, a requeued job before its first checkpoint,
a run moved together with its data, crafted checkpoints refused by the real commands."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlpfctl.train import checkpoint as ckpt
from mlpfctl.train.rundir import RUN_FILE
from tests.helpers import assert_user_error, run_cli
from tests.integration.train.conftest import tiny_sets


def sets(data: Path, *extra: str) -> list[str]:
    return [arg for item in tiny_sets(data, "train.val_every=2", *extra) for arg in ("--set", item)]


def tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_one_run_per_directory_and_a_requeue_before_the_first_checkpoint(
    ttbar_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = ["train", "--steps", "4", "--run-dir", str(run), *sets(ttbar_dir, "train.checkpoint_every=100")]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert json.loads((run / RUN_FILE).read_text())["data"]["path"] == str(ttbar_dir)
    before = tree(run)
    again = run_cli(*args)  # a second run into the same directory: refused, nothing touched
    assert_user_error(again, "already holds a run", "--resume")
    assert tree(run) == before

    # The first attempt of a SLURM job was stopped before its first checkpoint: its requeue runs
    # the same command plus --resume, and the run starts from scratch in the same directory.
    shutil.rmtree(run / "checkpoints")
    (run / "result.json").unlink()
    requeued = run_cli(*args, "--resume", str(run), "--json")
    assert requeued.returncode == 0, requeued.stderr
    assert "no checkpoint yet" in requeued.stderr and json.loads(requeued.stdout)["step"] == 4
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == sorted(set(steps))  # the stopped attempt's log was dropped, not continued

    # Other settings never continue in that directory, with or without checkpoints.
    shutil.rmtree(run / "checkpoints")
    other = run_cli(*args, "--resume", str(run), "--lr", "0.1")
    assert_user_error(other, "belongs to another run")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(run_cli("train", "--resume", str(empty), *sets(ttbar_dir)), "no checkpoint found")


@pytest.mark.slow
def test_a_run_moved_with_its_data_works_from_any_directory(ttbar_dir: Path, tmp_path: Path) -> None:
    place = tmp_path / "a"
    shutil.copytree(ttbar_dir, place / "data")
    cwd = place / "work"
    cwd.mkdir()
    trained = run_cli(
        "train", "--data", "../data", "--steps", "2", "--run-dir", "run", *sets(place / "data"), cwd=cwd
    )
    assert trained.returncode == 0, trained.stderr
    config = (cwd / "run" / "config.toml").read_text()
    assert f'path = "{place / "data"}"' in config  # absolute, not "../data"
    os.rename(place, tmp_path / "b")  # run and data move together
    moved = tmp_path / "b" / "work" / "run"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = run_cli("train", "--resume", str(moved), "--steps", "4", "--json", cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["step"] == 4
    assert json.loads((moved / RUN_FILE).read_text())["data"]["path"] == str(tmp_path / "b" / "data")
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    exported = run_cli("export", str(moved), "--out", "m.onnx", "--json", cwd=elsewhere)
    assert exported.returncode == 0, exported.stderr
    assert (elsewhere / "m.onnx").stat().st_size > 10_000


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_crafted_checkpoints_are_refused_by_train_and_evaluate(ttbar_dir: Path, tmp_path: Path) -> None:
    import torch

    run = tmp_path / "run"
    trained = run_cli("train", "--steps", "2", "--run-dir", str(run), *sets(ttbar_dir))
    assert trained.returncode == 0, trained.stderr
    newest = ckpt.list_checkpoints(run)[-1]
    _path, state = ckpt.load_latest(run)
    marker = tmp_path / "pwned"
    state["history"] = [_System(marker)]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()  # the attacker recomputes the checksum
    newest.write_bytes(ckpt.MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    assert_user_error(run_cli("train", "--resume", str(run), "--steps", "3"), str(newest), "refused")
    assert_user_error(run_cli("evaluate", str(run)), str(newest), "refused")
    assert_user_error(run_cli("train", "--resume", str(newest), "--steps", "3"), str(newest), "refused")
    assert not marker.exists()
