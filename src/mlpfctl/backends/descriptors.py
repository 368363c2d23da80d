"""Backend descriptors: data files in the top-level ``backends/`` folder (one TOML per backend)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from mlpfctl.compat import tomllib
from mlpfctl.errors import RuntimeFailure
from mlpfctl.resources import resource_dir

_DTYPES = ("bf16", "fp16", "tf32", "fp32")
_DTYPE_NAMES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
_GIB = 2**30


def normalise_name(name: str) -> str:
    """Case- and whitespace-insensitive form of a device name, for exact matching."""
    return " ".join(name.lower().split())


@dataclass(frozen=True)
class DeviceIdentity:
    """What identifies one torch device for its peak FLOP/s: the full name and, where one name
    covers several products, the memory, the architecture and the compute units (SMs / CUs /
    Xe-core EUs) of that device as torch sees it (one GCD of an MI250X, one stack of a Max 1550)."""

    name: str
    memory_bytes: int | None = None
    arch: str | None = None
    compute_units: int | None = None


@dataclass(frozen=True)
class PeakEntry:
    """One product's dense peak FLOP/s per torch device. Every key it sets must match."""

    flops: dict[str, float]
    source: str
    names: tuple[str, ...] = ()
    memory_gib: tuple[float, float] | None = None
    arch: str | None = None
    compute_units: int | None = None

    def matches(self, device: DeviceIdentity) -> bool:
        if self.names and normalise_name(device.name) not in {normalise_name(n) for n in self.names}:
            return False
        if self.memory_gib is not None:
            if device.memory_bytes is None:
                return False
            low, high = self.memory_gib
            if not low <= device.memory_bytes / _GIB <= high:
                return False
        if self.arch is not None and device.arch != self.arch:
            return False
        return self.compute_units is None or device.compute_units == self.compute_units


@dataclass(frozen=True)
class BackendDescriptor:
    name: str
    description: str
    dist_backend: str
    autocast_dtype: str
    visible_devices_env: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    peaks: tuple[PeakEntry, ...] = ()
    pin_memory: bool = False
    pad_buckets: tuple[int, ...] = ()
    sdpa_math_below_torch: str | None = None
    # Host backends: autocast only on CPUs with one of these flags (empty: always).
    autocast_cpu_flags: tuple[str, ...] = ()

    def peak_entry(self, device: DeviceIdentity) -> PeakEntry | None:
        """The entry for this device; None when none match, or several that disagree (unknown, not
        wrong)."""
        if not device.name.strip() and device.arch is None:
            return None
        found = [entry for entry in self.peaks if entry.matches(device)]
        if not found or any(entry.flops != found[0].flops for entry in found[1:]):
            return None
        return found[0]

    def peak_flops(self, device: DeviceIdentity, dtype: str) -> float | None:
        entry = self.peak_entry(device)
        return None if entry is None else entry.flops.get(_DTYPE_NAMES.get(dtype, dtype))


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(value: str, env: dict[str, str]) -> str:
    """Expand ``${NAME}`` from ``env``; an unknown name is an error (never a literal ``${USER}``)."""

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in env:
            raise KeyError(key)
        return env[key]

    return _PLACEHOLDER.sub(one, value)


def _peak(p: dict[str, Any]) -> PeakEntry:
    names = p.get("names", [])
    memory = p.get("memory_gib")
    entry = PeakEntry(
        flops={k: float(p[k]) for k in _DTYPES if k in p},
        source=str(p.get("source", "")),
        names=tuple(str(n) for n in names),
        memory_gib=(float(memory[0]), float(memory[1])) if memory is not None else None,
        arch=str(p["arch"]) if "arch" in p else None,
        compute_units=int(p["compute_units"]) if "compute_units" in p else None,
    )
    if not entry.names and (entry.arch is None or entry.compute_units is None):
        raise ValueError(f"peak entry {p} needs names, or arch and compute_units")
    return entry


@cache
def load_descriptor(name: str) -> BackendDescriptor:
    path = resource_dir("backends") / f"{name}.toml"
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        sdpa = data.get("sdpa", {})
        return BackendDescriptor(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            dist_backend=str(data["dist_backend"]),
            autocast_dtype=str(data.get("autocast_dtype", "none")),
            visible_devices_env=tuple(data.get("visible_devices_env", [])),
            env={str(k): str(v) for k, v in data.get("env", {}).items()},
            peaks=tuple(_peak(p) for p in data.get("peak_flops", [])),
            pin_memory=bool(data.get("pin_memory", False)),
            pad_buckets=tuple(int(b) for b in data.get("batching", {}).get("pad_buckets", [])),
            sdpa_math_below_torch=str(sdpa["math_below_torch"]) if "math_below_torch" in sdpa else None,
            autocast_cpu_flags=tuple(str(f) for f in data.get("autocast_cpu_flags", [])),
        )
    except (OSError, KeyError, ValueError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise RuntimeFailure(
            f"backend descriptor {path} is unreadable: {exc}",
            "reinstall mlpfctl; the backends/ folder ships with it",
        ) from None
