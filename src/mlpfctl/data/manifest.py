"""The dataset manifest (``manifest.json``): what was generated, how, and per-shard checksums."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlpfctl.atomic import atomic_write_text

SCHEMA_VERSION = 1
# totals that describe one run, not the dataset
RUN_TOTALS = ("wall_seconds", "generated_shards", "kept_shards", "workers")
FORMAT = "key4hep-parquet"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Manifest:
    process: str
    description: str
    collider: str
    events: int
    seed: int
    events_per_shard: int
    pileup_mu: float
    shards: list[dict[str, Any]]
    versions: dict[str, str]
    detector: str = "clic"
    # The simulated detector's geometry and resolutions (mlpfctl.data.detectors), for link features.
    detector_description: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION
    format: str = FORMAT
    created: str = ""
    totals: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def content(self) -> dict[str, Any]:
        """The manifest without its run record (when it was written, how long shards took, how
        many were kept or generated, by how many workers): what a run with the same seed and
        shard layout reproduces exactly, on one node or as an array job."""
        data = self.to_dict()
        data.pop("created")
        data["totals"] = {k: v for k, v in data["totals"].items() if k not in RUN_TOTALS}
        data["shards"] = [{k: v for k, v in s.items() if k != "seconds"} for s in data["shards"]]
        return data

    def write(self, directory: Path) -> None:
        atomic_write_text(directory / "manifest.json", json.dumps(self.to_dict(), indent=1) + "\n")

    @staticmethod
    def read(directory: Path) -> Manifest:
        data = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
        return Manifest(**data)
