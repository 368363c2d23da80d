"""Bit-identical resume from any interruption: a run interrupted at random steps (SIGKILL and
SIGTERM, one and two ranks), each piece started the way a requeued job would be (``--resume``,
another intra-op thread count), ends with exactly the weights and optimizer state of an
uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mlpfctl.errors import EXIT_CHECKPOINTED
from mlpfctl.train import checkpoint as ckpt
from tests.integration.train.conftest import tiny_sets

STEPS = 24


def _command(run_dir: Path, data: Path, nproc: int, batch: int, resume: bool) -> list[str]:
    sets = tiny_sets(
        data,
        f"train.batch_events={batch}",
        "train.log_every=1",
        "train.checkpoint_every=2",
        "train.val_every=4",
        "train.val_max_events=16",
        "model.dropout=0.1",
    )
    args = [sys.executable, "-m", "mlpfctl", "train", "--steps", str(STEPS), "--nproc", str(nproc)]
    args += ["--resume", str(run_dir)] if resume else ["--run-dir", str(run_dir)]
    return args + [arg for s in sets for arg in ("--set", s)]


def _trained_steps(metrics: Path, offset: int) -> int:
    """The last training step logged after ``offset`` bytes (records of earlier pieces that a
    SIGKILL made the run repeat are before it)."""
    if not metrics.is_file():
        return 0
    with metrics.open("rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode().splitlines()
    steps = [json.loads(line)["step"] for line in lines if line.endswith("}") and '"train"' in line]
    return max(steps, default=0)


def _piece(cmd: list[str], run_dir: Path, threads: int, stop_at: int | None, sig: signal.Signals) -> int:
    metrics = run_dir / "metrics.jsonl"
    offset = metrics.stat().st_size if metrics.is_file() else 0
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    if stop_at is not None:
        deadline = time.monotonic() + 300
        while proc.poll() is None and _trained_steps(metrics, offset) < stop_at:
            assert time.monotonic() < deadline, "the run did not reach its interruption step"
            time.sleep(0.02)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)  # the launcher and its ranks, as SLURM does
    _out, err = proc.communicate(timeout=300)
    expected = (0,) if stop_at is None else (0, EXIT_CHECKPOINTED, -signal.SIGKILL)
    assert proc.returncode in expected, (proc.returncode, err.decode()[-2000:])
    return proc.returncode


def _state(run_dir: Path) -> dict:  # type: ignore[type-arg]
    path, state = ckpt.load_latest(run_dir)
    assert state["step"] == STEPS, path
    return state


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2])
def test_resume_after_random_interruptions_is_bit_identical(
    ttbar_dir: Path, tmp_path: Path, nproc: int
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    batch = 8 // nproc  # 21 batches per epoch per rank: the runs cross an epoch boundary
    # Five interruptions per rank count: SIGKILL and SIGTERM alternately, at steps >= 3 (a
    # checkpoint exists by then), each piece on another thread count than the one before.
    stops = sorted(rng.sample(range(3, STEPS - 1), 5))
    signals = [signal.SIGKILL, signal.SIGTERM] * 3
    rng.shuffle(signals)
    note = f"seed {seed}: interruptions at {stops} by {[s.name for s in signals[:5]]}"

    full = tmp_path / "full"
    _piece(_command(full, ttbar_dir, nproc, batch, resume=False), full, 1, None, signal.SIGTERM)
    chain = tmp_path / "chain"
    for i, (stop_at, sig) in enumerate(zip(stops, signals, strict=False)):
        _piece(_command(chain, ttbar_dir, nproc, batch, resume=i > 0), chain, 1 + i % 2, stop_at, sig)
    _piece(_command(chain, ttbar_dir, nproc, batch, resume=True), chain, 2, None, signal.SIGTERM)

    a, b = _state(full), _state(chain)
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), (note, key)
    opt_a, opt_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for index, slots in opt_a.items():
        for name, value in slots.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b[index][name])), (
                note,
                index,
                name,
            )
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == STEPS
    assert a["history"][-1]["Total"] == b["history"][-1]["Total"], note
