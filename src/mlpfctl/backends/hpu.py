"""Intel Gaudi (Habana) HPUs through ``habana_frameworks.torch``, the way Intel documents it today.

* Execution mode: eager mode with ``torch.compile(backend="hpu_backend")`` by default
  (``PT_HPU_LAZY_MODE=0`` from hpu.toml); the legacy lazy mode only when the user sets
  ``PT_HPU_LAZY_MODE=1``, and then ``mark_step()`` at every step boundary.
* The environment is applied before the bridge is first imported (the bridge reads it at import),
  so the probe applies it too: it may be the first importer in a training process.
* The probe takes no device: names, memory and module ids come from ``hl-smi``, never from the
  bridge's ``get_device_name()``, which acquires a module (and fails when all are in use).
* HCCL is registered explicitly (``habana_frameworks.torch.distributed.hccl``), after the
  launcher variables it reads at import are set (torchrun's, derived from SLURM's under srun).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mlpfctl.backends import probes
from mlpfctl.backends.base import BackendAdapter, DeviceInfo, ProbeResult
from mlpfctl.backends.descriptors import DeviceIdentity
from mlpfctl.errors import RuntimeFailure

if TYPE_CHECKING:
    import torch
    from torch import nn

BRIDGE = "habana_frameworks.torch"
CORE = "habana_frameworks.torch.core"
HCCL = "habana_frameworks.torch.distributed.hccl"


def _mib(text: str) -> int | None:
    digits = "".join(ch for ch in text if ch.isdigit() or ch == ".")
    return int(float(digits) * 2**20) if digits else None


class HpuAdapter(BackendAdapter):
    name = "hpu"

    @property
    def shares_devices(self) -> bool:
        return False  # one process per Gaudi (Intel Gaudi multi-tenancy documentation)

    @property
    def lazy_mode(self) -> bool:
        return os.environ.get("PT_HPU_LAZY_MODE", "0").strip() == "1"

    def _probe(self) -> ProbeResult:
        if not probes.module_installed(BRIDGE):
            return ProbeResult(self.name, False, f"{BRIDGE} is not installed")
        self.apply_environment()  # before the first import of the bridge in this process
        bridge = probes.import_optional(BRIDGE)
        if bridge.module is None:
            return ProbeResult(self.name, False, bridge.reason)
        version = getattr(bridge.module, "__version__", None)
        runtime = str(version) if version else None
        rows = probes.hl_smi()
        if rows is None:  # no hl-smi: count through the bridge (no device is acquired by counting)
            hpu = getattr(bridge.module, "hpu", None)
            if hpu is None or not hpu.is_available():
                return ProbeResult(
                    self.name, False, "no Gaudi device available (habana driver or HABANA_VISIBLE_MODULES)"
                )
            devices = [DeviceInfo(i, "Gaudi") for i in range(int(hpu.device_count()))]
            return ProbeResult(self.name, True, None, devices, runtime_version=runtime)
        visible = probes.getenv("HABANA_VISIBLE_MODULES")
        wanted = {m.strip() for m in visible.split(",") if m.strip()} if visible is not None else None
        devices = []
        for row in rows:
            if wanted is not None and row["module_id"] not in wanted:
                continue
            devices.append(
                DeviceInfo(len(devices), row["name"], _mib(row["memory_mib"]), visible_id=row["module_id"])
            )
        if not devices:
            return ProbeResult(self.name, False, "hl-smi lists no Gaudi module visible to this process")
        return ProbeResult(
            self.name, True, None, devices, driver_version=rows[0]["driver"], runtime_version=runtime
        )

    def _select_device(self, local_rank: int) -> torch.device:
        import torch

        core = probes.import_optional(CORE)
        if core.module is None:
            raise RuntimeFailure(
                f"the Gaudi bridge cannot be loaded: {core.reason}", "check the Habana install"
            )
        # HCCL maps processes to modules from RANK/LOCAL_RANK/WORLD_SIZE read when it is imported:
        # under srun only SLURM's variables exist, so provide torchrun's from them first.
        from mlpfctl.launch.runenv import RunEnv

        for key, value in RunEnv.from_env().torch_env().items():
            os.environ.setdefault(key, value)
        hccl = probes.import_optional(HCCL)  # registers the "hccl" torch.distributed backend
        if hccl.module is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RuntimeFailure(f"HCCL cannot be registered: {hccl.reason}", "check the Habana install")
        # The HCCL backend maps this process to the module at its LOCAL_RANK position of
        # HABANA_VISIBLE_MODULES (the partition gives every rank of a launch the same list).
        return torch.device("hpu")

    def prepare_model(self, module: nn.Module, device: torch.device) -> nn.Module:
        if not self.lazy_mode:
            import torch

            # The forward, in place: state_dict keys keep their names for checkpoints (a
            # torch.compile'd module would prefix them with "_orig_mod.").
            module.forward = torch.compile(module.forward, backend="hpu_backend")
        return module

    def step_boundary(self, device: torch.device) -> None:
        if self.lazy_mode:
            core = probes.import_optional(CORE).module
            if core is not None:
                core.mark_step()

    def device_identity(self, device: torch.device) -> DeviceIdentity:
        return DeviceIdentity(self.device_name(device))

    def device_name(self, device: torch.device) -> str:
        # The device is acquired by now: asking the bridge no longer takes one.
        return probes.hpu_device_name() or "Gaudi"

    def _hpu(self) -> Any:
        hpu = probes.import_optional(f"{BRIDGE}.hpu").module
        if hpu is None:
            raise RuntimeFailure("habana_frameworks.torch.hpu is not importable", "check the Habana install")
        return hpu

    def synchronize(self, device: torch.device) -> None:
        self._hpu().synchronize()

    def memory_stats(self, device: torch.device) -> dict[str, int]:
        hpu = self._hpu()
        return {
            "peak_allocated_bytes": int(hpu.max_memory_allocated()),
            "allocated_bytes": int(hpu.memory_allocated()),
        }

    def reset_peak_memory(self, device: torch.device) -> None:
        self._hpu().reset_peak_memory_stats()

    def device_rng_state(self, device: torch.device) -> Any | None:
        random = probes.import_optional(f"{BRIDGE}.hpu.random").module
        return None if random is None else random.get_rng_state()

    def set_device_rng_state(self, device: torch.device, state: Any) -> None:
        random = probes.import_optional(f"{BRIDGE}.hpu.random").module
        if random is not None:
            random.set_rng_state(state)
