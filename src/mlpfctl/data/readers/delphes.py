"""The Delphes dataset of the CERN openlab HPO scaling study (zenodo 4559324).

Each ``*.pkl.bz2`` holds ``{"X": [ndarray(N, 12)], "ygen": [(N, 7)], "ycand": [(N, 7)]}``, one
array per event. Element types are 1 = calorimeter tower, 2 = track (reversed w.r.t. CLIC); the
target column 0 is already a class index (8 classes). Unpickling runs only numpy's array
reconstruction, so a hostile pickle cannot execute code.
"""

from __future__ import annotations

import bz2
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from mlpfctl.data.block import EventBlock, empty_jets, offsets_from_counts, pad_targets
from mlpfctl.data.events import DELPHES_CLASS_PDGIDS, DELPHES_NUM_FEATURES
from mlpfctl.errors import DataError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")


def _load(path: Path) -> Any:
    opener = bz2.open if path.name.endswith(".bz2") else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
        return _ArraysOnly(io.BytesIO(data)).load()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except (EOFError, OSError) as exc:
        raise DataError(
            f"{path}: truncated or not bz2-compressed ({exc})",
            hint="re-download the file (zenodo 4559324)",
        ) from exc
    except (pickle.UnpicklingError, AttributeError, ImportError, IndexError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a Delphes MLPF pickle ({exc})", hint="check the file") from exc


def _stack(events: list[Any], name: str, width: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    mats = []
    for i, ev in enumerate(events):
        a = np.asarray(ev)
        if a.ndim != 2 or a.shape[1] != width or not np.issubdtype(a.dtype, np.number):
            raise DataError(
                f"{path}: {name}[{i}] has shape {a.shape} ({a.dtype}), expected (N, {width}) numbers",
                hint="is this a Delphes MLPF file (12 features, 7 target columns)?",
            )
        mats.append(a.astype(np.float32, copy=False))
    counts = np.array([m.shape[0] for m in mats], np.int64)
    flat = np.concatenate(mats) if mats else np.zeros((0, width), np.float32)
    return counts, flat


def read_delphes(path: Path) -> EventBlock:
    data = _load(path)
    if not isinstance(data, dict) or not {"X", "ygen", "ycand"} <= set(data):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(
            f"{path}: not a Delphes MLPF pickle (expected a dict with X, ygen, ycand; got {keys})",
            hint="CMS pickles are not supported; use --format key4hep for Parquet",
        )
    lists = [data[k] for k in ("X", "ygen", "ycand")]
    if not all(isinstance(v, list | tuple) for v in lists) or len({len(v) for v in lists}) != 1:
        raise DataError(f"{path}: X, ygen and ycand must be lists with one array per event, of equal length")
    counts, X = _stack(lists[0], "X", DELPHES_NUM_FEATURES, path)
    ys = []
    for name, events in (("ygen", lists[1]), ("ycand", lists[2])):
        y_counts, y = _stack(events, name, 7, path)
        if not np.array_equal(y_counts, counts):
            raise DataError(f"{path}: {name} does not have one row per element of X")
        cls = y[:, 0]
        if y.size and (np.any(cls < 0) or np.any(cls >= len(DELPHES_CLASS_PDGIDS)) or np.any(cls % 1)):
            raise DataError(f"{path}: {name} class column outside 0..{len(DELPHES_CLASS_PDGIDS) - 1}")
        ys.append(pad_targets(y))
    n = len(counts)
    jets, jet_off = empty_jets(n)
    block = EventBlock(
        X, ys[0], ys[1], offsets_from_counts(counts), np.zeros(n, np.float32), jets, jet_off, jets, jet_off
    )
    return block.select(counts > 0)
