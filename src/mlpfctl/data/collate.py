"""Collation of ``(index, Event)`` pairs into a padded ``Batch``, and ``make_loader``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpfctl.data.batch import Batch
from mlpfctl.data.events import Event

if TYPE_CHECKING:
    from mlpfctl.data.dataset import EventDataset
    from mlpfctl.data.loader import EventLoader


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
    from mlpfctl.data.loader import to_batch

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
    return to_batch(X, yt, yc, mask, np.array([int(i) for i, _ in items], dtype=np.int64))


def make_loader(
    dataset: EventDataset,
    batch_sampler: Any,
    num_workers: int = 0,
    pin_memory: bool = False,
    *,
    pad_to: int | None = None,
    pad_buckets: Sequence[int] = (),
) -> EventLoader:
    """A loader of ``Batch`` objects for ``dataset`` in the order of ``batch_sampler`` (a sampler,
    a ``BatchPlan`` or any sequence of index lists); see ``mlpfctl.data.loader``."""
    from mlpfctl.data.loader import EventLoader

    return EventLoader(dataset, batch_sampler, num_workers, pin_memory, pad_to, tuple(pad_buckets))
