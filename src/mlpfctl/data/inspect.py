"""Summary statistics of a dataset for ``mlpfctl data inspect``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlpfctl.data.dataset import MANIFEST_NAME, open_dataset


def _fractions(codes: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    counts = np.bincount(codes.astype(np.int64), minlength=len(names))
    total = max(int(counts.sum()), 1)
    return {name: round(float(c) / total, 4) for name, c in zip(names, counts.tolist(), strict=False)}


def inspect_dataset(path: str | Path, format: str = "auto") -> dict[str, Any]:
    ds = open_dataset(path, format)
    schema = ds.schema
    n_feat = schema.num_features
    lo = np.full(n_feat, np.inf)
    hi = np.full(n_feat, -np.inf)
    total = np.zeros(n_feat)
    types: list[np.ndarray] = []
    target: list[np.ndarray] = []
    cand: list[np.ndarray] = []
    n_jets = 0
    met: list[np.ndarray] = []
    for shard in range(len(ds.sources)):
        block = ds.block(shard)
        if len(block.X):
            lo = np.minimum(lo, block.X.min(axis=0))
            hi = np.maximum(hi, block.X.max(axis=0))
            total += block.X.sum(axis=0, dtype=np.float64)
        types.append(block.X[:, 0].astype(np.int64))
        target.append(block.ytarget[:, 0])
        cand.append(block.ycand[:, 0])
        n_jets += len(block.targetjets)
        met.append(block.genmet)
        ds.cache.clear()  # inspect streams: keep one shard in memory at a time
    lengths = ds.lengths
    n_el = int(lengths.sum())
    t = np.concatenate(types) if types else np.zeros(0, np.int64)
    yt = np.concatenate(target) if target else np.zeros(0)
    yc = np.concatenate(cand) if cand else np.zeros(0)
    per_type = {}
    for code, name in schema.element_types.items():
        sel = t == code
        per_type[name] = {
            "elements": int(sel.sum()),
            "per_event": round(float(sel.sum()) / max(len(ds), 1), 2),
            "target_fractions": _fractions(yt[sel], schema.class_names),
            "candidate_fractions": _fractions(yc[sel], schema.class_names),
        }
    p = Path(path)
    files = [s.path for s in ds.sources]
    return {
        "path": str(p),
        "format": ds.format,
        "schema": schema.name,
        "manifest": (p / MANIFEST_NAME).is_file() if p.is_dir() else False,
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "events": len(ds),
        "elements": n_el,
        "elements_per_event": {
            "mean": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
            **{
                f"p{q}": float(np.percentile(lengths, q)) if len(lengths) else 0.0
                for q in (0, 10, 50, 90, 99, 100)
            },
        },
        "element_types": per_type,
        "target_fractions": _fractions(yt, schema.class_names),
        "candidate_fractions": _fractions(yc, schema.class_names),
        "target_jets_per_event": round(n_jets / max(len(ds), 1), 2),
        "genmet_mean": round(float(np.concatenate(met).mean()), 3) if met and n_el else 0.0,
        "features": {
            name: {"min": float(lo[i]), "max": float(hi[i]), "mean": float(total[i] / max(n_el, 1))}
            for i, name in enumerate(schema.feature_names)
        }
        if n_el
        else {},
    }
