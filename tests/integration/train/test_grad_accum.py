"""Gradient accumulation (train.grad_accum): k micro-batches make the step of one k-times-larger batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlpfctl.train.api import TrainRequest, train
from tests.integration.train.test_training import config, weights

# fp32: the equality of accumulated and whole batches is the claim (bf16 autocast rounds per
# micro-batch on CPUs with AMX)
COMMON = (
    "train.steps=6",
    "train.val_every=6",
    "train.shuffle=false",
    "train.schedule=constant",
    "train.amp=false",
)


def test_accumulated_micro_batches_match_one_large_batch(ttbar_dir: Path, tmp_path: Path) -> None:
    large = train(
        TrainRequest(config(ttbar_dir, "train.batch_events=16", *COMMON), tmp_path / "large", quiet=True)
    )
    accumulated = train(
        TrainRequest(
            config(ttbar_dir, "train.batch_events=8", "train.grad_accum=2", *COMMON),
            tmp_path / "accum",
            quiet=True,
        )
    )
    assert accumulated.step == large.step == 6
    assert accumulated.val_loss == pytest.approx(large.val_loss, rel=1e-4)
    a, b = weights(tmp_path / "large"), weights(tmp_path / "accum")
    # Padding to 16 or to 8 events changes float rounding (~1e-7); AdamW divides by sqrt(v), which
    # turns that into up to ~1e-4 on parameters whose gradients are near zero (the regression
    # heads start at zero). A wrong normalisation moves every parameter by O(lr) = 1e-3 per step.
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-3)
    # Without accumulation the same 8-event batches take different steps.
    small = train(
        TrainRequest(config(ttbar_dir, "train.batch_events=8", *COMMON), tmp_path / "small", quiet=True)
    )
    assert small.val_loss != pytest.approx(large.val_loss, rel=1e-4)


def test_two_ranks_accumulating_match_one_rank(ttbar_dir: Path, tmp_path: Path) -> None:
    """2 ranks x 4 events x 2 micro-batches = 16 events per step; DDP syncs only the last one."""
    one = train(
        TrainRequest(config(ttbar_dir, "train.batch_events=16", *COMMON), tmp_path / "one", quiet=True)
    )
    two = train(
        TrainRequest(
            config(
                ttbar_dir,
                "train.batch_events=4",
                "train.grad_accum=2",
                "train.lr_scaling=linear",
                "train.reference_batch=16",
                *COMMON,
            ),
            tmp_path / "two",
            nproc=2,
            quiet=True,
        )
    )
    assert two.val_loss == pytest.approx(one.val_loss, rel=1e-3)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-3, rtol=1e-3)
    info = json.loads((tmp_path / "two" / "model.json").read_text())
    # The LR rule sees the global batch 2 x 4 x 2 = 16 (without the accumulation it would be 0.5).
    assert info["lr_scale"] == 1.0


def test_resume_with_accumulation_is_exact(ttbar_dir: Path, tmp_path: Path) -> None:
    common = ("train.batch_events=8", "train.grad_accum=3", "train.schedule_steps=8", "train.val_every=4")
    full = train(TrainRequest(config(ttbar_dir, "train.steps=8", *common), tmp_path / "full", quiet=True))
    part = tmp_path / "part"
    train(TrainRequest(config(ttbar_dir, "train.steps=3", *common), part, quiet=True))
    resumed = train(TrainRequest(config(ttbar_dir, "train.steps=8", *common), part, resume=part, quiet=True))
    assert resumed.step == full.step == 8
    a, b = weights(tmp_path / "full"), weights(part)
    for key in a:
        assert torch.equal(a[key], b[key]), key
