"""Shared benchmark plumbing: machine/software description and the JSON result file."""

from __future__ import annotations

import datetime as dt
import json
import statistics
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def environment() -> dict[str, Any]:
    """Date, machine, software versions and git SHA: the same facts scale-bench records carry."""
    from mlpfctl.bench.records import git_sha, machine, software_versions

    host = machine()
    sha = git_sha()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {k: host[k] for k in ("cpu_model", "logical_cores", "memory_bytes", "os")},
        "versions": software_versions(),
        "git_sha": sha[:7] if sha else None,
    }


def write_result(name: str, results: Any, settings: dict[str, Any] | None = None) -> Path:
    from mlpfctl.atomic import atomic_write_text

    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, **environment(), "settings": settings or {}, "results": results}
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile, q in [0, 1]."""
    from mlpfctl.bench.timing import percentile

    return float(percentile(values, 100.0 * q))
