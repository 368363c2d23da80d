"""Writers of small files in the exact on-disk layouts of the real datasets (for reader tests)."""

from __future__ import annotations

import bz2
import pickle
from pathlib import Path
from typing import Any

import numpy as np

CLIC_CODES = [0, 211, 130, 22, 11, 13]


def key4hep_events(n: int, seed: int = 0, y_width: int = 13) -> list[dict[str, Any]]:
    """Random events shaped like the reference post-processing output (float64, PDG-like codes)."""
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(n):
        nt, nc = int(rng.integers(0, 6)), int(rng.integers(1, 9))

        def y(k: int, track: bool) -> np.ndarray:
            a = rng.random((k, y_width))
            a[:, 0] = rng.choice([0, 211, 11, 13] if track else [0, 130, 22], k)
            return a

        x_t = np.c_[np.ones(nt), rng.random((nt, 15)) + 0.1]
        x_c = np.c_[2 * np.ones(nc), rng.random((nc, 16)) + 0.1]
        events.append(
            {
                "X_track": x_t,
                "X_cluster": x_c,
                "ytarget_track": y(nt, True),
                "ytarget_cluster": y(nc, False),
                "ycand_track": y(nt, True),
                "ycand_cluster": y(nc, False),
                "genmet": float(rng.random() * 50),
                "genjet": rng.random((int(rng.integers(0, 4)), 4)),
                "targetjet": rng.random((int(rng.integers(0, 4)), 4)),
            }
        )
    return events


def write_key4hep_reference(path: Path, events: list[dict[str, Any]], old_names: bool = False) -> None:
    """As ``mlpf/data/key4hep/postprocessing.py``: one ak.Record of per-event lists, ak.to_parquet."""
    import awkward as ak

    def name(k: str) -> str:
        return k.replace("ytarget", "ygen") if old_names else k

    record = ak.Record({name(k): ak.from_iter([ev[k] for ev in events]) for k in events[0]})
    ak.to_parquet(record, str(path))


def write_key4hep_rows(path: Path, events: list[dict[str, Any]]) -> None:
    """The one-row-per-event variant, written with pyarrow only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {k: [np.asarray(ev[k]).tolist() for ev in events] for k in events[0]}
    pq.write_table(pa.table(cols), path)


def delphes_events(n: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """As zenodo 4559324: dict of per-event arrays; X (N, 12) with 1 = tower, 2 = track."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {"X": [], "ygen": [], "ycand": []}
    for _ in range(n):
        k = int(rng.integers(3, 30))
        X = rng.random((k, 12)).astype(np.float32)
        X[:, 0] = rng.choice([1, 2], k)
        out["X"].append(X)
        for key in ("ygen", "ycand"):
            y = rng.random((k, 7)).astype(np.float32)
            y[:, 0] = rng.integers(0, 8, k)
            out[key].append(y)
    return out


def write_delphes(path: Path, data: Any) -> None:
    with bz2.open(path, "wb") as handle:
        pickle.dump(data, handle, protocol=4)


def write_key4hep_synthetic(path: Path, n_events: int, seed: int = 0, max_elements: int = 200) -> np.ndarray:
    """A reference-layout Key4hep file of ``n_events`` random events, built with pyarrow from numpy
    (fast enough for thousands of events); returns the elements per event."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_track = rng.integers(0, max_elements // 2, n_events)
    n_cluster = rng.integers(1, max_elements // 2, n_events)

    def nested(rows: np.ndarray, counts: np.ndarray) -> pa.Array:
        width = rows.shape[1]
        inner = pa.ListArray.from_arrays(
            pa.array(np.arange(0, rows.size + 1, width, dtype=np.int32)), pa.array(rows.reshape(-1))
        )
        per_event = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(counts)].astype(np.int32)), inner)
        return pa.ListArray.from_arrays(pa.array(np.array([0, n_events], np.int32)), per_event)

    def features(counts: np.ndarray, width: int, elemtype: int) -> np.ndarray:
        # few distinct values: compresses like real data, writes fast
        a = rng.integers(0, 8, (int(counts.sum()), width)).astype(np.float32)
        a[:, 0] = elemtype
        return a

    def targets(counts: np.ndarray, codes: list[int]) -> np.ndarray:
        a = rng.integers(0, 8, (int(counts.sum()), 14)).astype(np.float32)
        a[:, 0] = rng.choice(codes, len(a))
        return a

    columns = {
        "X_track": nested(features(n_track, 16, 1), n_track),
        "X_cluster": nested(features(n_cluster, 17, 2), n_cluster),
        "ytarget_track": nested(targets(n_track, [0, 211, 11, 13]), n_track),
        "ytarget_cluster": nested(targets(n_cluster, [0, 130, 22]), n_cluster),
        "ycand_track": nested(targets(n_track, [0, 211, 11, 13]), n_track),
        "ycand_cluster": nested(targets(n_cluster, [0, 130, 22]), n_cluster),
        "genmet": pa.ListArray.from_arrays(
            pa.array(np.array([0, n_events], np.int32)), pa.array(rng.random(n_events, dtype=np.float32))
        ),
    }
    pq.write_table(pa.table(columns), path, compression="zstd")
    return (n_track + n_cluster).astype(np.int64)
