"""NVIDIA GPUs (PyTorch CUDA build)."""

from __future__ import annotations

from typing import Any

from mlpfctl.backends import probes
from mlpfctl.backends.base import DeviceInfo, ProbeResult
from mlpfctl.backends.torch_cuda import TorchCudaAdapter, visible_indices


class CudaAdapter(TorchCudaAdapter):
    name = "cuda"

    def _probe(self) -> ProbeResult:
        if probes.torch_module() is None:
            return ProbeResult(self.name, False, "torch is not installed")
        if probes.torch_hip_version():
            return ProbeResult(self.name, False, "this torch is a ROCm build (see the rocm backend)")
        cuda = probes.torch_cuda_version()
        if not cuda:
            return ProbeResult(self.name, False, "torch was built without CUDA (CPU-only wheel)")
        count = probes.cuda_device_count()
        if count == 0:
            return ProbeResult(
                self.name,
                False,
                "no NVIDIA GPU visible (driver missing or CUDA_VISIBLE_DEVICES empty)",
                runtime_version=cuda,
            )
        rows = probes.nvidia_smi() or []
        by_index = {int(r["index"]): r for r in rows if r["index"].isdigit()}
        devices = []
        for logical, physical in enumerate(visible_indices("CUDA_VISIBLE_DEVICES", count)):
            row = by_index.get(physical)
            mem = (
                int(float(row["memory_mib"]) * 2**20)
                if row and row["memory_mib"].replace(".", "").isdigit()
                else None
            )
            devices.append(DeviceInfo(logical, row["name"] if row else "NVIDIA GPU", mem))
        driver = rows[0]["driver"] if rows else None
        return ProbeResult(self.name, True, None, devices, driver_version=driver, runtime_version=cuda)

    def has_native_bf16(self, props: dict[str, Any]) -> bool:
        # bf16 tensor cores came with Ampere (compute capability 8.0); a V100 (7.0) emulates it.
        return tuple(props["capability"]) >= (8, 0)
