"""Collation into padded batches and the loader (workers, resume through the loader)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlpfctl.data.batching import BucketBatchSampler, FixedBatchSampler
from mlpfctl.data.collate import collate_events, make_loader
from mlpfctl.data.dataset import open_dataset
from mlpfctl.data.events import Event
from tests.unit.data.fixtures import key4hep_events, write_key4hep_reference


def _event(n: int, cls: int = 1) -> Event:
    X = np.ones((n, 17), np.float32)
    y = np.zeros((n, 14), np.float32)
    y[:, 0] = cls
    y[:, 1] = -1
    y[:, 2:7] = 2.0
    return Event(X=X, ytarget=y, ycand=y.copy())


def test_collate_pads_to_the_longest_event_with_a_mask() -> None:
    batch = collate_events([(4, _event(3)), (9, _event(5, cls=2))])
    assert batch.X.shape == (2, 5, 17)
    assert batch.mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch.target_cls.tolist() == [[1, 1, 1, 0, 0], [2] * 5]
    assert batch.target_charge[0, :3].tolist() == [-1, -1, -1]
    assert batch.target_p4.shape == (2, 5, 5)
    assert float(batch.X[0, 3:].abs().sum()) == 0.0
    assert batch.event_index.tolist() == [4, 9]
    assert batch.num_elements == 8 and batch.padded_elements == 10


def test_collate_pad_to_a_fixed_length() -> None:
    assert collate_events([(0, _event(3))], pad_to=16).X.shape == (1, 16, 17)


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    pytest.importorskip("awkward", reason="fixtures are written with awkward (physics extra)")
    write_key4hep_reference(tmp_path / "a.parquet", key4hep_events(60, seed=1))
    write_key4hep_reference(tmp_path / "b.parquet", key4hep_events(40, seed=2))
    return tmp_path


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_yields_every_event_once_with_its_index(dataset_dir: Path, workers: int) -> None:
    ds = open_dataset(dataset_dir)
    loader = make_loader(ds, BucketBatchSampler(ds.lengths, 64, seed=0), num_workers=workers)
    seen = []
    for batch in loader:
        idx = batch.event_index.tolist()
        seen += idx
        assert batch.mask.sum(dim=1).tolist() == ds.lengths[idx].tolist()
        assert batch.X.shape[0] * batch.X.shape[1] <= 64 or len(idx) == 1
    assert sorted(seen) == list(range(len(ds)))


def test_loader_resume_counts_batches_consumed_not_prefetched(dataset_dir: Path) -> None:
    ds = open_dataset(dataset_dir)
    sampler = FixedBatchSampler(ds.lengths, 8, seed=4)
    full = [b.event_index.tolist() for b in make_loader(ds, sampler, num_workers=2)]
    sampler = FixedBatchSampler(ds.lengths, 8, seed=4)
    loader = make_loader(ds, sampler, num_workers=2)
    got = []
    for i, batch in enumerate(loader):
        got.append(batch.event_index.tolist())
        if i == 2:
            state = sampler.state_dict()
            break
    assert state["position"] == 3
    resumed = FixedBatchSampler(ds.lengths, 8, seed=4)
    resumed.load_state_dict(state)
    rest = [b.event_index.tolist() for b in make_loader(ds, resumed)]
    assert got + rest == full
