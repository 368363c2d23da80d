"""``EventLoader``: padded batches in the order of a plan, reading each shard as rarely as it allows.

The loader knows the whole epoch in advance (the plan), so it keeps decoded shards by *next
use*: a shard stays while a later batch needs it and within the budget, and when room is needed
the shard needed furthest in the future goes first (a shard no batch needs any more before all
others). One background thread decodes the next shard the plan needs while the current batches
are served (Parquet decoding releases the GIL). With a streaming plan (windows of shards, see
``StreamingBatchSampler``) this reads every shard once per epoch within the window's memory;
with a random-access plan over data that fits the budget every shard is decoded once and stays.

Workers: batch ``j`` of the plan goes to worker ``j % num_workers``, which yields it in turn,
so the delivered order is the plan's order; a streaming plan built with ``lanes ==
num_workers`` gives each worker its own shards. Each worker keeps ``1 / num_workers`` of the
memory budget. Errors in a worker (a corrupt shard) reach the caller as the same ``DataError``,
with its hint, not as a worker traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mlpfctl.data.batch import Batch
from mlpfctl.data.block import BATCH_TARGET_COLUMNS, EventBlock
from mlpfctl.data.collate import bucket_width
from mlpfctl.data.dataset import EventDataset
from mlpfctl.data.plan import BatchPlan
from mlpfctl.errors import DataError, MlpfctlError, RuntimeFailure, UsageError

# How far ahead (in batches) the read-ahead looks for the next shard to decode.
LOOKAHEAD_BATCHES = 32
# Peak RSS of a loading process stays within its budget (data.cache_mb) plus this constant plus
# this many decoded shards: Parquet decoding holds the Arrow table, the decoded shard and its
# compact copy at once (tests/unit/data/test_memory.py checks it).
MEMORY_CONSTANT_BYTES = 32 << 20
MEMORY_SHARDS_IN_FLIGHT = 4
_NEVER = np.iinfo(np.int64).max


def to_batch(X: np.ndarray, yt: np.ndarray, yc: np.ndarray, mask: np.ndarray, index: np.ndarray) -> Batch:
    """Tensors of a padded batch from its arrays (``yt``/``yc``: the first 7 target columns)."""
    t_yt = torch.from_numpy(yt)
    t_yc = torch.from_numpy(yc)
    return Batch(
        X=torch.from_numpy(X),
        mask=torch.from_numpy(mask),
        target_cls=t_yt[..., 0].round().long(),
        target_charge=t_yt[..., 1].contiguous(),
        target_p4=t_yt[..., 2:7].contiguous(),
        cand_cls=t_yc[..., 0].round().long(),
        cand_charge=t_yc[..., 1].contiguous(),
        cand_p4=t_yc[..., 2:7].contiguous(),
        event_index=torch.from_numpy(np.asarray(index, dtype=np.int64)),
    )


class _Uses:
    """For every shard, the plan positions that need it, consumed front to back."""

    def __init__(self, needs: list[np.ndarray]) -> None:
        shards = np.concatenate(needs) if needs else np.zeros(0, np.int64)
        positions = np.repeat(np.arange(len(needs), dtype=np.int64), [len(n) for n in needs])
        order = np.lexsort((positions, shards))
        shards, self.positions = shards[order], positions[order]
        ids, starts, counts = np.unique(shards, return_index=True, return_counts=True)
        self.start = dict(zip(ids.tolist(), starts.tolist(), strict=True))
        self.end = {s: a + c for s, a, c in zip(ids.tolist(), starts.tolist(), counts.tolist(), strict=True)}

    def next_use(self, shard: int) -> int:
        a = self.start.get(shard)
        return _NEVER if a is None or a >= self.end[shard] else int(self.positions[a])

    def advance(self, shard: int) -> None:
        self.start[shard] += 1


class _Reader:
    """Compact shards for one pass over ``batches`` of ``dataset``, kept by next use within ``budget``.

    A shard is kept as ``EventBlock.compact`` of the view's events in it (``ShardGroups``), so
    any pass over the same view (the next epoch, a resumed one) finds it in the cache.
    """

    def __init__(
        self, dataset: EventDataset, batches: list[np.ndarray], budget: int, read_ahead: bool
    ) -> None:
        self.ds = dataset
        self.cache = dataset.cache
        self.budget = budget
        self.groups = groups = dataset.shard_groups()
        self.shards = [dataset.locate(b)[0] for b in batches]
        self.rows = [groups.row[b] for b in batches]  # each event's row in its compact shard
        self.needs = [np.unique(shards) for shards in self.shards]
        self.uses = _Uses(self.needs)
        needed = np.unique(np.concatenate(self.needs)) if self.needs else np.zeros(0, np.int64)
        self.key = {s: groups.key(s) for s in needed.tolist()}
        self.size = {s: int(groups.nbytes[s]) for s in needed.tolist()}
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="mlpf-read-ahead") if read_ahead else None
        self.pending: tuple[int, Future[EventBlock]] | None = None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pending = None

    def _decode(self, shard: int) -> EventBlock:
        return self.ds.read_shard(shard).compact(self.groups.events(shard))

    def _in_flight(self) -> int:
        return 0 if self.pending is None else self.size[self.pending[0]]

    def _next_use(self, key: Any) -> int:
        # entries of other views (and whole shards of ds[i]) are not needed by this pass
        shard = key[-1] if isinstance(key, tuple) else -1
        return self.uses.next_use(shard) if self.key.get(shard) == key else _NEVER

    def _make_room(self, size: int, before: int, keep: set[Any]) -> bool:
        """Drop entries needed after position ``before`` (furthest first) until ``size`` fits."""
        while self.cache.nbytes + self._in_flight() + size > self.budget:
            candidates = [k for k in self.cache.blocks if k not in keep]
            if not candidates:
                return False
            victim = max(candidates, key=self._next_use)
            if self._next_use(victim) <= before:
                return False
            self.cache.drop(victim)
        return True

    def _load(self, shard: int, position: int, keep: set[Any]) -> EventBlock:
        if self.pending is not None and self.pending[0] == shard:
            block = self.pending[1].result()
            self.pending = None
        else:
            self._make_room(self.size[shard], position - 1, keep)
            block = self._decode(shard)
        self._make_room(0, position - 1, keep)
        self.cache.put(self.key[shard], block, evict_lru=False)
        return block

    def batch(
        self, position: int, index: np.ndarray, pad_to: int | None, pad_buckets: Sequence[int]
    ) -> Batch:
        """Batch ``position``, filled shard by shard: only the shard being copied must stay."""
        lengths = self.ds.lengths[index]
        width = bucket_width(max(int(lengths.max(initial=0)), pad_to or 0), pad_buckets)
        n_ev = len(index)
        X = np.zeros((n_ev, width, self.ds.schema.num_features), np.float32)
        yt = np.zeros((n_ev, width, BATCH_TARGET_COLUMNS), np.float32)
        yc = np.zeros((n_ev, width, BATCH_TARGET_COLUMNS), np.float32)
        shards, rows = self.shards[position], self.rows[position]
        for shard in self.needs[position].tolist():
            key = self.key[shard]
            block = self.cache.get(key)
            if block is None:
                block = self._load(shard, position, {key})
            self.uses.advance(shard)
            for k in np.flatnonzero(shards == shard).tolist():
                a, b = int(block.offsets[rows[k]]), int(block.offsets[rows[k] + 1])
                X[k, : b - a] = block.X[a:b]
                yt[k, : b - a] = block.ytarget[a:b]
                yc[k, : b - a] = block.ycand[a:b]
        mask = np.arange(width)[None, :] < lengths[:, None]
        return to_batch(X, yt, yc, mask, index)

    def read_ahead(self, position: int) -> None:
        """Start decoding the first shard that batches after ``position`` need and that is missing."""
        if self.pool is None or self.pending is not None:
            return
        for later in range(position + 1, min(position + 1 + LOOKAHEAD_BATCHES, len(self.needs))):
            for shard in self.needs[later].tolist():
                if self.key[shard] in self.cache:
                    continue
                # only room that entries needed later than this shard can give up
                if self._make_room(self.size[shard], later, set()):
                    self.pending = (shard, self.pool.submit(self._decode, shard))
                return


def stream_batches(
    dataset: EventDataset,
    batches: Sequence[np.ndarray],
    *,
    budget: int,
    pad_to: int | None = None,
    pad_buckets: Sequence[int] = (),
    read_ahead: bool = True,
) -> Iterator[Batch]:
    """Padded batches of ``dataset`` for view indices ``batches``, in order."""
    arrays = [np.asarray(b, dtype=np.int64) for b in batches]
    reader = _Reader(dataset, arrays, budget, read_ahead)
    try:
        for position, index in enumerate(arrays):
            batch = reader.batch(position, index, pad_to, pad_buckets)
            reader.read_ahead(position)  # decodes while the caller works on this batch
            yield batch
    finally:
        reader.close()


@dataclass(frozen=True)
class _Failure:
    """An error raised in a worker, carried to the main process as data (message and hint intact)."""

    kind: str
    message: str
    hint: str | None

    def reraise(self) -> None:
        cls = {"DataError": DataError, "UsageError": UsageError}.get(self.kind, RuntimeFailure)
        raise cls(self.message, self.hint)


class _Lanes(IterableDataset[Any]):
    """What each DataLoader worker runs: its share (every ``workers``-th batch) of the plan."""

    def __init__(
        self,
        dataset: EventDataset,
        plan: BatchPlan,
        budget: int,
        pad_to: int | None,
        pad_buckets: tuple[int, ...],
    ) -> None:
        self.dataset = dataset
        self.plan = plan
        self.budget = budget
        self.pad_to = pad_to
        self.pad_buckets = pad_buckets

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        self.dataset.cache.budget = self.budget // workers
        mine = list(self.plan[worker::workers].arrays())
        try:
            yield from stream_batches(
                self.dataset,
                mine,
                budget=self.budget // workers,
                pad_to=self.pad_to,
                pad_buckets=self.pad_buckets,
            )
        except MlpfctlError as exc:
            yield _Failure(type(exc).__name__, exc.message, exc.hint)


class EventLoader:
    """Iterable of ``Batch`` for ``dataset`` in the order of ``batches`` (a sampler or a sequence).

    With a sampler, each pass starts where the sampler's resume position says and the sampler
    counts the batches delivered here (not those prefetched by workers) for its ``state_dict``.
    """

    def __init__(
        self,
        dataset: EventDataset,
        batches: Any,
        num_workers: int = 0,
        pin_memory: bool = False,
        pad_to: int | None = None,
        pad_buckets: tuple[int, ...] = (),
    ) -> None:
        self.dataset = dataset
        self.batches = batches
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.pad_to = pad_to
        self.pad_buckets = pad_buckets
        if hasattr(batches, "_tracked"):
            batches._tracked = True

    def _plan(self) -> BatchPlan:
        if hasattr(self.batches, "remaining"):
            plan: BatchPlan = self.batches.remaining()
            return plan
        if isinstance(self.batches, BatchPlan):
            return self.batches
        return BatchPlan.from_batches(list(self.batches))

    def __len__(self) -> int:
        return len(self._plan())

    def _produce(self, plan: BatchPlan) -> Iterator[Any]:
        budget = self.dataset.cache.budget
        if self.num_workers == 0 or len(plan) == 0:
            return stream_batches(
                self.dataset,
                list(plan.arrays()),
                budget=budget,
                pad_to=self.pad_to,
                pad_buckets=self.pad_buckets,
            )
        loader = DataLoader(
            _Lanes(self.dataset, plan, budget, self.pad_to, self.pad_buckets),
            batch_size=None,
            num_workers=min(self.num_workers, len(plan)),
            pin_memory=self.pin_memory,
        )
        return iter(loader)

    def __iter__(self) -> Iterator[Batch]:
        sampler = self.batches if hasattr(self.batches, "remaining") else None
        plan = self._plan()
        if sampler is not None:
            sampler._started(sampler._position)
        for item in self._produce(plan):
            if isinstance(item, _Failure):
                item.reraise()
            if sampler is not None:
                sampler._yielded += 1
                sampler._note_consumed()
            yield item
        if sampler is not None:
            sampler._position = 0  # the next pass is a whole epoch again
