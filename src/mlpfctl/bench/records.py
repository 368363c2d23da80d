"""Benchmark records: one JSON file per measured point, with everything needed to trust it later."""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlpfctl.atomic import atomic_write_text
from mlpfctl.errors import DataError, UsageError

SCHEMA = "mlpfctl.bench/1"


def software_versions() -> dict[str, str | None]:
    from mlpfctl import __version__

    versions: dict[str, str | None] = {"mlpfctl": __version__, "python": platform.python_version()}
    for module in ("torch", "optuna", "numpy"):
        try:
            versions[module] = str(__import__(module).__version__)
        except ImportError:
            versions[module] = None
    return versions


def git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=here, check=False, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def machine() -> dict[str, Any]:
    from mlpfctl.backends.hostinfo import host_summary

    host = host_summary()
    return {k: host[k] for k in ("hostname", "cpu_model", "logical_cores", "memory_bytes", "os")}


@dataclass
class BenchRecord:
    """One measured point (a world size, a worker count, a dataset size)."""

    kind: str  # "train-strong", "train-weak", "hpo", "scaling-law"
    point: dict[str, Any]  # the x value(s): world_size, workers, train_events
    metrics: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    backend: str = "cpu"
    device: str = ""
    schema: str = SCHEMA
    date: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    versions: dict[str, str | None] = field(default_factory=software_versions)
    git_sha: str | None = field(default_factory=git_sha)
    machine: dict[str, Any] = field(default_factory=machine)

    def write(self, directory: Path) -> Path:
        key = "-".join(f"{k}{v}" for k, v in sorted(self.point.items()))
        path = directory / f"{self.kind}-{key}.json"
        atomic_write_text(path, json.dumps(asdict(self), indent=2, default=str) + "\n")
        return path


def load_records(directory: Path) -> list[BenchRecord]:
    if not directory.is_dir():
        raise UsageError(
            f"'{directory}' is not a directory", "pass the output directory of a scale-bench run"
        )
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(
                f"benchmark record '{path}' is unreadable: {exc}", "delete it or rerun that point"
            ) from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            continue  # other JSON (summaries, fits) lives beside the records
        try:
            out.append(BenchRecord(**data))
        except TypeError as exc:
            raise DataError(
                f"benchmark record '{path}' has an unexpected layout: {exc}",
                "rerun that point with this mlpfctl version",
            ) from None
    if not out:
        raise UsageError(
            f"no benchmark records in '{directory}'",
            "run 'mlpfctl scale-bench train|hpo|scaling-law --out DIR' first",
        )
    return out
