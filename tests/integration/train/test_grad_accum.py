"""Gradient accumulation (train.grad_accum): k micro-batches make the step of one k-times-larger batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlpfctl.train.api import TrainRequest, train
from tests.integration.train.test_training import config, weights

# fp32 and plain SGD without clipping: the weights then follow the gradients linearly, so a wrongly
# normalised accumulation (e.g. one micro-batch's counts as the denominator) fails the comparison.
# AdamW would hide it (g / sqrt(v) does not see a constant factor) and so would clipping; bf16
# autocast (the default on CPUs with AMX) rounds differently for other batch shapes.
COMMON = (
    "train.steps=6",
    "train.val_every=6",
    "train.shuffle=false",
    "train.schedule=constant",
    "train.amp=false",
    "train.optimizer=sgd",
    "train.lr=0.05",  # updates well above the tolerance
    "train.grad_clip=0",  # clipping would hide a wrongly scaled gradient
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
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    # Without accumulation the same 8-event batches take different steps.
    small = train(
        TrainRequest(config(ttbar_dir, "train.batch_events=8", *COMMON), tmp_path / "small", quiet=True)
    )
    assert small.step == 6
    c = weights(tmp_path / "small")
    assert not all(torch.allclose(a[key], c[key], atol=1e-5, rtol=1e-4) for key in a)


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
