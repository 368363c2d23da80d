"""Key4hep Parquet, as written by the reference post-processing (CLIC and CLD) and by us.

The reference writes one ``ak.Record`` per file: a single Parquet row whose columns are lists over
events (``X_track``: events x tracks x 16, ``ytarget_*``/``ycand_*``: events x elements x 14,
``genmet``: events, ``genjet``/``targetjet``: events x jets x 4). Files from 2023 name the targets
``ygen_*`` and carry fewer target columns. A one-row-per-event layout is accepted too. Only
pyarrow is needed to read it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlpfctl.data.block import EventBlock, empty_jets, offsets_from_counts, pad_columns
from mlpfctl.data.events import CLIC_CLASS_PDGIDS, CLIC_NUM_FEATURES, NUM_TARGET_COLUMNS
from mlpfctl.errors import DataError

REQUIRED = ("X_track", "X_cluster")
TARGET_NAMES = (("ytarget_track", "ytarget_cluster"), ("ygen_track", "ygen_cluster"))
CAND_NAMES = ("ycand_track", "ycand_cluster")


def _list_depth(t: Any) -> int:
    import pyarrow as pa

    depth = 0
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        depth += 1
        t = t.value_type
    return depth


def _per_event(table: Any, name: str, depth: int, path: Path) -> Any:
    """The column as an Arrow array with one entry per event (either file layout)."""
    col = table.column(name).combine_chunks()
    got = _list_depth(col.type)
    if got == depth + 1:  # the reference layout: one row holding lists over events
        col = col.flatten()
    elif got != depth:
        raise DataError(
            f"{path}: column {name!r} has type {col.type}, expected {depth} or {depth + 1} nested lists",
            hint="is this a Key4hep post-processed MLPF file?",
        )
    if col.null_count:
        raise DataError(f"{path}: column {name!r} contains null events", hint="the file is damaged")
    return col


def _matrices(table: Any, name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(rows per event, [total_rows, width] float32) for an events x rows x columns column."""
    import pyarrow.compute as pc

    col = _per_event(table, name, 2, path)
    counts = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = col.flatten()
    if rows.null_count:
        raise DataError(f"{path}: column {name!r} contains null rows", hint="the file is damaged")
    widths = pc.list_value_length(rows).to_numpy(zero_copy_only=False)
    total = int(counts.sum())
    if total == 0:
        return counts, np.zeros((0, 0), np.float32)
    width = int(widths[0])
    if not np.all(widths == width):
        raise DataError(
            f"{path}: column {name!r} has rows of different widths "
            f"({int(widths.min())}..{int(widths.max())})",
            hint="the file is damaged or not an MLPF Key4hep file",
        )
    values = rows.flatten()
    try:
        flat = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: column {name!r} is not numeric ({values.type})") from exc
    return counts, flat.reshape(total, width)


class _Layout:
    """Where each track and cluster row goes when every event lists its tracks, then its clusters."""

    def __init__(self, n_track: np.ndarray, n_cluster: np.ndarray) -> None:
        self.n_track, self.n_cluster = n_track, n_cluster
        n = n_track + n_cluster
        self.offsets = offsets_from_counts(n)
        ev_t = np.repeat(np.arange(len(n)), n_track)
        ev_c = np.repeat(np.arange(len(n)), n_cluster)
        self.dest_t = self.offsets[ev_t] + (np.arange(len(ev_t)) - offsets_from_counts(n_track)[ev_t])
        self.dest_c = (
            self.offsets[ev_c] + n_track[ev_c] + (np.arange(len(ev_c)) - offsets_from_counts(n_cluster)[ev_c])
        )

    def place(self, tracks: np.ndarray, clusters: np.ndarray, width: int) -> np.ndarray:
        """One [total, width] float32 array (columns beyond a part's own are zero, extra ones cut)."""
        out = np.zeros((int(self.offsets[-1]), width), np.float32)
        for dest, part in ((self.dest_t, tracks), (self.dest_c, clusters)):
            w = min(width, part.shape[1])
            if len(dest) and w:
                out[dest, :w] = part[:, :w]
        return out


def _to_class_index(y: np.ndarray, path: Path, name: str) -> None:
    """Replace the PDG-like codes in column 0 of ``y`` by class indices, in place."""
    codes = np.abs(y[:, 0]).astype(np.int64)
    table = np.asarray(CLIC_CLASS_PDGIDS)
    order = np.argsort(table)
    pos = np.searchsorted(table[order], codes)
    pos = np.clip(pos, 0, len(table) - 1)
    ok = table[order][pos] == codes
    if not np.all(ok):
        bad = sorted(set(codes[~ok].tolist()))[:5]
        raise DataError(
            f"{path}: {name} has particle codes {bad} outside the CLIC classes {list(CLIC_CLASS_PDGIDS)}",
            hint="is this a Key4hep MLPF file (CMS data is not supported here)?",
        )
    y[:, 0] = order[pos]


