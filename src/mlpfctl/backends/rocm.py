"""AMD Instinct GPUs (PyTorch ROCm build: ``torch.cuda`` API, ``torch.version.hip`` set, RCCL)."""

from __future__ import annotations

from typing import Any

from mlpfctl.backends import probes
from mlpfctl.backends.base import DeviceInfo, ProbeResult
from mlpfctl.backends.torch_cuda import TorchCudaAdapter


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

    def environment(self) -> dict[str, str]:
        env = super().environment()
        # MIOpen's kernel cache on a shared file system is slow and racy across ranks.
        env.setdefault("MIOPEN_USER_DB_PATH", "/tmp/miopen-${USER}")
        return env
