"""A run directory belongs to one run: the rules of ``train`` for --run-dir and --resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlpfctl.config import Override, resolve
from mlpfctl.config.schema import Config
from mlpfctl.errors import DataError, UsageError
from mlpfctl.train import rundir


def config(tmp_path: Path, **sets: object) -> Config:
    overrides = [Override("data.path", str(tmp_path / "data"), "test")]
    overrides += [Override(key.replace("__", "."), value, "test") for key, value in sets.items()]
    return resolve(None, overrides, env={}, cwd=tmp_path).config


def started_run(directory: Path, cfg: Config) -> None:
    """What a run looks like after its first attempt stopped before the first checkpoint."""
    with rundir.claim(rundir.plan(directory, cfg, None, None, run_dir_given=True), cfg):
        (directory / "config.toml").write_text("[train]\n")
        (directory / "metrics.jsonl").write_text('{"step": 1}\n')


def test_a_new_directory_is_claimed_with_absolute_and_relative_data_paths(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    run = tmp_path / "runs" / "r"
    plan = rundir.plan(run, cfg, None, None, run_dir_given=True)
    assert not run.exists()  # planning writes nothing
    with rundir.claim(plan, cfg):
        pass
    record = json.loads((run / rundir.RUN_FILE).read_text())
    assert record["data"] == {"path": str(tmp_path / "data"), "relative": "../../data"}
    assert record["fingerprint"] == rundir.fingerprint(cfg)


def test_an_existing_run_is_never_trained_into_afresh(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    run = tmp_path / "r"
    started_run(run, cfg)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(UsageError, match="already holds a run") as info:
        rundir.plan(run, cfg, None, None, run_dir_given=True)
    assert "--resume" in (info.value.hint or "")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    # Older runs without run.json count too.
    (run / rundir.RUN_FILE).unlink()
    with pytest.raises(UsageError, match="already holds a run"):
        rundir.plan(run, cfg, None, None, run_dir_given=True)


def test_other_ranks_of_a_launch_train_in_the_directory_rank_0_claimed(tmp_path: Path) -> None:
    """srun/torchrun run ``train --run-dir DIR`` once per rank: rank 0 may have written run.json
    before rank 1 plans, and rank 1 must join that run, not refuse it (the 2-task SLURM job)."""
    cfg = config(tmp_path)
    run = tmp_path / "r"
    with rundir.claim(rundir.plan(run, cfg, None, None, run_dir_given=True), cfg):
        plan = rundir.plan(run, cfg, None, None, run_dir_given=True, main_rank=False)
        assert plan.resume is None and plan.run_dir == run
        with pytest.raises(UsageError, match="already holds a run"):
            rundir.plan(run, cfg, None, None, run_dir_given=True)  # rank 0 of another launch


def test_a_directory_with_only_job_files_may_become_a_run(tmp_path: Path) -> None:
    run = tmp_path / "job"
    run.mkdir()
    (run / "job.sh").write_text("#!/bin/bash\n")  # what 'mlpfctl submit' puts there first
    plan = rundir.plan(run, config(tmp_path), None, None, run_dir_given=True)
    assert plan.resume is None and plan.note is None


def test_resume_without_checkpoint_restarts_only_the_same_run(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    run = tmp_path / "r"
    started_run(run, cfg)
    # The requeued job: same settings, same directory -> from scratch, stale logs dropped.
    plan = rundir.plan(run, cfg, run, run, run_dir_given=True)
    assert plan.resume is None and plan.note and "from scratch" in plan.note
    with rundir.claim(plan, cfg):
        assert not (run / "metrics.jsonl").exists()
    # Also when only --resume names it (no --run-dir): the record says it is this run.
    assert rundir.plan(run, cfg, run, run, run_dir_given=False).resume is None
    # Other settings: another run, never silently mixed.
    other = config(tmp_path, train__lr=0.1)
    with pytest.raises(UsageError, match="belongs to another run"):
        rundir.plan(run, other, run, run, run_dir_given=True)


def test_resume_of_an_empty_directory_reports_the_missing_checkpoint(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no checkpoint found"):
        rundir.plan(tmp_path / "new", config(tmp_path), empty, empty, run_dir_given=False)
    with pytest.raises(DataError, match="no checkpoint found"):
        rundir.plan(empty, config(tmp_path), empty, empty, run_dir_given=False)
    # A requeued job whose first attempt died before writing anything: both flags name it.
    plan = rundir.plan(empty, config(tmp_path), empty, empty, run_dir_given=True)
    assert plan.resume is None and plan.note


def test_resume_continues_a_run_with_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step-00000010.ckpt").write_bytes(b"x")
    plan = rundir.plan(run, config(tmp_path, train__steps=50), run, run, run_dir_given=False)
    assert plan.resume == run


def test_a_user_error_undoes_the_claim(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    run = tmp_path / "a" / "b" / "r"
    with (
        pytest.raises(DataError),
        rundir.claim(rundir.plan(run, cfg, None, None, run_dir_given=True), cfg),
    ):
        (run / "config.toml").write_text("x")
        raise DataError("bad shard")
    assert not (tmp_path / "a").exists()  # the directories made for the run are gone too
    # A resumed run gets its record back, byte for byte and with its times.
    started_run(run, cfg)
    record = run / rundir.RUN_FILE
    before = (record.read_bytes(), record.stat().st_mtime_ns)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step-00000002.ckpt").write_bytes(b"x")
    other = config(tmp_path, train__steps=9)
    with (
        pytest.raises(DataError),
        rundir.claim(rundir.plan(run, other, run, run, run_dir_given=False), other),
    ):
        assert record.read_bytes() != before[0]
        raise DataError("checkpoint does not fit")
    assert (record.read_bytes(), record.stat().st_mtime_ns) == before


def test_a_moved_run_finds_its_data(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    (tmp_path / "data").mkdir()
    run = tmp_path / "r"
    with rundir.claim(rundir.plan(run, cfg, None, None, run_dir_given=True), cfg):
        pass
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    os.rename(tmp_path / "data", moved / "data")
    os.rename(run, moved / "r")
    configured = str(tmp_path / "data")  # what the run's config.toml says: gone now
    assert rundir.locate_data(moved / "r", configured) == str(moved / "data")
    # Where the configured path exists, it wins.
    (tmp_path / "data").mkdir()
    assert rundir.locate_data(moved / "r", configured) == configured
