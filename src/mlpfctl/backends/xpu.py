"""Intel Data Center GPUs through native ``torch.xpu`` (IPEX is optional and only used if installed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpfctl.backends import probes
from mlpfctl.backends.base import BackendAdapter, DeviceInfo, ProbeResult
from mlpfctl.backends.descriptors import DeviceIdentity

if TYPE_CHECKING:
    import torch

IPEX = "intel_extension_for_pytorch"


class XpuAdapter(BackendAdapter):
    name = "xpu"

    def _probe(self) -> ProbeResult:
        torch = probes.torch_module()
        if torch is None:
            return ProbeResult(self.name, False, "torch is not installed")
        ipex = probes.import_optional(IPEX)
        # "not installed" is the normal case (native torch.xpu); a broken install is worth saying.
        ipex_problem = ipex.reason if ipex.installed else None
        details: dict[str, Any] = {
            "ipex": getattr(ipex.module, "__version__", None) if ipex.module else None,
            "ipex_error": ipex_problem,
        }
        xpu = getattr(torch, "xpu", None)
        if xpu is None:
            reason = "this torch has no torch.xpu (needs torch >= 2.4)"
            return ProbeResult(self.name, False, _with(reason, ipex_problem), details=details)
        if not xpu.is_available():
            reason = "no Intel GPU visible (torch built without XPU support, or level-zero driver missing)"
            return ProbeResult(self.name, False, _with(reason, ipex_problem), details=details)
        count = int(xpu.device_count())
        devices = [DeviceInfo(i, str(xpu.get_device_name(i))) for i in range(count)]
        return ProbeResult(self.name, True, None, devices, details=details)

    @property
    def dist_backend(self) -> str:
        torch = probes.torch_module()
        dist = getattr(torch, "distributed", None)
        if dist is not None and getattr(dist, "is_xccl_available", lambda: False)():
            return "xccl"
        return "ccl"  # oneCCL bindings for PyTorch on older stacks

    def _select_device(self, local_rank: int) -> torch.device:
        import torch

        probes.import_optional(IPEX)  # optional: adds its kernels when present
        index = local_rank % max(1, torch.xpu.device_count())
        torch.xpu.set_device(index)
        return torch.device("xpu", index)

    @staticmethod
    def _index(device: torch.device) -> int:
        import torch

        return int(device.index) if device.index is not None else int(torch.xpu.current_device())

    def device_identity(self, device: torch.device) -> DeviceIdentity:
        props = probes.xpu_device_properties(self._index(device))
        return DeviceIdentity(props["name"], props["memory_bytes"], None, props["compute_units"])

    def device_name(self, device: torch.device) -> str:
        return str(probes.xpu_device_properties(self._index(device))["name"])

    def _device_module(self) -> Any:
        return probes.torch_device_module("xpu")


def _with(reason: str, ipex_problem: str | None) -> str:
    return reason if ipex_problem is None else f"{reason}; also {ipex_problem}"
