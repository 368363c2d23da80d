"""Real training runs on generated events: learning, exact resume, DDP equivalence, divergence,
signals, evaluation against the baseline and ONNX export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from mlpfctl.config.loader import parse_set, resolve
from mlpfctl.config.schema import Config
from mlpfctl.errors import EXIT_CHECKPOINTED
from mlpfctl.launch.local import launch_local
from mlpfctl.train import checkpoint as ckpt
from mlpfctl.train.api import DivergedError, TrainRequest, TrainResult, train
from mlpfctl.train.runlog import read_metrics
from tests.helpers import run_cli
from tests.integration.train.conftest import tiny_sets


def config(data: Path, *extra: str) -> Config:
    return resolve(None, parse_set(tiny_sets(data, *extra)), env={}).config


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = ckpt.load_latest(run_dir)[1]["model"]
    assert isinstance(state, dict)
    return state


@pytest.fixture(scope="module")
def trained(ttbar_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    run_dir = tmp_path_factory.mktemp("runs") / "learn"
    cfg = config(ttbar_dir, "train.steps=120", "train.val_every=40", "train.batch_events=8", "train.lr=2e-3")
    return train(TrainRequest(cfg, run_dir, quiet=True))


def test_short_training_learns(trained: TrainResult) -> None:
    assert trained.status == "completed" and trained.step == 120
    losses = [h["Total"] for h in trained.history]
    assert len(losses) == 3
    assert losses[0] > losses[1] > losses[2], losses
    records = read_metrics(trained.run_dir)
    train_records = [r for r in records if r["kind"] == "train"]
    # From the first logged window (steps 1-5) to the end the loss clearly falls.
    assert losses[-1] < 0.75 * train_records[0]["Total"], (train_records[0]["Total"], losses)
    assert train_records and {"Total", "Classification_binary", "Regression_pt", "lr", "events_per_s"} <= set(
        train_records[-1]
    )
    assert any(r["kind"] == "valid" and "confusion" in r and "eff/ch.had" in r for r in records)
    assert (trained.run_dir / "config.toml").is_file() and (trained.run_dir / "model.json").is_file()
    assert list((trained.run_dir / "tensorboard").iterdir())
    assert trained.checkpoint is not None and trained.checkpoint.is_file()


def test_resume_is_exact(ttbar_dir: Path, tmp_path: Path) -> None:
    """Interrupted at step 13 and resumed to 30 ends with bit-identical weights (dropout on)."""
    common = ("train.batch_events=8", "train.schedule_steps=30", "train.val_every=10", "model.dropout=0.1")
    full = train(TrainRequest(config(ttbar_dir, "train.steps=30", *common), tmp_path / "full", quiet=True))
    part = tmp_path / "part"
    train(TrainRequest(config(ttbar_dir, "train.steps=13", *common), part, quiet=True))
    resumed = train(TrainRequest(config(ttbar_dir, "train.steps=30", *common), part, resume=part, quiet=True))
    assert resumed.step == full.step == 30
    a, b = weights(tmp_path / "full"), weights(part)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.val_loss == full.val_loss


def test_two_ranks_match_one_rank(ttbar_dir: Path, tmp_path: Path) -> None:
    """gloo DDP with 2 x 4 events per step follows the 1 x 8 events run (same global batch)."""
    common = ("train.steps=6", "train.val_every=6", "train.shuffle=false")
    one = train(
        TrainRequest(config(ttbar_dir, "train.batch_events=8", *common), tmp_path / "one", quiet=True)
    )
    two = train(
        TrainRequest(
            config(ttbar_dir, "train.batch_events=4", *common), tmp_path / "two", nproc=2, quiet=True
        )
    )
    assert two.status == "completed" and two.step == 6
    assert one.val_loss is not None and two.val_loss is not None
    assert two.val_loss == pytest.approx(one.val_loss, rel=1e-3)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-3, rtol=1e-3)
    info = json.loads((tmp_path / "two" / "model.json").read_text())
    assert info["world_size"] == 2 and info["lr_scale"] == 1.0


def test_lr_scaling_with_two_ranks(ttbar_dir: Path, tmp_path: Path) -> None:
    cfg = config(
        ttbar_dir,
        "train.steps=2",
        "train.val_every=2",
        "train.batch_events=4",
        "train.lr_scaling=linear",
        "train.lr=1e-3",
        "train.schedule=constant",
    )
    train(TrainRequest(cfg, tmp_path / "scaled", nproc=2, quiet=True))
    info = json.loads((tmp_path / "scaled" / "model.json").read_text())
    assert info["lr_scale"] == 2.0 and info["lr"] == pytest.approx(2e-3)


def test_exploding_loss_stops_with_diverged_error(ttbar_dir: Path, tmp_path: Path) -> None:
    cfg = config(
        ttbar_dir,
        "train.steps=200",
        "train.batch_events=8",
        "train.optimizer=sgd",
        "train.lr=10",
        "train.grad_clip=0",
        "train.momentum=0.99",
        "train.schedule=constant",
    )
    with pytest.raises(DivergedError, match="diverged"):
        train(TrainRequest(cfg, tmp_path / "boom", quiet=True))


def test_hook_prunes_the_run(ttbar_dir: Path, tmp_path: Path) -> None:
    cfg = config(ttbar_dir, "train.steps=40", "train.val_every=5", "train.batch_events=8")
    result = train(TrainRequest(cfg, tmp_path / "pruned", hooks=PruneAt(10), quiet=True))
    assert result.status == "pruned" and result.step == 10 and len(result.history) == 2


class PruneAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_validation(self, step: int, metrics: dict[str, float]) -> str:
        assert metrics["val_loss"] == metrics["Total"] and "eff/ch.had" in metrics
        return "prune" if step >= self.step else "continue"


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_3(ttbar_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "sig"
    sets = [
        arg for s in tiny_sets(ttbar_dir, "train.batch_events=8", "train.log_every=1") for arg in ("--set", s)
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlpfctl", "train", "--steps", "100000", "--run-dir", str(run_dir), *sets],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (run_dir / "metrics.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_CHECKPOINTED, err
    assert "error:" in err and "--resume" in err
    _path, state = ckpt.load_latest(run_dir)
    assert state["step"] >= 1
    resumed = run_cli("train", "--resume", str(run_dir), "--steps", str(state["step"] + 2), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["step"] == state["step"] + 2


@pytest.mark.physics
def test_evaluate_compares_with_baseline(trained: TrainResult) -> None:
    proc = run_cli("evaluate", str(trained.run_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    for source in ("mlpf", "baseline"):
        assert set(summary[source]["efficiency"]) >= {"ch.had", "n.had", "gamma"}
        assert summary[source]["jet_response_median"] is not None
        assert summary[source]["met_residual_iqr"] is not None
    assert summary["jets"]["target_jets"] > 0
    for name in ("jet_response.png", "met_residual.png", "particles.png"):
        assert (trained.run_dir / "evaluation" / name).stat().st_size > 1000


def test_export_checks_onnx_against_pytorch(trained: TrainResult, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = tmp_path / "m.onnx"
    proc = run_cli("export", str(trained.run_dir), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] and out.stat().st_size > 10_000
    assert len(result["element_counts"]) > 1  # the dynamic element axis was exercised
    assert max(result["max_abs_diff"].values()) <= result["atol"]


def test_max_time_stops_cleanly_with_a_final_validation_and_checkpoint(
    ttbar_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "budget"
    sets = [arg for s in tiny_sets(ttbar_dir, "train.batch_events=8") for arg in ("--set", s)]
    start = time.monotonic()
    proc = run_cli(
        "train", "--steps", "100000", "--max-time", "4s", "--run-dir", str(run_dir), "--json", *sets
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    step = result["step"]
    assert result["status"] == "time_limit" and 0 < step < 100000
    assert result["stop_reason"] == f"train.max_time=4s reached at step {step}"
    assert result["history"][-1]["step"] == step  # the final validation is of the last step
    _path, state = ckpt.load_latest(run_dir)
    assert state["step"] == step
    assert json.loads((run_dir / "result.json").read_text())["status"] == "time_limit"
    assert elapsed < 120  # the budget, not 100000 steps, ended the run (start-up is outside it)


def test_on_a_signal_no_rank_returns_before_the_checkpoint_is_on_disk(
    ttbar_dir: Path, tmp_path: Path
) -> None:
    """Both ranks get SIGTERM: they agree on a step, rank 0 writes its checkpoint, and rank 1
    leaves the loop only after the file is complete (a launcher that ends the job step at the
    first non-zero exit, srun --kill-on-bad-exit, must not cut rank 0's write short)."""
    cfg = config(ttbar_dir, "train.steps=100000", "train.batch_events=4", "train.log_every=1")
    request = TrainRequest(cfg, tmp_path / "run", quiet=True)
    result = launch_local(signalled_rank, 2, (request,))
    seen = json.loads((tmp_path / "run" / "rank1.json").read_text())
    assert result.status == "checkpointed" and seen["step"] == result.step >= 1
    assert ckpt.checkpoint_path(tmp_path / "run", result.step).name in seen["on_disk"]


def signalled_rank(request: TrainRequest) -> TrainResult:
    """A rank that signals itself once training runs, then records what is on disk when its
    loop returns. Rank 0 writes on a slow file system (1 s per checkpoint)."""
    import threading

    from mlpfctl.launch.runenv import RunEnv
    from mlpfctl.train.loop import run_rank

    rank = RunEnv.from_env().rank
    if rank == 0:
        fast_save = ckpt.save

        def slow_save(*args: Any, **kwargs: Any) -> Path:
            time.sleep(1.0)
            return fast_save(*args, **kwargs)

        ckpt.save = slow_save  # type: ignore[assignment]

    def stop_when_training() -> None:
        while not (request.run_dir / "metrics.jsonl").is_file():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_training, daemon=True).start()
    result = run_rank(request)
    if rank == 1:
        on_disk = [p.name for p in ckpt.list_checkpoints(request.run_dir)]
        text = json.dumps({"step": result.step, "on_disk": on_disk})
        (request.run_dir / "rank1.json").write_text(text)
    return result
