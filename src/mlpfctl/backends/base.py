"""The backend adapter interface and the probe result it reports."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from mlpfctl.backends.descriptors import BackendDescriptor, load_descriptor

if TYPE_CHECKING:
    import torch


@dataclass
class DeviceInfo:
    index: int
    name: str
    memory_bytes: int | None = None


@dataclass
class ProbeResult:
    """What a backend found on this machine. ``reason`` says why it is unavailable."""

    backend: str
    available: bool
    reason: str | None = None
    devices: list[DeviceInfo] = field(default_factory=list)
    driver_version: str | None = None
    runtime_version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.devices)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["count"] = self.count
        return data


class BackendAdapter(ABC):
    """One device kind. Adapters are stateless; ``probe()`` never raises and creates no context."""

    name: ClassVar[str]
    # The torch device type of this adapter's devices: it names the device half of a
    # device-qualified process group ("cpu:gloo,cuda:nccl", mlpfctl.launch.process_group).
    device_type: ClassVar[str] = "cpu"

    def __init__(self) -> None:
        self.descriptor: BackendDescriptor = load_descriptor(self.name)

    # -- discovery ---------------------------------------------------------------------------
    def probe(self) -> ProbeResult:
        try:
            return self._probe()
        except Exception as exc:  # a probe must never take the CLI down
            return ProbeResult(self.name, False, f"probe failed: {type(exc).__name__}: {exc}")

    @abstractmethod
    def _probe(self) -> ProbeResult: ...

    # -- process set-up ----------------------------------------------------------------------
    @property
    def dist_backend(self) -> str:
        """The torch.distributed backend for this device kind."""
        return self.descriptor.dist_backend

    @property
    def visible_devices_env(self) -> tuple[str, ...]:
        return self.descriptor.visible_devices_env

    def environment(self) -> dict[str, str]:
        """Environment defaults this backend wants (never overrides what the user set)."""
        return dict(self.descriptor.env)

    def apply_environment(self, env: dict[str, str] | None = None) -> None:
        target = os.environ if env is None else env
        for key, value in self.environment().items():
            target.setdefault(key, value)

    def visible_devices_for(
        self, worker: int, per_worker: int, env: dict[str, str] | None = None
    ) -> dict[str, str]:
        """Env vars that restrict a process to devices [worker*per_worker, (worker+1)*per_worker).

        Indices are taken relative to any visible-device list already set (SLURM's binding), so a
        worker never escapes its allocation.
        """
        if not self.visible_devices_env:
            return {}
        source = os.environ if env is None else env
        var = self.visible_devices_env[0]
        current = source.get(var)
        pool = [p for p in current.split(",") if p] if current else None
        if pool is None:
            count = self.probe().count
            pool = [str(i) for i in range(count)]
        chosen = pool[worker * per_worker : (worker + 1) * per_worker]
        if len(chosen) < per_worker:
            from mlpfctl.errors import UsageError

            raise UsageError(
                f"worker {worker} needs {per_worker} {self.name} device(s) but only {len(pool)} are visible",
                "use fewer workers or fewer ranks per trial",
            )
        return {var: ",".join(chosen)}

    @abstractmethod
    def setup_process(self, local_rank: int) -> torch.device:
        """Select and return this process's device (called once per rank)."""

    def autocast_dtype(self) -> torch.dtype | None:
        """The mixed-precision dtype for autocast, or None to run in fp32."""
        import torch

        name = self.descriptor.autocast_dtype
        return None if name == "none" else getattr(torch, name)

    def peak_flops(self, device_name: str, dtype: str) -> float | None:
        """Dense peak FLOP/s of one device for ``dtype``; None when unknown (never a guess)."""
        return self.descriptor.peak_flops(device_name, dtype)

    def device_name(self, device: torch.device) -> str:
        return self.name

    def step_boundary(self, device: torch.device) -> None:  # noqa: B027 (eager devices need nothing)
        """Called by the training loop after backward and after ``optimizer.step()``.

        A no-op by default; lazy-execution devices flush their accumulated graph here (Gaudi lazy
        mode: ``htcore.mark_step()``).
        """

    def generator_state(self, device: torch.device) -> Any:
        """The state of ``device``'s default random generator, saved in checkpoints so that a
        resumed run draws the same dropout masks; None on the host (``torch.get_rng_state``)."""
        if device.type == "cpu":
            return None
        import torch

        return torch.get_device_module(device.type).get_rng_state(device)

    def set_generator_state(self, device: torch.device, state: Any) -> None:
        """Restore what ``generator_state`` returned."""
        if device.type == "cpu" or state is None:
            return
        import torch

        torch.get_device_module(device.type).set_rng_state(state, device)

    def synchronize(self, device: torch.device) -> None:  # noqa: B027 (host devices queue nothing)
        """Wait for queued device work (timing must not measure only the launch)."""

    def memory_stats(self, device: torch.device) -> dict[str, int]:
        """Peak/current memory in bytes where the backend reports it."""
        return {}

    def reset_peak_memory(self, device: torch.device) -> None:  # noqa: B027 (optional capability)
        """Reset the peak-memory counter (no-op where unsupported)."""
