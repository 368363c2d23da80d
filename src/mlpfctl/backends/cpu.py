"""Host CPUs: always available."""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING

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
