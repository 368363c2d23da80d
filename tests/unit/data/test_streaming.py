"""Streaming: shard-disjoint lanes, memory-bounded windows, padding, determinism, exact resume,
and the loader that follows the plan (each shard read once per epoch per rank, worker order,
errors from workers)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mlpfctl.data.batching import (
    BucketBatchSampler,
    StreamingBatchSampler,
    choose_loader,
    sampler_for,
)
from mlpfctl.data.collate import make_loader
from mlpfctl.data.dataset import EventDataset, open_dataset
from mlpfctl.errors import DataError, UsageError
from tests.unit.data.fixtures import write_key4hep_synthetic

SHARDS, PER_SHARD = 12, 250


def _synthetic(shards: int = SHARDS, per_shard: int = PER_SHARD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 300, shards * per_shard)
    groups = np.repeat(np.arange(shards), per_shard)
    return lengths, groups, lengths * 100 + 8


def _stream(**kw: object) -> StreamingBatchSampler:
    lengths, groups, nbytes = _synthetic()
    args: dict[str, object] = {"window_bytes": 3 * PER_SHARD * 160 * 100, "max_elements": 4000, "seed": 3}
    args.update(kw)
    return StreamingBatchSampler(lengths, groups, nbytes, **args)  # type: ignore[arg-type]


def _padding(lengths: np.ndarray, batches: list[list[int]]) -> float:
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    return 1 - float(lengths.sum()) / padded


@pytest.mark.parametrize(("world", "lanes"), [(1, 1), (2, 1), (2, 2), (3, 2)])
def test_lanes_read_disjoint_shards_in_bounded_windows_and_cover_every_event_once(
    world: int, lanes: int
) -> None:
    lengths, groups, nbytes = _synthetic()
    plans = [_stream(world_size=world, rank=r, lanes=lanes).plan() for r in range(world)]
    assert len({len(p) for p in plans}) == 1  # DDP ranks step together
    seen = np.concatenate([p.events() for p in plans])
    assert sorted(seen.tolist()) == list(range(len(lengths)))  # every event exactly once
    window = 3 * PER_SHARD * 160 * 100
    owner: dict[int, tuple[int, int]] = {}
    for rank, plan in enumerate(plans):
        for j, batch in enumerate(plan):
            assert len(batch) * lengths[batch].max() <= 4000 or len(batch) == 1
            for shard in set(groups[batch].tolist()):
                assert owner.setdefault(shard, (rank, j % lanes)) == (rank, j % lanes)  # one lane per shard
        for lane in range(lanes):
            # shards in use at the same time (first to last batch that needs them) fit the window
            mine = [groups[b] for b in list(plan)[lane::lanes]]
            first = {s: min(i for i, g in enumerate(mine) if s in g) for s in set(np.concatenate(mine))}
            last = {s: max(i for i, g in enumerate(mine) if s in g) for s in first}
            for i in range(len(mine)):
                live = [s for s in first if first[s] <= i <= last[s]]
                assert sum(int(nbytes[groups == s].sum()) for s in live) <= window


def test_padding_stays_as_low_as_the_global_shuffle_once_a_window_holds_a_sort_chunk() -> None:
    lengths, _, _ = _synthetic()
    streamed = list(_stream(window_bytes=int(1e12)).plan())
    # a sort chunk is 50 batches of ~25 events: 6 shards of 250 events hold it
    windowed = list(_stream(window_bytes=6 * PER_SHARD * 160 * 100).plan())
    random = list(BucketBatchSampler(lengths, 4000, seed=3).plan())
    assert _padding(lengths, windowed) <= 1.25 * _padding(lengths, random) + 0.005
    assert _padding(lengths, streamed) <= 1.25 * _padding(lengths, random) + 0.005


def test_plan_is_deterministic_per_seed_and_epoch_and_shards_move_between_epochs() -> None:
    a, b = _stream(world_size=2, lanes=2), _stream(world_size=2, lanes=2)
    assert a.plan() == b.plan()
    first = a.plan()
    a.set_epoch(1)
    assert a.plan() != first
    assert _stream(world_size=2, lanes=2, seed=4).plan() != first
    _, groups, _ = _synthetic()
    shards = [set(groups[_stream(world_size=2, lanes=2).plan().events()].tolist())]
    a.set_epoch(1)
    shards.append(set(groups[a.plan().events()].tolist()))
    assert shards[0] != shards[1]  # rank 0 reads other shards in another epoch


def test_mid_epoch_resume_is_exact() -> None:
    sampler = _stream(world_size=2, rank=1, lanes=2)
    sampler.set_epoch(5)
    full = list(sampler)
    it = iter(sampler)
    taken = [next(it) for _ in range(7)]
    state = sampler.state_dict()
    assert state["epoch"] == 5 and state["position"] == 7 and state["lanes"] == 2
    fresh = _stream(world_size=2, rank=1, lanes=2)
    fresh.load_state_dict(state)
    fresh.set_epoch(5)
    assert taken + list(fresh) == full
    with pytest.raises(UsageError, match="lanes"):
        _stream(world_size=2, rank=1, lanes=3).load_state_dict(state)


def test_fewer_shards_than_lanes_split_shards_into_disjoint_parts() -> None:
    lengths, groups, nbytes = _synthetic(shards=2)
    plans = [
        StreamingBatchSampler(
            lengths, groups, nbytes, window_bytes=10**9, max_elements=4000, rank=r, world_size=4
        )
        .plan()
        .events()
        for r in range(4)
    ]
    assert all(len(p) for p in plans)
    assert sorted(np.concatenate(plans).tolist()) == list(range(len(lengths)))


def test_fixed_size_batches_stream_too() -> None:
    sampler = _stream(max_elements=None, batch_size=16)
    assert {len(b) for b in sampler} <= set(range(1, 17))
    with pytest.raises(UsageError):
        _stream(max_elements=None)


def test_auto_streams_once_the_decoded_data_exceeds_a_workers_share_of_the_budget() -> None:
    assert choose_loader("auto", 100, 1000, 0) == "random"
    assert choose_loader("auto", 600, 1000, 2) == "stream"
    assert choose_loader("random", 10**12, 1, 0) == "random"
    with pytest.raises(UsageError, match="fast") as info:
        choose_loader("fast", 1, 1, 0)
    assert "auto, stream, random" in str(info.value.hint)


# -- the loader on real files ------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("shards")
    for i in range(8):
        write_key4hep_synthetic(directory / f"s{i}.parquet", 60, seed=i, max_elements=120)
    return directory


def _count_reads(monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    """Record every shard decode in ``log`` (also from forked DataLoader workers)."""
    original = EventDataset.read_shard

    def counting(self: EventDataset, shard: int) -> object:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{os.getpid()} {shard}\n".encode())
        os.close(fd)
        return original(self, shard)

    monkeypatch.setattr(EventDataset, "read_shard", counting)


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_epoch_reads_each_shard_once_delivers_the_plan_in_order(
    shards_dir: Path, workers: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ds = open_dataset(shards_dir, cache_bytes=200_000)  # ~1.5 compact shards
    log = tmp_path / "reads.log"
    _count_reads(monkeypatch, log)
    sampler = sampler_for(ds, max_elements=600, batch_events=None, loader="stream", workers=workers, seed=1)
    assert isinstance(sampler, StreamingBatchSampler)
    plan = sampler.plan()
    for epoch in range(2):
        log.write_text("")
        got = [b.event_index.tolist() for b in make_loader(ds, sampler, num_workers=workers)]
        assert got == list(plan)
        reads = [line.split() for line in log.read_text().splitlines()]
        assert sorted(int(s) for _, s in reads) == list(range(8))  # each shard once
        if workers:
            by_worker = {pid: {s for p, s in reads if p == pid} for pid, _ in reads}
            assert len(by_worker) == workers
            assert not set.intersection(*by_worker.values())  # workers read disjoint shards
        sampler.set_epoch(epoch + 1)
        plan = sampler.plan()


def test_loader_resume_counts_delivered_batches_and_continues_exactly(shards_dir: Path) -> None:
    ds = open_dataset(shards_dir, cache_bytes=200_000)

    def fresh() -> object:
        return sampler_for(ds, max_elements=600, batch_events=None, loader="stream", workers=2, seed=2)

    full = [b.event_index.tolist() for b in make_loader(ds, fresh(), num_workers=2)]
    sampler = fresh()
    got = []
    for i, batch in enumerate(make_loader(ds, sampler, num_workers=2)):
        got.append(batch.event_index.tolist())
        if i == 4:
            state = sampler.state_dict()  # type: ignore[attr-defined]
            break
    assert state["position"] == 5
    resumed = fresh()
    resumed.load_state_dict(state)  # type: ignore[attr-defined]
    assert got + [b.event_index.tolist() for b in make_loader(ds, resumed, num_workers=2)] == full
    # a plan suffix (what the training loop passes) deals to workers the same way
    plan = fresh().plan()  # type: ignore[attr-defined]
    assert [b.event_index.tolist() for b in make_loader(ds, plan[3:], num_workers=2)] == full[3:]


def test_batches_carry_the_events_of_random_access(shards_dir: Path) -> None:
    ds = open_dataset(shards_dir, cache_bytes=200_000)
    sampler = sampler_for(ds, max_elements=600, batch_events=None, loader="stream", seed=0)
    for batch in make_loader(ds, sampler, pad_to=130):
        assert batch.X.shape[1] == 130
        for row, i in enumerate(batch.event_index.tolist()):
            event = ds[i]
            n = len(event)
            assert int(batch.mask[row].sum()) == n
            np.testing.assert_array_equal(batch.X[row, :n].numpy(), event.X)
            np.testing.assert_array_equal(batch.target_p4[row, :n].numpy(), event.ytarget[:, 2:7])
            assert batch.target_cls[row, :n].tolist() == event.ytarget[:, 0].astype(int).tolist()


def test_a_corrupt_shard_fails_in_a_worker_as_a_data_error_with_its_hint(tmp_path: Path) -> None:
    for i in range(4):
        write_key4hep_synthetic(tmp_path / f"s{i}.parquet", 30, seed=i, max_elements=80)
    ds = open_dataset(tmp_path)
    bad = tmp_path / "s2.parquet"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated after the index was built
    sampler = sampler_for(ds, max_elements=400, batch_events=None, loader="stream", workers=2)
    with pytest.raises(DataError) as info:
        list(make_loader(ds, sampler, num_workers=2))
    assert str(bad) in info.value.message and "Traceback" not in info.value.message
    assert info.value.hint


def test_later_passes_over_a_view_that_fits_decode_nothing(
    shards_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ds = open_dataset(shards_dir)  # 1 GiB: random access keeps every shard
    sampler = sampler_for(ds, max_elements=600, batch_events=None, seed=0)
    assert isinstance(sampler, BucketBatchSampler)
    list(make_loader(ds, sampler))
    log = tmp_path / "reads.log"
    log.write_text("")
    _count_reads(monkeypatch, log)
    sampler.set_epoch(1)
    list(make_loader(ds, sampler.plan()[3:9]))  # another epoch, resumed mid-way
    assert log.read_text() == ""