def _targets(table: Any, names: tuple[str, str], layout: _Layout, path: Path) -> np.ndarray:
    parts = []
    for name, expected in zip(names, (layout.n_track, layout.n_cluster), strict=True):
        counts, y = _matrices(table, name, path)
        if len(counts) != len(expected) or not np.array_equal(counts, expected):
            raise DataError(
                f"{path}: {name} does not have one row per element of the matching X column",
                hint="the file is damaged or was written by a different post-processing",
            )
        parts.append(y)
    y_all = layout.place(parts[0], parts[1], NUM_TARGET_COLUMNS)
    _to_class_index(y_all, path, names[0].rsplit("_", 1)[0])
    return y_all


def _jets(table: Any, name: str, n_events: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if name not in table.column_names:
        return empty_jets(n_events)
    counts, jets = _matrices(table, name, path)
    if len(counts) != n_events:
        raise DataError(f"{path}: {name} has {len(counts)} events, X_track has {n_events}")
    return (pad_columns(jets, 4) if jets.size else np.zeros((0, 4), np.float32)), offsets_from_counts(counts)


@contextlib.contextmanager
def _parquet_errors(path: Path) -> Iterator[None]:
    """Turn what pyarrow raises for a missing, truncated or foreign file into a DataError."""
    import pyarrow as pa

    try:
        yield
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"{path}: not a readable Parquet file ({exc})",
            hint="the file is truncated or corrupt: regenerate or re-download it",
        ) from exc


@functools.cache
def _system_memory_pool() -> None:
    """Decode into malloc'ed memory: Arrow's default pool (mimalloc) keeps what a decoded shard
    freed (~100 MB per process after one 20 MB shard), which a streaming loader never reuses."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def _read_table(path: Path, columns: list[str] | None = None) -> Any:
    import pyarrow.parquet as pq

    _system_memory_pool()
    with _parquet_errors(path):
        return pq.read_table(path, columns=columns)


def _check_columns(path: Path, names: list[str]) -> tuple[str, str]:
    """The target column names of a Key4hep file with columns ``names`` (or a DataError)."""
    cols = set(names)
    missing = [c for c in REQUIRED if c not in cols]
    target_names = next((n for n in TARGET_NAMES if set(n) <= cols), None)
    if missing or target_names is None:
        raise DataError(
            f"{path}: not a Key4hep MLPF file (columns {sorted(cols)[:8]}; "
            f"need X_track, X_cluster and ytarget_* or ygen_*)",
            hint="only Key4hep MLPF Parquet (CLIC/CLD) is read here; other Parquet layouts (CMS) are not",
        )
    return target_names


def key4hep_lengths(path: Path) -> np.ndarray:
    """Elements per (non-empty) event, reading only the file's footer and its two X columns.

    This is what opening a directory without a manifest needs (event counts and sizes for the
    batch planner); the targets, candidates and jets are not decoded.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with _parquet_errors(path):
        names = pq.read_schema(path).names
    _check_columns(path, names)
    table = _read_table(path, list(REQUIRED))
    counts = [
        pc.list_value_length(_per_event(table, name, 2, path)).to_numpy(zero_copy_only=False)
        for name in REQUIRED
    ]
    if len(counts[0]) != len(counts[1]):
        raise DataError(f"{path}: X_track has {len(counts[0])} events but X_cluster {len(counts[1])}")
    lengths: np.ndarray = (counts[0] + counts[1]).astype(np.int64)
    return lengths[lengths > 0]


def read_key4hep(path: Path) -> EventBlock:
    """Read one Key4hep Parquet file (CLIC/CLD; ``ytarget_*`` or the older ``ygen_*`` names)."""
    table = _read_table(path)
    cols = set(table.column_names)
    target_names = _check_columns(path, table.column_names)
    n_track, tracks = _matrices(table, "X_track", path)
    n_cluster, clusters = _matrices(table, "X_cluster", path)
    if len(n_track) != len(n_cluster):
        raise DataError(f"{path}: X_track has {len(n_track)} events but X_cluster {len(n_cluster)}")
    for name, arr in (("X_track", tracks), ("X_cluster", clusters)):
        if arr.size and arr.shape[1] > CLIC_NUM_FEATURES:
            raise DataError(f"{path}: {name} has {arr.shape[1]} features, expected at most 17")
    layout = _Layout(n_track, n_cluster)
    X = layout.place(tracks, clusters, CLIC_NUM_FEATURES)
    offsets = layout.offsets
    ytarget = _targets(table, target_names, layout, path)
    has_cand = set(CAND_NAMES) <= cols
    ycand = _targets(table, CAND_NAMES, layout, path) if has_cand else np.zeros_like(ytarget)
    n_events = len(n_track)
    if "genmet" in cols:
        met = _per_event(table, "genmet", 0, path).to_numpy(zero_copy_only=False).astype(np.float32)
    else:
        met = np.zeros(n_events, np.float32)
    if len(met) != n_events:
        raise DataError(f"{path}: genmet has {len(met)} events, X_track has {n_events}")
    genjets, gj_off = _jets(table, "genjet", n_events, path)
    targetjets, tj_off = _jets(table, "targetjet", n_events, path)
    block = EventBlock(X, ytarget, ycand, offsets, met, genjets, gj_off, targetjets, tj_off)
    # The reference loader skips events without elements; so do we (they cannot be trained on).
    return block.select(block.lengths > 0)
