"""Energy counters where the hardware reports them: NVIDIA/AMD power via torch.cuda, Intel RAPL on CPUs.

A meter integrates power samples (or reads a cumulative counter) around a timed region; where
nothing reports energy it returns None, never an estimate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_RAPL = Path("/sys/class/powercap")


def _rapl_packages() -> list[Path]:
    if not _RAPL.is_dir():
        return []
    out = []
    for zone in sorted(_RAPL.glob("intel-rapl:*")):
        if zone.name.count(":") == 1 and (zone / "energy_uj").is_file():
            out.append(zone)
    return out


class EnergyMeter:
    """Accumulates joules over ``sample()`` calls for one device (or the CPU packages)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.joules = 0.0
        self.available = False
        self._last_t: float | None = None
        self._last_uj: list[int] | None = None
        self._max_uj: list[int] = []
        self._zones: list[Path] = []
        if device.type == "cuda":
            self.available = self._cuda_power_w() is not None
        elif device.type == "cpu":
            self._zones = [z for z in _rapl_packages() if self._readable(z)]
            self.available = bool(self._zones)
            if self.available:
                self._max_uj = [int((z / "max_energy_range_uj").read_text()) for z in self._zones]

    @staticmethod
    def _readable(zone: Path) -> bool:
        try:
            int((zone / "energy_uj").read_text())
            int((zone / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            return False
        return True

    def _cuda_power_w(self) -> float | None:
        import torch

        try:
            return float(torch.cuda.power_draw(self.device)) / 1000.0
        except Exception:  # no NVML/amdsmi, or not supported on this device
            return None

    def sample(self) -> None:
        """Call at the start and after each timed step."""
        if not self.available:
            return
        now = time.perf_counter()
        if self.device.type == "cuda":
            power = self._cuda_power_w()
            if power is not None and self._last_t is not None:
                self.joules += power * (now - self._last_t)
        else:
            values = [int((z / "energy_uj").read_text()) for z in self._zones]
            if self._last_uj is not None:
                for prev, cur, wrap in zip(self._last_uj, values, self._max_uj, strict=True):
                    self.joules += ((cur - prev) % wrap) / 1e6  # the counter wraps around
            self._last_uj = values
        self._last_t = now

    def reset(self) -> None:
        self.joules = 0.0
        self._last_t = None
        self._last_uj = None
