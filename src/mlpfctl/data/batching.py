"""Batch samplers: which events go into which batch, in which order, on which rank.

Two access patterns, one interface (``set_epoch``, iteration, ``plan()``, ``state_dict``):

- **Random access** (``BucketBatchSampler``, ``FixedBatchSampler``): the epoch is planned over
  all events at once, shuffled globally. Right when the decoded dataset fits in memory (every
  shard is decoded once and stays cached), and for evaluation in file order.
- **Streaming** (``StreamingBatchSampler``): shards are shuffled and dealt to lanes (one lane
  per DataLoader worker of each rank: ranks and workers get disjoint shards); each lane reads its
  shards in windows that fit the memory budget, and events are shuffled and bucketed only
  within a window. Each shard is read once per epoch per rank, whatever the dataset size.

``sampler_for`` picks one from the ``data.loader`` setting (``auto``: stream once the decoded
dataset exceeds one worker's share of ``data.cache_mb``).

Every plan is a pure function of ``(seed, epoch)`` and the settings, so every rank computes the
same global plan and takes its own share; ranks always get the same number of batches. To even
out the count, the largest batches (by events) are split in two, which keeps every event exactly
once; only with ``drop_last`` (or when no batch can be split) are surplus batches dropped.

Resuming: ``state_dict()`` records the epoch and the batches already consumed (the shard order
and window position follow from them); after ``load_state_dict`` the next iteration skips them.
With ``make_loader`` the position counts the batches delivered to the training loop (not those
prefetched by workers).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpfctl.data.plan import BatchPlan
from mlpfctl.errors import UsageError

if TYPE_CHECKING:
    from mlpfctl.config.schema import Config
    from mlpfctl.data.dataset import EventDataset

LOADERS = ("auto", "stream", "random")
# Events are sorted by size within chunks of about this many batches (random and streaming
# alike): batches stay random across the epoch while their members are alike.
SORT_CHUNK_BATCHES = 50


def _rng(seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *salt]))


def events_per_bucket(lengths: np.ndarray, max_elements: int) -> int:
    """Typical events per bucketed batch (from the median event size)."""
    median = int(np.median(np.maximum(lengths, 1))) if len(lengths) else 1
    return max(1, max_elements // max(1, median))


def pack_buckets(order: np.ndarray, lengths: np.ndarray, max_elements: int, chunk: int) -> list[np.ndarray]:
    """Batches with ``len(batch) * longest <= max_elements`` from ``order`` (event indices).

    Events are sorted by size within equal consecutive chunks of at least ``chunk`` events, then cut greedily
    into the longest runs that fit; an event longer than ``max_elements`` goes alone.
    """
    batches: list[np.ndarray] = []
    # equal chunks of at least ``chunk`` events: a short remainder chunk would pack worse
    chunks = max(1, len(order) // max(1, chunk))
    for part in np.array_split(order, chunks):
        part = part[np.argsort(lengths[part], kind="stable")]
        sizes = np.maximum(lengths[part], 1).tolist()
        i, n = 0, len(part)
        while i < n:
            # sizes ascend, so (j - i + 1) * sizes[j] ascends in j: bisect for the longest run
            fits = bisect.bisect_right(range(i, n), max_elements, key=lambda j: (j - i + 1) * sizes[j])
            end = i + max(1, fits)
            batches.append(part[i:end])
            i = end
    return batches


def pack_fixed(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def split_largest(batches: list[np.ndarray], need: int) -> list[np.ndarray] | None:
    """``batches`` with its ``need`` largest (by events) split in halves, or None if too few can be."""
    if need <= 0:
        return batches
    order = sorted(range(len(batches)), key=lambda b: -len(batches[b]))
    chosen = set([b for b in order if len(batches[b]) > 1][:need])
    if len(chosen) < need:
        return None
    out: list[np.ndarray] = []
    for b, batch in enumerate(batches):
        if b in chosen:
            half = len(batch) // 2
            out.extend([batch[:half], batch[half:]])
        else:
            out.append(batch)
    return out


class _PlannedBatchSampler:
    """Shared protocol: a per-epoch plan for this rank, iteration from a resume position, state."""

    lanes = 1

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise UsageError(f"rank {rank} is not in 0..{world_size - 1}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self._position = 0  # where the next iteration starts (resume)
        self._yielded = 0
        self._consumed = 0
        self._tracked = False  # set by make_loader: count delivered batches, not yielded ones
        self._plan_cache: tuple[int, BatchPlan] | None = None

    def _rank_plan(self) -> BatchPlan:
        raise NotImplementedError

    def plan(self) -> BatchPlan:
        """This rank's batches of the current epoch (computed once per epoch)."""
        if self._plan_cache is None or self._plan_cache[0] != self.epoch:
            self._plan_cache = (self.epoch, self._rank_plan())
        return self._plan_cache[1]

    # -- sampler protocol -----------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self._position = 0

    def __len__(self) -> int:
        return len(self.plan())

    def __iter__(self) -> Iterator[list[int]]:
        plan = self.plan()
        start = self._position
        self._yielded = start
        self._consumed = start
        for batch in plan[start:]:
            self._yielded += 1
            yield batch
        self._position = 0

    def remaining(self) -> BatchPlan:
        """The batches the next iteration will yield (what ``make_loader`` streams)."""
        return self.plan()[self._position :]

    def _started(self, start: int) -> None:
        self._yielded = self._consumed = start

    def _note_consumed(self) -> None:
        self._consumed += 1

    # -- resume ---------------------------------------------------------------------------
    def _identity(self) -> dict[str, int]:
        return {"seed": self.seed, "world_size": self.world_size, "num_events": len(self.lengths)}

    def state_dict(self) -> dict[str, Any]:
        position = self._consumed if self._tracked else self._yielded
        return {"epoch": self.epoch, "position": int(position), **self._identity()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, mine in self._identity().items():
            if key in state and int(state[key]) != mine:
                raise UsageError(
                    f"cannot resume the batch sampler: saved {key}={state[key]}, now {mine}",
                    hint="resume with the same dataset, seed, number of ranks and data.num_workers",
                )
        self.epoch = int(state["epoch"])
        self._position = int(state["position"])
        self._yielded = self._consumed = self._position


class _GlobalPlanSampler(_PlannedBatchSampler):
    """Random access: one global plan over all events, batches dealt to ranks in turn."""

    def _order(self) -> np.ndarray:
        n = len(self.lengths)
        return _rng(self.seed, self.epoch, 1).permutation(n) if self.shuffle else np.arange(n)

    def _global_batches(self) -> list[np.ndarray]:
        raise NotImplementedError

    def _equalize(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        w = self.world_size
        surplus = len(batches) % w
        if w == 1 or surplus == 0:
            return batches
        trimmed = batches[: len(batches) - surplus]
        if self.drop_last:
            return trimmed
        split = split_largest(batches, w - surplus)
        return trimmed if split is None else split

    def _rank_plan(self) -> BatchPlan:
        batches = self._equalize(self._global_batches())
        if self.shuffle:
            perm = _rng(self.seed, self.epoch, 2).permutation(len(batches))
            batches = [batches[i] for i in perm]
        return BatchPlan.from_batches(batches[self.rank :: self.world_size])


class BucketBatchSampler(_GlobalPlanSampler):
    """Batches of events of similar size with ``len(batch) * longest <= max_elements``.

    Events are shuffled, then sorted by size within chunks of about 50 batches (so batches stay
    random across the epoch while their members are alike), then packed greedily. An event
    longer than ``max_elements`` forms a batch of its own.
    """

    WINDOW_BATCHES = SORT_CHUNK_BATCHES

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        max_elements: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if max_elements < 1:
            raise UsageError(f"max_elements must be positive, got {max_elements}")
        super().__init__(
            lengths, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last
        )
        self.max_elements = max_elements

    def _global_batches(self) -> list[np.ndarray]:
        chunk = events_per_bucket(self.lengths, self.max_elements) * self.WINDOW_BATCHES
        return pack_buckets(self._order(), self.lengths, self.max_elements, chunk)


class FixedBatchSampler(_GlobalPlanSampler):
    """Plain batches of ``batch_size`` events in (shuffled) order: the pad-to-the-largest baseline."""

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be positive, got {batch_size}")
        super().__init__(
            lengths, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last
        )
        self.batch_size = batch_size

    def _global_batches(self) -> list[np.ndarray]:
        batches = pack_fixed(self._order(), self.batch_size)
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches


class StreamingBatchSampler(_PlannedBatchSampler):
    """Shard-disjoint lanes read in memory-bounded windows; shuffled and bucketed per window.

    ``groups[i]`` is the shard (file) of event ``i`` and ``event_bytes[i]`` what it takes in
    memory while its window is loaded (a lane keeps all of a shard's events of the view, also
    when it reads only a part of them).
    Every rank has ``lanes`` lanes (one per DataLoader worker); all ``world_size * lanes`` lanes
    get disjoint shards (or, with fewer shards than lanes, disjoint parts of shards).

    Per epoch: the shards are shuffled and dealt to the lane with the fewest events so far;
    each lane cuts its shards into windows of at most ``window_bytes`` decoded bytes (at least
    one shard); a window's events are shuffled, bucketed like ``BucketBatchSampler`` (or cut into
    ``batch_size`` batches), and its batches shuffled. A rank's plan interleaves its lanes:
    batch ``j`` is from lane ``j % lanes``, which is how ``make_loader`` deals them to workers.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        groups: Sequence[int] | np.ndarray,
        event_bytes: Sequence[int] | np.ndarray,
        *,
        window_bytes: int,
        max_elements: int | None = None,
        batch_size: int | None = None,
        lanes: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if (max_elements is None) == (batch_size is None):
            raise UsageError("give exactly one of max_elements (bucketed) and batch_size (fixed)")
        if (max_elements or batch_size or 0) < 1:
            raise UsageError(f"max_elements/batch_size must be positive, got {max_elements or batch_size}")
        if lanes < 1:
            raise UsageError(f"lanes must be positive, got {lanes}")
        super().__init__(
            lengths, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last
        )
        self.groups = np.asarray(groups, dtype=np.int64)
        if self.groups.shape != self.lengths.shape:
            raise UsageError(f"{len(self.groups)} shard ids for {len(self.lengths)} events")
        self.event_bytes = np.asarray(event_bytes, dtype=np.int64)
        self.window_bytes = int(window_bytes)
        self.max_elements = max_elements
        self.batch_size = batch_size
        self.lanes = lanes
        self._units, self._unit_bytes = self._make_units()
        self._chunk = (
            events_per_bucket(self.lengths, max_elements) * SORT_CHUNK_BATCHES if max_elements else 0
        )

    def _identity(self) -> dict[str, int]:
        return {**super()._identity(), "lanes": self.lanes}

    def _make_units(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Events of each shard (view order); shards split in parts when lanes outnumber them."""
        order = np.argsort(self.groups, kind="stable")
        shards, starts = np.unique(self.groups[order], return_index=True)
        per_shard = np.split(order, starts[1:]) if len(order) else []
        total_lanes = self.world_size * self.lanes
        parts = -(-total_lanes // len(shards)) if len(shards) else 1
        units: list[np.ndarray] = []
        sizes: list[int] = []
        for events in per_shard:
            whole = int(self.event_bytes[events].sum())
            for part in np.array_split(events, min(parts, len(events))):
                units.append(part)
                sizes.append(whole)
        return units, np.asarray(sizes, dtype=np.int64)

    def _pack(self, order: np.ndarray) -> list[np.ndarray]:
        if self.max_elements is not None:
            return pack_buckets(order, self.lengths, self.max_elements, self._chunk)
        assert self.batch_size is not None
        return pack_fixed(order, self.batch_size)

    def _deal(self) -> list[list[int]]:
        """Units (in this epoch's order) per lane, each to the lane with the fewest events so far."""
        n_units = len(self._units)
        order = _rng(self.seed, self.epoch, 11).permutation(n_units) if self.shuffle else np.arange(n_units)
        heap = [(0, lane) for lane in range(self.world_size * self.lanes)]
        dealt: list[list[int]] = [[] for _ in heap]
        for unit in order.tolist():
            events, lane = heapq.heappop(heap)
            dealt[lane].append(unit)
            heapq.heappush(heap, (events + len(self._units[unit]), lane))
        return dealt

    def _lane_batches(self, lane: int, units: list[int]) -> list[np.ndarray]:
        windows: list[list[int]] = []
        size = 0
        for unit in units:
            if windows and size + int(self._unit_bytes[unit]) <= self.window_bytes:
                windows[-1].append(unit)
                size += int(self._unit_bytes[unit])
            else:
                windows.append([unit])
                size = int(self._unit_bytes[unit])
        batches: list[np.ndarray] = []
        for w, window in enumerate(windows):
            events = np.concatenate([self._units[u] for u in window])
            rng = _rng(self.seed, self.epoch, 12, lane, w)
            if self.shuffle:
                events = rng.permutation(events)
            packed = self._pack(events)
            if self.shuffle:
                packed = [packed[i] for i in rng.permutation(len(packed))]
            batches.extend(packed)
        return batches

    def _equalize(self, lanes: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        counts = [len(b) for b in lanes]
        target = min(counts) if self.drop_last else max(counts)
        if not self.drop_last:
            reachable = [
                c + sum(1 for b in batches if len(b) > 1) for c, batches in zip(counts, lanes, strict=True)
            ]
            target = min(target, min(reachable))
        out = []
        for batches in lanes:
            split = split_largest(batches, target - len(batches))
            out.append((split if split is not None else batches)[:target])
        return out

    def _rank_plan(self) -> BatchPlan:
        dealt = self._deal()
        mine = range(self.rank * self.lanes, (self.rank + 1) * self.lanes)
        if self.world_size * self.lanes == 1:
            lanes = [self._lane_batches(0, dealt[0])]
        else:
            # every lane's count matters for the equal-count rule; only ours keep their batches
            everything = [self._lane_batches(lane, units) for lane, units in enumerate(dealt)]
            equal = self._equalize(everything)
            lanes = [equal[lane] for lane in mine]
        interleaved = [lanes[j % self.lanes][j // self.lanes] for j in range(len(lanes[0]) * self.lanes)]
        return BatchPlan.from_batches(interleaved, lanes=self.lanes)

    def window_count(self) -> int:
        """Windows of this rank in the current epoch (for reports)."""
        dealt = self._deal()
        total = 0
        for lane in range(self.rank * self.lanes, (self.rank + 1) * self.lanes):
            size, windows = 0, 0
            for unit in dealt[lane]:
                b = int(self._unit_bytes[unit])
                if windows and size + b <= self.window_bytes:
                    size += b
                else:
                    windows, size = windows + 1, b
            total += windows
        return total


# -- choosing the access pattern -------------------------------------------------------------


def choose_loader(loader: str, dataset_bytes: int, budget_bytes: int, workers: int) -> str:
    """``stream`` or ``random`` for the ``data.loader`` setting (``auto``: stream what does not fit).

    Random access keeps every decoded shard a process touches, and each DataLoader worker is a
    process of its own: it is the right tool while the whole decoded dataset fits one worker's
    share of the budget. Beyond that, every batch would decode shards again: stream.
    """
    if loader not in LOADERS:
        raise UsageError(f"unknown data.loader {loader!r}", hint=f"choose one of: {', '.join(LOADERS)}")
    if loader != "auto":
        return loader
    return "random" if dataset_bytes <= budget_bytes // max(1, workers) else "stream"


def sampler_for(
    dataset: EventDataset,
    *,
    max_elements: int | None,
    batch_events: int | None,
    loader: str = "auto",
    workers: int = 0,
    shuffle: bool = True,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> _PlannedBatchSampler:
    """The batch sampler for ``dataset``: bucketed (``max_elements``) or fixed (``batch_events``)
    batches, streamed or random access as ``choose_loader`` decides."""
    budget = dataset.cache.budget
    lanes = max(1, workers)
    common: dict[str, Any] = {
        "shuffle": shuffle,
        "seed": seed,
        "rank": rank,
        "world_size": world_size,
        "drop_last": drop_last,
    }
    if choose_loader(loader, dataset.decoded_bytes(), budget, workers) == "random":
        if batch_events:
            return FixedBatchSampler(dataset.lengths, batch_events, **common)
        assert max_elements is not None
        return BucketBatchSampler(dataset.lengths, max_elements, **common)
    groups, event_bytes = dataset.shard_ids(), dataset.event_nbytes()
    largest = int(np.bincount(groups, weights=event_bytes).max(initial=0)) if len(groups) else 0
    # each worker keeps its share of the budget, one shard of which is the read-ahead
    window = max(1, budget // lanes - largest)
    return StreamingBatchSampler(
        dataset.lengths,
        groups,
        event_bytes,
        window_bytes=window,
        max_elements=None if batch_events else max_elements,
        batch_size=batch_events or None,
        lanes=lanes,
        **common,
    )


def sampler_for_config(
    cfg: Config,
    dataset: EventDataset,
    *,
    rank: int,
    world_size: int,
    shuffle: bool,
    drop_last: bool,
) -> _PlannedBatchSampler:
    """``sampler_for`` with the ``[data]``/``[train]`` settings (what the training loop uses)."""
    return sampler_for(
        dataset,
        max_elements=cfg.data.max_elements_per_batch,
        batch_events=cfg.train.batch_events,
        loader=cfg.data.loader,
        workers=cfg.data.num_workers,
        shuffle=shuffle,
        seed=cfg.run.seed,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
    )
