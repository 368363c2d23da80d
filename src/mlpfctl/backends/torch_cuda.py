"""What NVIDIA (CUDA) and AMD (ROCm) adapters share: both are driven through ``torch.cuda``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpfctl.backends import probes
from mlpfctl.backends.base import BackendAdapter
from mlpfctl.backends.descriptors import DeviceIdentity

if TYPE_CHECKING:
    import torch


class TorchCudaAdapter(BackendAdapter):
    def _select_device(self, local_rank: int) -> torch.device:
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            from mlpfctl.errors import RuntimeFailure

            raise RuntimeFailure(
                f"no {self.name} device is visible to this process",
                "check the job's GPU request and *_VISIBLE_DEVICES",
            )
        # With one GPU bound per task (srun --gpus-per-task=1) every rank sees index 0.
        index = local_rank % count
        torch.cuda.set_device(index)
        return torch.device("cuda", index)

    @staticmethod
    def _index(device: torch.device | None) -> int:
        if device is not None and device.index is not None:
            return int(device.index)
        import torch

        return int(torch.cuda.current_device())

    def has_native_bf16(self, props: dict[str, Any]) -> bool:
        """Whether the device computes bf16 in hardware (``torch.cuda.is_bf16_supported()`` also
        counts emulation, which is slower than fp16 on a V100)."""
        return True

    def autocast_dtype(self, device: torch.device | None = None) -> torch.dtype | None:
        import torch

        dtype = super().autocast_dtype(device)
        if dtype is torch.bfloat16 and not self.has_native_bf16(
            probes.cuda_device_properties(self._index(device))
        ):
            return torch.float16
        return dtype

    def device_identity(self, device: torch.device) -> DeviceIdentity:
        props = probes.cuda_device_properties(self._index(device))
        return DeviceIdentity(props["name"], props["memory_bytes"], props["arch"], props["compute_units"])

    def device_name(self, device: torch.device) -> str:
        return str(probes.cuda_device_properties(self._index(device))["name"])

    def _device_module(self) -> Any:
        return probes.torch_device_module("cuda")


def visible_indices(env_var: str, count: int) -> list[int]:
    """Physical indices behind torch's logical ones, for matching SMI rows."""
    text = probes.getenv(env_var)
    if text:
        out = [int(p) for p in text.split(",") if p.strip().isdigit()]
        if len(out) == count:
            return out
    return list(range(count))
