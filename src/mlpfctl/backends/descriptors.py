"""Backend descriptors: data files in the top-level ``backends/`` folder (one TOML per backend)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from mlpfctl.compat import tomllib
from mlpfctl.errors import RuntimeFailure
from mlpfctl.resources import resource_dir

_DTYPES = ("bf16", "fp16", "tf32", "fp32")


@dataclass(frozen=True)
class PeakEntry:
    match: str
    flops: dict[str, float]
    source: str


@dataclass(frozen=True)
class BackendDescriptor:
    name: str
    description: str
    dist_backend: str
    autocast_dtype: str
    visible_devices_env: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    peaks: tuple[PeakEntry, ...] = ()

    def peak_flops(self, device_name: str, dtype: str) -> float | None:
        key = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(dtype, dtype)
        lowered = device_name.lower()
        for entry in self.peaks:
            if entry.match.lower() in lowered:
                return entry.flops.get(key)
        return None


@cache
def load_descriptor(name: str) -> BackendDescriptor:
    path = resource_dir("backends") / f"{name}.toml"
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        peaks = tuple(
            PeakEntry(str(p["match"]), {k: float(p[k]) for k in _DTYPES if k in p}, str(p.get("source", "")))
            for p in data.get("peak_flops", [])
        )
        return BackendDescriptor(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            dist_backend=str(data["dist_backend"]),
            autocast_dtype=str(data.get("autocast_dtype", "none")),
            visible_devices_env=tuple(data.get("visible_devices_env", [])),
            env={str(k): str(v) for k, v in data.get("env", {}).items()},
            peaks=peaks,
        )
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise RuntimeFailure(
            f"backend descriptor {path} is unreadable: {exc}",
            "reinstall mlpfctl; the backends/ folder ships with it",
        ) from None
