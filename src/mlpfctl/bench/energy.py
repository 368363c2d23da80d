"""Energy from cumulative hardware counters, for the device a rank really uses.

* NVIDIA: NVML's total energy since the driver loaded (``nvmlDeviceGetTotalEnergyConsumption``,
  mJ, Volta and newer) through ``nvidia-ml-py`` (the ``nvidia`` extra), for the GPU with this
  rank's CUDA UUID, so a remapped ``CUDA_VISIBLE_DEVICES`` never reads a neighbour.
* AMD: amdsmi's energy accumulator times its resolution (µJ), for the GPU at this rank's PCI
  address, so per-task ``ROCR_VISIBLE_DEVICES`` binding never reads another GCD. On an MI250X the
  counter covers the package: the GCD that reports it includes its sibling, the other reports 0
  and gets no energy.
* CPU: RAPL package counters (whole sockets, every process on them; readable by root only on
  most distributions since Linux 5.10).

Counters are differenced around the timed region, never integrated from power samples, and a
device without a counter gives ``None``: unknown, not an estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mlpfctl.backends import probes

if TYPE_CHECKING:
    import torch

# One reading: (value in joules, wrap-around range in joules or None) per counter.
Reading = list[tuple[float, float | None]]


def _nvml(uuid: str) -> Callable[[], Reading | None]:
    def read() -> Reading | None:
        value = probes.nvml_energy_mj(uuid)
        return None if value is None else [(value / 1e3, None)]

    return read


def _amdsmi(pci_bus_id: str) -> Callable[[], Reading | None]:
    def read() -> Reading | None:
        value = probes.amdsmi_energy_uj(pci_bus_id)
        return None if not value else [(value / 1e6, None)]

    return read


def _rapl() -> Reading | None:
    packages = probes.rapl_packages()
    return None if packages is None else [(uj / 1e6, wrap / 1e6) for uj, wrap in packages]


def counter_for(device: torch.device) -> Callable[[], Reading | None] | None:
    """The energy counter of ``device`` (None where the hardware or its library reports none)."""
    if device.type == "cpu":
        return _rapl if _rapl() is not None else None
    if device.type != "cuda":
        return None  # Gaudi (hl-smi reports power only) and Intel GPUs: no counter read here
    props = probes.cuda_device_properties(device.index if device.index is not None else 0)
    if probes.torch_hip_version():
        counter = _amdsmi(props["pci_bus_id"]) if props.get("pci_bus_id") else None
    else:
        counter = _nvml(props["uuid"]) if props.get("uuid") else None
    return counter if counter is not None and counter() is not None else None


class EnergyMeter:
    """Joules consumed between ``reset()``/the first ``sample()`` and the latest ``sample()``."""

    def __init__(self, device: torch.device, counter: Callable[[], Reading | None] | None = None) -> None:
        self.device = device
        self._read = counter if counter is not None else counter_for(device)
        self.available = self._read is not None
        self.joules = 0.0
        self._last: Reading | None = None

    def sample(self) -> None:
        """Call at the start and after each timed step (cheap: one counter read)."""
        if self._read is None:
            return
        now = self._read()
        if now is None:  # the counter went away: what was measured so far is not the whole region
            self.available = False
            return
        if self._last is not None:
            for (prev, wrap), (cur, _) in zip(self._last, now, strict=True):
                delta = cur - prev
                if delta < 0 and wrap:
                    delta += wrap  # RAPL wraps at max_energy_range_uj
                self.joules += max(delta, 0.0)
        self._last = now

    def reset(self) -> None:
        self.joules = 0.0
        self._last = None
