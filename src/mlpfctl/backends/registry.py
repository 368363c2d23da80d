"""Backends by name, and THE one place that decides device priority for ``--backend auto``."""

from __future__ import annotations

from mlpfctl.backends.base import BackendAdapter, ProbeResult
from mlpfctl.backends.cpu import CpuAdapter
from mlpfctl.backends.cuda import CudaAdapter
from mlpfctl.backends.hpu import HpuAdapter
from mlpfctl.backends.rocm import RocmAdapter
from mlpfctl.backends.xpu import XpuAdapter
from mlpfctl.errors import UsageError

REGISTRY: dict[str, type[BackendAdapter]] = {
    cls.name: cls for cls in (CudaAdapter, RocmAdapter, HpuAdapter, XpuAdapter, CpuAdapter)
}

# Accelerators first; among them the most common HPC stacks first. CPU always works.
PRIORITY: tuple[str, ...] = ("cuda", "rocm", "hpu", "xpu", "cpu")


def available_names() -> list[str]:
    return ["auto", *PRIORITY]


def get_backend(name: str) -> BackendAdapter:
    """The adapter called ``name`` (not probed). A bad name lists the available ones."""
    cls = REGISTRY.get(name)
    if cls is None:
        raise UsageError(f"unknown backend '{name}'", f"available backends: {', '.join(available_names())}")
    return cls()


def probe_all() -> dict[str, ProbeResult]:
    return {name: get_backend(name).probe() for name in PRIORITY}


def auto_choice(results: dict[str, ProbeResult] | None = None) -> str:
    results = results if results is not None else probe_all()
    for name in PRIORITY:
        if results[name].available:
            return name
    return "cpu"


def select_backend(name: str = "auto") -> BackendAdapter:
    """Resolve ``name`` (or ``auto``) to an adapter whose devices are really present."""
    if name == "auto":
        for candidate in PRIORITY:
            adapter = get_backend(candidate)
            if adapter.probe().available:
                return adapter
        return get_backend("cpu")
    adapter = get_backend(name)
    result = adapter.probe()
    if not result.available:
        raise UsageError(
            f"backend '{name}' is not available here: {result.reason}",
            "run 'mlpfctl devices' to see what this machine has, or use --backend auto",
        )
    return adapter
