"""Many events stored as flat arrays plus offsets: what a reader returns for one file or shard.

Decoding a whole file into a few contiguous arrays is much faster than building one object per
event, and slicing an ``EventBlock`` into ``Event`` views is free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlpfctl.data.events import NUM_TARGET_COLUMNS, Event

# What a training batch reads of ytarget/ycand: class, charge, pt, eta, sin_phi, cos_phi, energy.
BATCH_TARGET_COLUMNS = 7


def batch_bytes_per_event(lengths: np.ndarray, num_features: int) -> np.ndarray:
    """``EventBlock.compact(...).nbytes`` per event of ``lengths`` elements (for planning windows)."""
    return np.asarray(lengths, dtype=np.int64) * 4 * (num_features + 2 * BATCH_TARGET_COLUMNS) + 8


def offsets_from_counts(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


@dataclass
class EventBlock:
    """Events ``0..n-1``: rows ``offsets[i]:offsets[i+1]`` of X, ytarget and ycand are event i."""

    X: np.ndarray  # [total, F] float32
    ytarget: np.ndarray  # [total, 14] float32, column 0 = class index
    ycand: np.ndarray  # [total, 14] float32, column 0 = class index
    offsets: np.ndarray  # [n + 1] int64
    genmet: np.ndarray  # [n] float32
    genjets: np.ndarray  # [total_jets, 4] float32 (pt, eta, phi, E)
    genjet_offsets: np.ndarray  # [n + 1] int64
    targetjets: np.ndarray
    targetjet_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int64)

    @property
    def nbytes(self) -> int:
        return sum(
            a.nbytes for a in (self.X, self.ytarget, self.ycand, self.genjets, self.targetjets, self.offsets)
        )

    def event(self, i: int) -> Event:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        ga, gb = int(self.genjet_offsets[i]), int(self.genjet_offsets[i + 1])
        ta, tb = int(self.targetjet_offsets[i]), int(self.targetjet_offsets[i + 1])
        return Event(
            X=self.X[a:b],
            ytarget=self.ytarget[a:b],
            ycand=self.ycand[a:b],
            genmet=float(self.genmet[i]),
            genjets=self.genjets[ga:gb],
            targetjets=self.targetjets[ta:tb],
        )

    def compact(self, events: np.ndarray) -> EventBlock:
        """Only ``events`` (indices, ascending), with what a training batch reads of them: X and the
        first ``BATCH_TARGET_COLUMNS`` target columns, no jets (see ``batch_bytes_per_event``)."""
        lengths = self.lengths[events]
        starts = self.offsets[:-1][events]
        rows = np.repeat(starts - offsets_from_counts(lengths)[:-1], lengths) + np.arange(int(lengths.sum()))
        jets, jet_offsets = empty_jets(len(events))
        return EventBlock(
            X=self.X[rows],
            ytarget=self.ytarget[rows, :BATCH_TARGET_COLUMNS],
            ycand=self.ycand[rows, :BATCH_TARGET_COLUMNS],
            offsets=offsets_from_counts(lengths),
            genmet=self.genmet[events],
            genjets=jets,
            genjet_offsets=jet_offsets,
            targetjets=jets,
            targetjet_offsets=jet_offsets,
        )

    def select(self, keep: np.ndarray) -> EventBlock:
        """A new block with only the events where ``keep`` is True."""
        if bool(np.all(keep)):
            return self
        rows = np.repeat(keep, self.lengths)
        gj = np.repeat(keep, np.diff(self.genjet_offsets))
        tj = np.repeat(keep, np.diff(self.targetjet_offsets))
        return EventBlock(
            X=self.X[rows],
            ytarget=self.ytarget[rows],
            ycand=self.ycand[rows],
            offsets=offsets_from_counts(self.lengths[keep]),
            genmet=self.genmet[keep],
            genjets=self.genjets[gj],
            genjet_offsets=offsets_from_counts(np.diff(self.genjet_offsets)[keep]),
            targetjets=self.targetjets[tj],
            targetjet_offsets=offsets_from_counts(np.diff(self.targetjet_offsets)[keep]),
        )


def empty_jets(n_events: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros(n_events + 1, np.int64)


def pad_columns(a: np.ndarray, width: int) -> np.ndarray:
    """Zero-pad (or cut) the columns of a 2-D array to ``width``, as float32."""
    out = np.zeros((a.shape[0], width), dtype=np.float32)
    w = min(width, a.shape[1])
    out[:, :w] = a[:, :w]
    return out


def pad_targets(a: np.ndarray) -> np.ndarray:
    return pad_columns(a, NUM_TARGET_COLUMNS)
