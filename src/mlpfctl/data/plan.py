"""``BatchPlan``: one rank's batches of an epoch, stored flat.

A plan for 10^7 events as Python lists of ints costs ~36 bytes per event; stored as one index
array plus offsets it costs 8. Slicing a plan (``plan[resume_at:]``) is a view, and iterating it
yields plain ``list[int]`` batches, so it stands in for the ``list[list[int]]`` it replaces.

``lanes`` says how the plan was built: batch ``j`` belongs to lane ``j % lanes`` (see
``mlpfctl.data.batching.StreamingBatchSampler``), and lanes read disjoint shards. A loader with
``lanes`` workers (or a divisor of it) deals batch ``j`` to worker ``j % workers``, so workers
read disjoint shards too; any suffix of the plan keeps that property (the workers rotate).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import numpy as np


class BatchPlan(Sequence[list[int]]):
    def __init__(self, flat: np.ndarray, offsets: np.ndarray, rows: np.ndarray | None = None, lanes: int = 1):
        self.flat = flat
        self.offsets = offsets
        self.rows = np.arange(len(offsets) - 1, dtype=np.int64) if rows is None else rows
        self.lanes = max(1, int(lanes))

    @classmethod
    def from_batches(cls, batches: Iterable[Sequence[int] | np.ndarray], lanes: int = 1) -> BatchPlan:
        arrays = [np.asarray(b, dtype=np.int64).reshape(-1) for b in batches]
        counts = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        flat = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
        return cls(flat, offsets, lanes=lanes)

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> list[int]: ...
    @overload
    def __getitem__(self, i: slice) -> BatchPlan: ...
    def __getitem__(self, i: int | slice) -> list[int] | BatchPlan:
        if isinstance(i, slice):
            return BatchPlan(self.flat, self.offsets, self.rows[i], self.lanes)
        batch: list[int] = self.batch(int(self.rows[i])).tolist()
        return batch

    def batch(self, row: int) -> np.ndarray:
        batch: np.ndarray = self.flat[self.offsets[row] : self.offsets[row + 1]]
        return batch

    def arrays(self) -> Iterator[np.ndarray]:
        """The batches as index arrays (no list conversion)."""
        for row in self.rows.tolist():
            yield self.flat[self.offsets[row] : self.offsets[row + 1]]

    def __iter__(self) -> Iterator[list[int]]:
        for a in self.arrays():
            yield a.tolist()

    def sizes(self) -> np.ndarray:
        """Events per batch."""
        sizes: np.ndarray = self.offsets[self.rows + 1] - self.offsets[self.rows]
        return sizes

    def events(self) -> np.ndarray:
        """Every event index of the plan, in plan order."""
        if len(self.rows) == 0:
            return np.zeros(0, np.int64)
        return np.concatenate(list(self.arrays()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BatchPlan):
            return len(self) == len(other) and all(
                np.array_equal(a, b) for a, b in zip(self.arrays(), other.arrays(), strict=True)
            )
        if isinstance(other, Sequence):
            return list(self) == [list(b) for b in other]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BatchPlan({len(self)} batches, {int(self.sizes().sum())} events, lanes={self.lanes})"
