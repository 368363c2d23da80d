"""AMD Instinct GPUs (PyTorch ROCm build: ``torch.cuda`` API, ``torch.version.hip`` set, RCCL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpfctl.backends import probes, sdpa
from mlpfctl.backends.base import DeviceInfo, ProbeResult
from mlpfctl.backends.torch_cuda import TorchCudaAdapter

if TYPE_CHECKING:
    import torch
    from torch import nn

# Architectures without bf16 arithmetic (Vega, MI50/MI60): bf16 autocast would be emulated.
_NO_BF16 = frozenset({"gfx803", "gfx900", "gfx906"})


class RocmAdapter(TorchCudaAdapter):
    name = "rocm"

    def _probe(self) -> ProbeResult:
        if probes.torch_module() is None:
            return ProbeResult(self.name, False, "torch is not installed")
        hip = probes.torch_hip_version()
        if not hip:
            return ProbeResult(self.name, False, "torch is not a ROCm build (torch.version.hip is unset)")
        count = probes.cuda_device_count()
        if count == 0:
            return ProbeResult(
                self.name,
                False,
                "no AMD GPU visible (amdgpu driver missing or ROCR/HIP_VISIBLE_DEVICES empty)",
                runtime_version=hip,
            )
        smi: dict[str, Any] = probes.rocm_smi() or {}
        cards = [v for k, v in sorted(smi.items()) if k.startswith("card") and isinstance(v, dict)]
        devices = []
        for i in range(count):
            card = cards[i] if i < len(cards) else {}
            name = str(card.get("Card Series") or card.get("Card series") or "AMD GPU")
            total = card.get("VRAM Total Memory (B)")
            memory = int(str(total)) if str(total).isdigit() else None
            devices.append(DeviceInfo(i, name, memory))
        driver = smi.get("system", {}).get("Driver version") if isinstance(smi.get("system"), dict) else None
        return ProbeResult(
            self.name,
            True,
            None,
            devices,
            driver_version=driver,
            runtime_version=hip,
            details={
                "visible_devices": {
                    v: probes.getenv(v) for v in self.visible_devices_env if probes.getenv(v) is not None
                }
            },
        )

    def has_native_bf16(self, props: dict[str, Any]) -> bool:
        return props.get("arch") not in _NO_BF16

    def sdpa_math_reason(self, device: torch.device) -> str | None:
        """Why this device must run attention on the math kernel, or None when it need not."""
        import torch

        floor = self.descriptor.sdpa_math_below_torch
        version = probes.torch_version()
        if floor and sdpa.version_below(version, floor):
            return f"torch {version} < {floor}: AOTriton SDPA is wrong with masks (pytorch/pytorch#147460)"
        dtype = self.autocast_dtype(device) or torch.float32
        if not probes.sdpa_fused_kernel_agrees(device, dtype):
            return f"the memory-efficient SDPA kernel disagrees with the math kernel on this device ({dtype})"
        return None

    def prepare_model(self, module: nn.Module, device: torch.device) -> nn.Module:
        reason = self.sdpa_math_reason(device)
        if reason is not None:
            from mlpfctl.console import warn

            warn(f"attention runs on the math SDPA kernel: {reason}")
            sdpa.restrict_to_math(module)
        return module
