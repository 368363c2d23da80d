"""Intel Gaudi (Habana) HPUs through ``habana_frameworks.torch``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpfctl.backends import probes
from mlpfctl.backends.base import BackendAdapter, DeviceInfo, ProbeResult

if TYPE_CHECKING:
    import torch


class HpuAdapter(BackendAdapter):
    name = "hpu"
    device_type = "hpu"

    def _probe(self) -> ProbeResult:
        htorch = probes.import_optional("habana_frameworks.torch")
        if htorch is None:
            return ProbeResult(self.name, False, "habana_frameworks.torch is not installed")
        hpu = getattr(htorch, "hpu", None)
        if hpu is None or not hpu.is_available():
            return ProbeResult(
                self.name, False, "no Gaudi device available (habana driver or HABANA_VISIBLE_MODULES)"
            )
        count = int(hpu.device_count())
        name = str(hpu.get_device_name()) if hasattr(hpu, "get_device_name") else "Gaudi"
        version = getattr(htorch, "__version__", None)
        return ProbeResult(
            self.name,
            True,
            None,
            [DeviceInfo(i, name) for i in range(count)],
            runtime_version=str(version) if version else None,
        )

    def setup_process(self, local_rank: int) -> torch.device:
        import torch

        probes.import_optional("habana_frameworks.torch.core")
        # The Habana runtime maps one module per process from HABANA_VISIBLE_MODULES/local rank.
        return torch.device("hpu")

    def device_name(self, device: torch.device) -> str:
        htorch = probes.import_optional("habana_frameworks.torch")
        hpu = getattr(htorch, "hpu", None)
        return str(hpu.get_device_name()) if hpu is not None else "Gaudi"

    def synchronize(self, device: torch.device) -> None:
        htorch = probes.import_optional("habana_frameworks.torch")
        hpu = getattr(htorch, "hpu", None)
        if hpu is not None:
            hpu.synchronize()
