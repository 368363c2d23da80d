"""Host CPUs: always available."""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING

from mlpfctl.backends import probes
from mlpfctl.backends.base import BackendAdapter, DeviceInfo, ProbeResult
from mlpfctl.backends.hostinfo import cpu_model

if TYPE_CHECKING:
    import torch


class CpuAdapter(BackendAdapter):
    name = "cpu"

    def _probe(self) -> ProbeResult:
        import psutil

        memory = int(psutil.virtual_memory().total)
        return ProbeResult(
            self.name,
            True,
            None,
            [DeviceInfo(0, cpu_model(), memory)],
            runtime_version=platform.python_version(),
            details={"logical_cores": os.cpu_count()},
        )

    def _select_device(self, local_rank: int) -> torch.device:
        import torch

        return torch.device("cpu")

    def device_name(self, device: torch.device) -> str:
        return cpu_model()

    def autocast_dtype(self, device: torch.device | None = None) -> torch.dtype | None:
        """The descriptor's dtype where the CPU computes it natively (``autocast_cpu_flags``):
        emulated bf16 is slower than fp32."""
        dtype = super().autocast_dtype(device)
        required = self.descriptor.autocast_cpu_flags
        if dtype is not None and required and not probes.cpu_flags() & set(required):
            return None
        return dtype
