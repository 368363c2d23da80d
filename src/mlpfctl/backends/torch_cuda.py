"""What NVIDIA (CUDA) and AMD (ROCm) adapters share: both are driven through ``torch.cuda``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpfctl.backends import probes
from mlpfctl.backends.base import BackendAdapter

if TYPE_CHECKING:
    import torch


class TorchCudaAdapter(BackendAdapter):
    device_type = "cuda"  # ROCm builds use the torch.cuda device type too

    def setup_process(self, local_rank: int) -> torch.device:
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

    def autocast_dtype(self) -> torch.dtype | None:
        import torch

        dtype = super().autocast_dtype()
        if dtype is torch.bfloat16 and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            return torch.float16
        return dtype

    def device_name(self, device: torch.device) -> str:
        import torch

        return str(torch.cuda.get_device_name(device))

    def synchronize(self, device: torch.device) -> None:
        import torch

        torch.cuda.synchronize(device)

    def memory_stats(self, device: torch.device) -> dict[str, int]:
        import torch

        return {
            "peak_allocated_bytes": int(torch.cuda.max_memory_allocated(device)),
            "allocated_bytes": int(torch.cuda.memory_allocated(device)),
        }

    def reset_peak_memory(self, device: torch.device) -> None:
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def visible_indices(env_var: str, count: int) -> list[int]:
    """Physical indices behind torch's logical ones, for matching SMI rows."""
    text = probes.getenv(env_var)
    if text:
        out = [int(p) for p in text.split(",") if p.strip().isdigit()]
        if len(out) == count:
            return out
    return list(range(count))
