"""Collation of ``(index, Event)`` pairs into a padded ``Batch``, and the DataLoader that uses it."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mlpfctl.data.batch import Batch
from mlpfctl.data.events import Event


def bucket_width(longest: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= ``longest``; past the last one, the next multiple of it.

    Graph-compiling devices (Gaudi) compile once per input shape: a few fixed widths instead of
    one per longest event keep the compiled graphs reusable (the HPU backend turns this on).
    """
    for width in sorted(buckets):
        if width >= longest:
            return width
    if not buckets:
        return longest
    last = max(buckets)
    return -(-longest // last) * last


def collate_events(
    items: Sequence[tuple[int, Event]], pad_to: int | None = None, pad_buckets: Sequence[int] = ()
) -> Batch:
    """Pad every event to the longest in the batch (or to ``pad_to``, if larger), rounded up to
    one of ``pad_buckets`` when given."""
    n_ev = len(items)
    longest = max((len(ev) for _, ev in items), default=0)
    width = bucket_width(max(longest, pad_to or 0), pad_buckets)
    n_feat = items[0][1].X.shape[1] if items else 0
    X = np.zeros((n_ev, width, n_feat), np.float32)
    yt = np.zeros((n_ev, width, 7), np.float32)
    yc = np.zeros((n_ev, width, 7), np.float32)
    mask = np.zeros((n_ev, width), bool)
    for b, (_, ev) in enumerate(items):
        n = len(ev)
        X[b, :n] = ev.X
        yt[b, :n] = ev.ytarget[:, :7]
        yc[b, :n] = ev.ycand[:, :7]
        mask[b, :n] = True
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
        event_index=torch.tensor([int(i) for i, _ in items], dtype=torch.int64),
    )


class _Indexed(Dataset[tuple[int, Event]]):
    """Hands collate the dataset index along with each event."""

    def __init__(self, dataset: Dataset[Event]) -> None:
        self.dataset = dataset

    def __getitem__(self, i: int) -> tuple[int, Event]:
        return i, self.dataset[i]

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]


class EventLoader(DataLoader[Batch]):
    """A DataLoader that tells its batch sampler how many batches the loop really consumed."""

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        sampler = self.batch_sampler
        note = getattr(sampler, "_note_consumed", None)
        for batch in super().__iter__():
            if note is not None:
                note()
            yield batch


def make_loader(
    dataset: Dataset[Event],
    batch_sampler: Any,
    num_workers: int = 0,
    pin_memory: bool = False,
    *,
    pad_to: int | None = None,
    pad_buckets: Sequence[int] = (),
) -> DataLoader[Batch]:
    """A loader of ``Batch`` objects for ``dataset`` in the order of ``batch_sampler``."""
    if hasattr(batch_sampler, "_tracked"):
        batch_sampler._tracked = True
    return EventLoader(
        _Indexed(dataset),  # type: ignore[arg-type]
        batch_sampler=batch_sampler,
        collate_fn=functools.partial(collate_events, pad_to=pad_to, pad_buckets=tuple(pad_buckets)),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
