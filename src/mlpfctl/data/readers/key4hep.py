"""Key4hep Parquet, as written by the reference post-processing (CLIC and CLD) and by us.

The reference writes one ``ak.Record`` per file: a single Parquet row whose columns are lists over
events (``X_track``: events x tracks x 16, ``ytarget_*``/``ycand_*``: events x elements x 14,
``genmet``: events, ``genjet``/``targetjet``: events x jets x 4). Files from 2023 name the targets
``ygen_*`` and carry fewer target columns. A one-row-per-event layout is accepted too. Only
pyarrow is needed to read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlpfctl.data.block import EventBlock, empty_jets, offsets_from_counts, pad_columns, pad_targets
from mlpfctl.data.events import CLIC_CLASS_PDGIDS, CLIC_NUM_FEATURES
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
        flat = values.to_numpy(zero_copy_only=False).astype(np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: column {name!r} is not numeric ({values.type})") from exc
    return counts, flat.reshape(total, width)


def _interleave(
    n_track: np.ndarray, n_cluster: np.ndarray, tracks: np.ndarray, clusters: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per event: its tracks then its clusters, in one [total, F] array."""
    n = n_track + n_cluster
    offsets = offsets_from_counts(n)
    ev_t = np.repeat(np.arange(len(n)), n_track)
    ev_c = np.repeat(np.arange(len(n)), n_cluster)
    t_off = offsets_from_counts(n_track)
    c_off = offsets_from_counts(n_cluster)
    dest_t = offsets[ev_t] + (np.arange(len(ev_t)) - t_off[ev_t])
    dest_c = offsets[ev_c] + n_track[ev_c] + (np.arange(len(ev_c)) - c_off[ev_c])
    width = max(tracks.shape[1], clusters.shape[1])
    out = np.zeros((int(offsets[-1]), width), np.float32)
    out[dest_t, : tracks.shape[1]] = tracks
    out[dest_c, : clusters.shape[1]] = clusters
    return out, offsets


def _to_class_index(y: np.ndarray, path: Path, name: str) -> np.ndarray:
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
    y = y.copy()
    y[:, 0] = order[pos]
    return y


def _targets(
    table: Any, names: tuple[str, str], n_track: np.ndarray, n_cluster: np.ndarray, path: Path
) -> np.ndarray:
    parts = []
    for name, expected in zip(names, (n_track, n_cluster), strict=True):
        counts, y = _matrices(table, name, path)
        if len(counts) != len(expected) or not np.array_equal(counts, expected):
            raise DataError(
                f"{path}: {name} does not have one row per element of the matching X column",
                hint="the file is damaged or was written by a different post-processing",
            )
        parts.append(pad_targets(y) if y.size else np.zeros((0, 14), np.float32))
    y_all, _ = _interleave(n_track, n_cluster, parts[0], parts[1])
    return _to_class_index(pad_targets(y_all), path, names[0].rsplit("_", 1)[0])


def _jets(table: Any, name: str, n_events: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if name not in table.column_names:
        return empty_jets(n_events)
    counts, jets = _matrices(table, name, path)
    if len(counts) != n_events:
        raise DataError(f"{path}: {name} has {len(counts)} events, X_track has {n_events}")
    return (pad_columns(jets, 4) if jets.size else np.zeros((0, 4), np.float32)), offsets_from_counts(counts)


def read_key4hep(path: Path) -> EventBlock:
    """Read one Key4hep Parquet file (CLIC/CLD; ``ytarget_*`` or the older ``ygen_*`` names)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"{path}: not a readable Parquet file ({exc})",
            hint="the file is truncated or corrupt: regenerate or re-download it",
        ) from exc
    cols = set(table.column_names)
    missing = [c for c in REQUIRED if c not in cols]
    target_names = next((names for names in TARGET_NAMES if set(names) <= cols), None)
    if missing or target_names is None:
        raise DataError(
            f"{path}: not a Key4hep MLPF file (columns {sorted(cols)[:8]}; "
            f"need X_track, X_cluster and ytarget_* or ygen_*)",
            hint="only Key4hep MLPF Parquet (CLIC/CLD) is read here; other Parquet layouts (CMS) are not",
        )
    n_track, tracks = _matrices(table, "X_track", path)
    n_cluster, clusters = _matrices(table, "X_cluster", path)
    if len(n_track) != len(n_cluster):
        raise DataError(f"{path}: X_track has {len(n_track)} events but X_cluster {len(n_cluster)}")
    for name, arr in (("X_track", tracks), ("X_cluster", clusters)):
        if arr.size and arr.shape[1] > CLIC_NUM_FEATURES:
            raise DataError(f"{path}: {name} has {arr.shape[1]} features, expected at most 17")
    tracks = pad_columns(tracks, CLIC_NUM_FEATURES) if tracks.size else np.zeros((0, 17), np.float32)
    clusters = pad_columns(clusters, CLIC_NUM_FEATURES) if clusters.size else np.zeros((0, 17), np.float32)
    X, offsets = _interleave(n_track, n_cluster, tracks, clusters)
    ytarget = _targets(table, target_names, n_track, n_cluster, path)
    if set(CAND_NAMES) <= cols:
        ycand = _targets(table, CAND_NAMES, n_track, n_cluster, path)
    else:
        ycand = np.zeros_like(ytarget)
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
