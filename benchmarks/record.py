"""Shared benchmark plumbing: machine/software description and the JSON result file."""

from __future__ import annotations

import datetime as dt
import json
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def git_sha() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def environment() -> dict[str, Any]:
    from mlpfctl import __version__
    from mlpfctl.backends.hostinfo import host_summary

    versions: dict[str, str | None] = {"mlpfctl": __version__, "python": platform.python_version()}
    for module in ("torch", "optuna", "numpy"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    host = host_summary()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {k: host[k] for k in ("cpu_model", "logical_cores", "memory_bytes", "os")},
        "versions": versions,
        "git_sha": git_sha(),
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
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))
