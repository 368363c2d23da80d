"""Device backends: probe, select, per-process set-up, dist backend, AMP dtype, peak FLOP/s."""

from mlpfctl.backends.base import BackendAdapter, DeviceInfo, ProbeResult
from mlpfctl.backends.registry import PRIORITY, available_names, get_backend, probe_all, select_backend

__all__ = [
    "PRIORITY",
    "BackendAdapter",
    "DeviceInfo",
    "ProbeResult",
    "available_names",
    "get_backend",
    "probe_all",
    "select_backend",
]
