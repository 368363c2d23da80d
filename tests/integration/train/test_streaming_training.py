"""Training on the streaming loader: a 1 MB budget (one shard per window), DataLoader workers with
their own shards, exact mid-epoch resume, and two DDP ranks on disjoint shards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlpfctl.config.loader import parse_set, resolve
from mlpfctl.config.schema import Config
from mlpfctl.train import checkpoint as ckpt
from mlpfctl.train.api import TrainRequest, train
from tests.integration.train.conftest import tiny_sets

STREAM = ("data.loader=stream", "data.cache_mb=1", "train.batch_events=8")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    generate = pytest.importorskip("mlpfctl.data.generate")
    pytest.importorskip("pythia8mc", reason="event generation needs the physics extra (pythia8mc)")
    out = tmp_path_factory.mktemp("ee_ttbar_shards")
    generate.generate_dataset(out, process="ee_ttbar", events=240, seed=11, events_per_shard=40)
    return out


def config(data: Path, *extra: str) -> Config:
    return resolve(None, parse_set(tiny_sets(data, *STREAM, *extra)), env={}).config


def test_streamed_training_resumes_exactly_with_workers(sharded: Path, tmp_path: Path) -> None:
    common = ("train.schedule_steps=30", "train.val_every=10", "model.dropout=0.1", "data.num_workers=2")
    full = train(TrainRequest(config(sharded, "train.steps=30", *common), tmp_path / "full", quiet=True))
    part = tmp_path / "part"
    train(TrainRequest(config(sharded, "train.steps=13", *common), part, quiet=True))
    resumed = train(TrainRequest(config(sharded, "train.steps=30", *common), part, resume=part, quiet=True))
    assert resumed.step == full.step == 30
    a, b = ckpt.load_latest(tmp_path / "full")[1]["model"], ckpt.load_latest(part)[1]["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.val_loss == full.val_loss


def test_two_ranks_stream_their_own_shards(sharded: Path, tmp_path: Path) -> None:
    result = train(
        TrainRequest(
            config(sharded, "train.steps=6", "train.val_every=6"), tmp_path / "ddp", nproc=2, quiet=True
        )
    )
    assert result.status == "completed" and result.step == 6 and result.val_loss is not None
