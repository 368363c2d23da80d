"""Batch samplers: size-bucketed batches under an element budget, and plain fixed-size batches.

Both plan a whole epoch globally from ``(seed, epoch)``, so every DDP rank computes the same plan
and takes a disjoint share of it; ranks always get the same number of batches. To even out the
count, the largest batches (by events) are split in two, which keeps every event exactly once;
only with ``drop_last`` (or when no batch can be split) are surplus batches dropped instead.

Resuming: ``state_dict()`` records the epoch and the batches already consumed; after
``load_state_dict`` the next iteration skips them. With ``make_loader`` the position counts the
batches delivered to the training loop (not those prefetched by workers).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mlpfctl.errors import UsageError


class _PlannedBatchSampler:
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
        self._plan_cache: tuple[int, list[list[int]]] | None = None

    # -- planning -------------------------------------------------------------------------
    def _rng(self, salt: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, salt]))

    def _order(self) -> np.ndarray:
        n = len(self.lengths)
        return self._rng(1).permutation(n) if self.shuffle else np.arange(n)

    def _global_batches(self) -> list[list[int]]:
        raise NotImplementedError

    def _equalize(self, batches: list[list[int]]) -> list[list[int]]:
        w = self.world_size
        if w == 1 or len(batches) % w == 0:
            return batches
        if self.drop_last:
            return batches[: len(batches) - len(batches) % w]
        need = w - len(batches) % w
        # split the batches with the most events; halves keep the element bound
        order = sorted(range(len(batches)), key=lambda b: -len(batches[b]))
        splittable = [b for b in order if len(batches[b]) > 1][:need]
        if len(splittable) < need:
            return batches[: len(batches) - len(batches) % w]
        out: list[list[int]] = []
        for b, batch in enumerate(batches):
            if b in splittable:
                half = len(batch) // 2
                out.extend([batch[:half], batch[half:]])
            else:
                out.append(batch)
        return out

    def _plan(self) -> list[list[int]]:
        if self._plan_cache is not None and self._plan_cache[0] == self.epoch:
            return self._plan_cache[1]
        batches = self._equalize(self._global_batches())
        if self.shuffle:
            perm = self._rng(2).permutation(len(batches))
            batches = [batches[i] for i in perm]
        mine = batches[self.rank :: self.world_size]
        self._plan_cache = (self.epoch, mine)
        return mine

    # -- sampler protocol -----------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self._position = 0

    def __len__(self) -> int:
        return len(self._plan())

    def __iter__(self) -> Iterator[list[int]]:
        plan = self._plan()
        start = self._position
        self._yielded = start
        self._consumed = start
        for batch in plan[start:]:
            self._yielded += 1
            yield list(batch)
        self._position = 0

    def _note_consumed(self) -> None:
        self._consumed += 1

    # -- resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        position = self._consumed if self._tracked else self._yielded
        return {
            "epoch": self.epoch,
            "position": int(position),
            "seed": self.seed,
            "world_size": self.world_size,
            "num_events": len(self.lengths),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("seed", "world_size", "num_events"):
            mine = (
                self.seed if key == "seed" else self.world_size if key == "world_size" else len(self.lengths)
            )
            if key in state and int(state[key]) != mine:
                raise UsageError(
                    f"cannot resume the batch sampler: saved {key}={state[key]}, now {mine}",
                    hint="resume with the same dataset, seed and number of ranks",
                )
        self.epoch = int(state["epoch"])
        self._position = int(state["position"])
        self._yielded = self._consumed = self._position


class BucketBatchSampler(_PlannedBatchSampler):
    """Batches of events of similar size with ``len(batch) * longest <= max_elements``.

    Events are shuffled, then sorted by size within windows of about 50 batches (so batches stay
    random across the epoch while their members are alike), then packed greedily. An event
    longer than ``max_elements`` forms a batch of its own.
    """

    WINDOW_BATCHES = 50

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

    def _global_batches(self) -> list[list[int]]:
        order = self._order()
        if len(order) == 0:
            return []
        lengths = np.maximum(self.lengths, 1)
        per_batch = max(1, self.max_elements // max(1, int(np.median(lengths))))
        window = max(1, per_batch * self.WINDOW_BATCHES)
        batches: list[list[int]] = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            current: list[int] = []
            longest = 0
            for idx, n in zip(chunk.tolist(), lengths[chunk].tolist(), strict=True):
                new_longest = max(longest, n)
                if current and (len(current) + 1) * new_longest > self.max_elements:
                    batches.append(current)
                    current, new_longest = [], n
                current.append(idx)
                longest = new_longest
            if current:
                batches.append(current)
        return batches


class FixedBatchSampler(_PlannedBatchSampler):
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

    def _global_batches(self) -> list[list[int]]:
        order = self._order().tolist()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches
