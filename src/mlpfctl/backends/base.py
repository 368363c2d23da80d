"""The backend adapter interface and the probe result it reports."""

from __future__ import annotations

import getpass
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from mlpfctl.backends.descriptors import BackendDescriptor, DeviceIdentity, expand, load_descriptor
from mlpfctl.backends.partition import DevicePool

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class DeviceInfo:
    index: int
    name: str
    memory_bytes: int | None = None
    # How the backend's visible-devices variable names this device when it differs from the
    # index (a Gaudi module id).
    visible_id: str | None = None


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
    """One device kind. Adapters are stateless; ``probe()`` never raises, creates no device context
    and takes no device."""

    name: ClassVar[str]

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

    # -- device partition --------------------------------------------------------------------
    @property
    def visible_devices_env(self) -> tuple[str, ...]:
        """The variables that restrict which devices a process sees, outermost first."""
        return self.descriptor.visible_devices_env

    def device_pool(self, env: Mapping[str, str] | None = None) -> DevicePool:
        """The devices processes started from ``env`` may use, as the variable that narrows them.

        The innermost variable already set (SLURM's binding, a parent's partition) is the pool
        and is narrowed further; with none set the devices are counted by this backend's probe
        and the outermost variable is used (ROCR_VISIBLE_DEVICES on ROCm).
        """
        source = os.environ if env is None else env
        names = self.visible_devices_env
        if not names:
            return DevicePool(self.name, None, (), "host processes: nothing to pin")
        for var in reversed(names):
            value = source.get(var)
            if value is not None:
                ids = tuple(p.strip() for p in value.split(",") if p.strip())
                return DevicePool(self.name, var, ids, f"{var}={value} (already set)")
        result = self.probe()
        ids = tuple(d.visible_id or str(d.index) for d in result.devices)
        return DevicePool(self.name, names[0], ids, f"{len(ids)} device(s) found by the {self.name} probe")

    @property
    def shares_devices(self) -> bool:
        """Whether several processes may use one device at once (never on Gaudi)."""
        return True

    # -- process set-up ----------------------------------------------------------------------
    @property
    def dist_backend(self) -> str:
        """The torch.distributed backend for this device kind."""
        return self.descriptor.dist_backend

    @property
    def pin_memory(self) -> bool:
        """Whether host batches should be pinned so that ``non_blocking`` copies overlap."""
        return self.descriptor.pin_memory

    def environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment defaults this backend wants, ``${VAR}`` expanded against ``env``."""
        source = dict(os.environ if env is None else env)
        source.setdefault("USER", _user())
        out: dict[str, str] = {}
        for key, value in self.descriptor.env.items():
            try:
                out[key] = expand(value, source)
            except KeyError as missing:
                from mlpfctl.errors import RuntimeFailure

                raise RuntimeFailure(
                    f"backend {self.name}: the default {key}={value} needs "
                    f"${{{missing.args[0]}}}, which is unset",
                    f"export {missing.args[0]} or {key} before starting",
                ) from None
            source.setdefault(key, out[key])
        return out

    def apply_environment(self, env: MutableMapping[str, str] | None = None) -> None:
        """Set the defaults that are not set yet (what the user or the job script set wins)."""
        target = os.environ if env is None else env
        for key, value in self.environment(target).items():
            target.setdefault(key, value)

    def setup_process(self, local_rank: int) -> torch.device:
        """Apply this backend's environment, then select and return this process's device."""
        self.apply_environment()
        return self._select_device(local_rank)

    @abstractmethod
    def _select_device(self, local_rank: int) -> torch.device: ...

    def prepare_model(self, module: nn.Module, device: torch.device) -> nn.Module:
        """The vendor's rules for running ``module`` (already on ``device``): compile, kernels.

        Changes the module in place and returns it, so ``state_dict`` keys stay as they are.
        """
        return module

    def padding_buckets(self) -> tuple[int, ...]:
        """Fixed batch widths to pad to (graph-compiling devices); empty: pad to the longest."""
        return self.descriptor.pad_buckets

    def step_boundary(self, device: torch.device) -> None:  # noqa: B027 (most devices need nothing)
        """Called after ``backward()`` and after ``optimizer.step()`` (Gaudi lazy mode: mark_step)."""

    def autocast_dtype(self, device: torch.device | None = None) -> torch.dtype | None:
        """The mixed-precision dtype for autocast, or None to run in fp32."""
        import torch

        name = self.descriptor.autocast_dtype
        return None if name == "none" else getattr(torch, name)

    # -- identity and peak -------------------------------------------------------------------
    def device_identity(self, device: torch.device) -> DeviceIdentity:
        return DeviceIdentity(self.device_name(device))

    def peak_flops(self, device: DeviceIdentity | str, dtype: str) -> float | None:
        """Dense peak FLOP/s of one device for ``dtype``; None when unknown (never a guess)."""
        identity = DeviceIdentity(device) if isinstance(device, str) else device
        return self.descriptor.peak_flops(identity, dtype)

    def device_peak_flops(self, device: torch.device, dtype: str) -> float | None:
        return self.peak_flops(self.device_identity(device), dtype)

    def device_name(self, device: torch.device) -> str:
        return self.name

    # -- run-time services -------------------------------------------------------------------
    def _device_module(self) -> Any | None:
        """``torch.cuda`` / ``torch.xpu``: the module whose standard API serves the services below
        (None: a host device, or a vendor with its own API, which overrides them)."""
        return None

    def synchronize(self, device: torch.device) -> None:
        """Wait for queued device work (timing must not measure only the launch)."""
        module = self._device_module()
        if module is not None:
            module.synchronize(device)

    def memory_stats(self, device: torch.device) -> dict[str, int]:
        """Peak/current memory in bytes where the backend reports it."""
        module = self._device_module()
        if module is None:
            return {}
        return {
            "peak_allocated_bytes": int(module.max_memory_allocated(device)),
            "allocated_bytes": int(module.memory_allocated(device)),
        }

    def reset_peak_memory(self, device: torch.device) -> None:
        """Reset the peak-memory counter (no-op where unsupported)."""
        module = self._device_module()
        if module is not None:
            module.reset_peak_memory_stats(device)

    def device_rng_state(self, device: torch.device) -> Any | None:
        """The random generator state of ``device`` (None where the host generator is all)."""
        module = self._device_module()
        return None if module is None else module.get_rng_state(device)

    def set_device_rng_state(self, device: torch.device, state: Any) -> None:
        """Restore what ``device_rng_state`` returned (resume)."""
        module = self._device_module()
        if module is not None:
            module.set_rng_state(state, device)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return str(os.getuid())
