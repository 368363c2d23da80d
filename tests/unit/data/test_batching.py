"""Batch samplers: element bound, coverage, DDP sharding, determinism and mid-epoch resume."""

from __future__ import annotations

import numpy as np
import pytest

from mlpfctl.data.batching import BucketBatchSampler, FixedBatchSampler
from mlpfctl.errors import UsageError


def _lengths(n: int = 500, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(5, 300, n)


def test_bucket_batches_respect_the_element_budget_and_cover_every_event_once() -> None:
    lengths = _lengths()
    sampler = BucketBatchSampler(lengths, 2000, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for b in batches:
        assert len(b) * lengths[b].max() <= 2000
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))


def test_an_event_larger_than_the_budget_goes_alone() -> None:
    lengths = np.array([10, 10, 5000, 10])
    batches = list(BucketBatchSampler(lengths, 100, shuffle=False))
    assert [2] in batches
    assert sorted(np.concatenate(batches).tolist()) == [0, 1, 2, 3]


def test_bucketing_pads_much_less_than_fixed_batches() -> None:
    lengths = _lengths(2000)

    def padding(batches: list[list[int]]) -> float:
        padded = sum(len(b) * lengths[b].max() for b in batches)
        return 1 - lengths.sum() / padded

    bucket = padding(list(BucketBatchSampler(lengths, 4096, seed=0)))
    fixed = padding(list(FixedBatchSampler(lengths, 32, seed=0)))
    assert bucket < 0.1 < fixed


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("cls", ["bucket", "fixed"])
def test_ranks_get_disjoint_shares_and_the_same_number_of_batches(world: int, cls: str) -> None:
    lengths = _lengths(333)

    def make(rank: int) -> BucketBatchSampler | FixedBatchSampler:
        if cls == "bucket":
            return BucketBatchSampler(lengths, 1500, seed=3, rank=rank, world_size=world)
        return FixedBatchSampler(lengths, 7, seed=3, rank=rank, world_size=world)

    per_rank = [list(make(r)) for r in range(world)]
    assert len({len(b) for b in per_rank}) == 1
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen)) == len(lengths)  # disjoint and complete


def test_drop_last_trims_to_equal_counts() -> None:
    lengths = _lengths(101)
    counts = [
        len(list(FixedBatchSampler(lengths, 10, rank=r, world_size=3, drop_last=True))) for r in range(3)
    ]
    assert len(set(counts)) == 1
    assert counts[0] == 3  # 10 full batches -> 9 usable across 3 ranks


def test_order_is_deterministic_per_epoch_and_changes_between_epochs() -> None:
    lengths = _lengths()
    a, b = BucketBatchSampler(lengths, 2000, seed=5), BucketBatchSampler(lengths, 2000, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(BucketBatchSampler(lengths, 2000, seed=6)) != first


def test_resume_mid_epoch_yields_exactly_the_remaining_batches() -> None:
    lengths = _lengths()
    sampler = BucketBatchSampler(lengths, 2000, seed=2)
    sampler.set_epoch(4)
    full = list(sampler)
    it = iter(sampler)
    taken = [next(it) for _ in range(5)]
    state = sampler.state_dict()
    assert state["epoch"] == 4 and state["position"] == 5
    fresh = BucketBatchSampler(lengths, 2000, seed=2)
    fresh.load_state_dict(state)
    fresh.set_epoch(4)  # the training loop calls this again on resume: must not rewind
    rest = list(fresh)
    assert taken + rest == full
    assert list(fresh) == full  # the next pass is a whole epoch again


def test_resume_refuses_a_different_world_size() -> None:
    state = BucketBatchSampler(_lengths(), 2000, world_size=2).state_dict()
    with pytest.raises(UsageError, match="world_size"):
        BucketBatchSampler(_lengths(), 2000, world_size=4).load_state_dict(state)


def test_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        BucketBatchSampler([1, 2], 0)
    with pytest.raises(UsageError):
        FixedBatchSampler([1, 2], 2, rank=2, world_size=2)
