"""``mlpfctl submit -- data generate`` on the local SLURM: an array of 4 tasks writes disjoint
shard blocks, a dependent final step writes the manifest; a failed task leaves its shard out, the
final step refuses to write a manifest, and a resubmission regenerates only the missing shard.
The result is byte for byte the single-node dataset of the same seed and shard layout."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlpfctl.data.manifest import Manifest
from tests.helpers import run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("local_slurm")]
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}
EVENTS, PER_SHARD, SEED, TASKS = 160, 20, 3, 4  # 8 shards, 2 per task


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "MLPFCTL_RUN__OUT_DIR": str(tmp_path / "runs"),
        "MLPFCTL_SUBMIT__REGISTRY": str(tmp_path / "jobs.jsonl"),
        "MLPFCTL_SUBMIT__SYSTEM": "local",
        "MLPFCTL_SUBMIT__CPUS_PER_TASK": "1",
        "MLPFCTL_SUBMIT__VENV": sys.prefix,
    }


def _submit(tmp_path: Path, name: str, out: Path) -> dict[str, str]:
    argv = ["--array", str(TASKS), "--time", "10", "--json", "--set", f"run.name={name}", "--"]
    job = ["data", "generate", "--events", str(EVENTS), "--events-per-shard", str(PER_SHARD)]
    job += ["--seed", str(SEED), "--out", str(out)]
    proc = run_cli("submit", *argv, *job, env=_env(tmp_path), cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def _states(job_id: str) -> list[str]:
    """JobState of every task of ``job_id`` (an array lists one line per task)."""
    proc = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [
        part.split("=", 1)[1]
        for line in proc.stdout.splitlines()
        for part in line.split()
        if part.startswith("JobState=")
    ]


def _wait(job_id: str, tasks: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        states = _states(job_id)
        if len(states) == tasks and set(states) <= TERMINAL:
            return sorted(states)
        assert time.monotonic() < deadline, f"job {job_id}: {states} after {timeout} s"
        time.sleep(2)


def _final_step(record: dict[str, str], timeout: float) -> tuple[str, str]:
    """(state, log) of the manifest step queued after the array."""
    (state,) = _wait(record["job_id"], 1, timeout)
    log = Path(record["run_dir"]) / f"slurm-{record['job_id']}.out"
    return state, log.read_text() if log.is_file() else ""


def test_array_job_matches_a_single_node_run_and_a_rerun_fills_only_missing_shards(tmp_path: Path) -> None:
    pytest.importorskip("pythia8mc", reason="generation needs the physics extra")
    from mlpfctl.data.generate import generate_dataset

    reference = tmp_path / "single-node"
    generate_dataset(reference, events=EVENTS, seed=SEED, events_per_shard=PER_SHARD, workers=1)

    out = tmp_path / "array"
    out.mkdir()
    blocker = out / "ee_ttbar_00005.parquet"
    blocker.mkdir()  # task 2 cannot write its second shard: that task fails
    first = _submit(tmp_path, "gen-1", out)
    assert first["script"].endswith("manifest.sh") and first["after"] == [f"{first['array_job_id']}:any"]
    assert _wait(first["array_job_id"], TASKS, 600) == ["COMPLETED"] * 3 + ["FAILED"]
    state, log = _final_step(first, 300)
    assert state == "FAILED" and "1 of 8 shards are missing or incomplete (ee_ttbar_00005.parquet)" in log
    assert not (out / "manifest.json").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet") if p.is_file()}
    assert len(kept) == 7

    blocker.rmdir()
    second = _submit(tmp_path, "gen-2", out)
    assert _wait(second["array_job_id"], TASKS, 600) == ["COMPLETED"] * TASKS
    state, log = _final_step(second, 300)
    assert state == "COMPLETED", log
    # only the missing shard was generated again
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept
    assert Manifest.read(out).content() == Manifest.read(reference).content()
    shards = sorted(p.name for p in reference.glob("*.parquet"))
    assert shards == sorted(p.name for p in out.glob("*.parquet")) and len(shards) == 8
    for name in shards:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
