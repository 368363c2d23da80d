"""Write one shard in the reference Key4hep post-processing layout (one ``ak.Record`` per file).

The file holds a single row whose columns are lists over events: ``X_track`` (events x tracks x
16), ``X_cluster`` (x 17), ``ytarget_*``/``ycand_*`` (x 14, PDG-like codes in column 0),
``genmet``, ``genjet`` and ``targetjet`` (x 4: pt, eta, phi, E). We store float32 where the
reference stores float64; readers accept both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

ORDER = (
    "X_track",
    "X_cluster",
    "ytarget_track",
    "ytarget_cluster",
    "ycand_track",
    "ycand_cluster",
    "genmet",
    "genjet",
    "targetjet",
)


def _jagged(rows: np.ndarray, counts: np.ndarray) -> Any:
    """events x var rows x var columns, as the reference's ``ak.from_iter`` produces."""
    import awkward as ak

    rows = np.ascontiguousarray(rows, dtype=np.float32)
    width = rows.shape[1]
    inner = ak.contents.ListOffsetArray(
        ak.index.Index64(np.arange(0, rows.shape[0] * width + 1, width, dtype=np.int64)),
        ak.contents.NumpyArray(rows.reshape(-1)),
    )
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return ak.contents.ListOffsetArray(ak.index.Index64(offsets), inner)


def write_shard(path: Path, columns: dict[str, tuple[np.ndarray, np.ndarray]], genmet: np.ndarray) -> None:
    """``columns`` maps a field name to (rows, rows per event); written atomically with zstd."""
    import awkward as ak

    fields: dict[str, Any] = {}
    for name in ORDER:
        if name == "genmet":
            fields[name] = ak.Array(np.asarray(genmet, np.float32))
        else:
            rows, counts = columns[name]
            fields[name] = ak.Array(_jagged(rows, counts))
    record = ak.Record(fields)
    # ak.to_parquet wants a path: write a hidden sibling, then rename it into place.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ak.to_parquet(record, str(tmp), compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
