"""Intel Data Center GPUs through native ``torch.xpu`` (IPEX is optional and only used if installed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpfctl.backends import probes
from mlpfctl.backends.base import BackendAdapter, DeviceInfo, ProbeResult

if TYPE_CHECKING:
    import torch


class XpuAdapter(BackendAdapter):
    name = "xpu"
    device_type = "xpu"

    def _probe(self) -> ProbeResult:
        torch = probes.torch_module()
        if torch is None:
            return ProbeResult(self.name, False, "torch is not installed")
        xpu = getattr(torch, "xpu", None)
        if xpu is None:
            return ProbeResult(self.name, False, "this torch has no torch.xpu (needs torch >= 2.4)")
        if not xpu.is_available():
            return ProbeResult(
                self.name,
                False,
                "no Intel GPU visible (torch built without XPU support, or level-zero driver missing)",
            )
        count = int(xpu.device_count())
        devices = [DeviceInfo(i, str(xpu.get_device_name(i))) for i in range(count)]
        ipex = probes.import_optional("intel_extension_for_pytorch")
        return ProbeResult(
            self.name,
            True,
            None,
            devices,
            details={"ipex": getattr(ipex, "__version__", None) if ipex else None},
        )

    @property
    def dist_backend(self) -> str:
        torch = probes.torch_module()
        dist = getattr(torch, "distributed", None)
        if dist is not None and getattr(dist, "is_xccl_available", lambda: False)():
            return "xccl"
        return "ccl"  # oneCCL bindings for PyTorch on older stacks

    def setup_process(self, local_rank: int) -> torch.device:
        import torch

        probes.import_optional("intel_extension_for_pytorch")
        index = local_rank % max(1, torch.xpu.device_count())
        torch.xpu.set_device(index)
        return torch.device("xpu", index)

    def device_name(self, device: torch.device) -> str:
        import torch

        return str(torch.xpu.get_device_name(device))

    def synchronize(self, device: torch.device) -> None:
        import torch

        torch.xpu.synchronize(device)
