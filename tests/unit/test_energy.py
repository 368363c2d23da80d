"""Energy from cumulative counters of the device in use; counters faked at the probe boundary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from mlpfctl.backends import probes
from mlpfctl.bench.energy import EnergyMeter, counter_for


def _props(uuid: str | None = None, bus: str | None = None) -> Any:
    return lambda index: {"name": "x", "uuid": f"{uuid}-{index}" if uuid else None, "pci_bus_id": bus}


def _sequence(values: list[float | None]) -> Iterator[float | None]:
    yield from values
    while True:
        yield values[-1]


def test_nvidia_energy_is_nvml_total_energy_of_this_ranks_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    readings = _sequence([5_000_000.0, 5_000_000.0, 5_120_000.0, 5_250_000.0])  # mJ since driver load

    def nvml(uuid: str) -> int | None:
        asked.append(uuid)
        value = next(readings)
        return None if value is None else int(value)

    monkeypatch.setattr(probes, "torch_hip_version", lambda: None)
    monkeypatch.setattr(probes, "cuda_device_properties", _props(uuid="GPU-1234"))
    monkeypatch.setattr(probes, "nvml_energy_mj", nvml)
    meter = EnergyMeter(torch.device("cuda", 3))
    assert meter.available
    meter.sample()
    meter.sample()
    meter.sample()
    assert meter.joules == pytest.approx(250.0)  # (5_250_000 - 5_000_000) mJ
    assert set(asked) == {"GPU-1234-3"}  # the UUID of the device this rank uses, not index 0


def test_nvidia_without_nvml_has_no_energy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No counter, no number: never an estimate from sampled power."""
    monkeypatch.setattr(probes, "torch_hip_version", lambda: None)
    monkeypatch.setattr(probes, "cuda_device_properties", _props(uuid="GPU-1"))
    monkeypatch.setattr(probes, "import_optional", lambda name: probes.Imported(None, "no", installed=False))
    assert probes.nvml_energy_mj("GPU-1") is None  # the real probe without nvidia-ml-py
    assert not EnergyMeter(torch.device("cuda", 0)).available


def test_amd_energy_is_the_amdsmi_accumulator_at_this_ranks_pci_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []
    readings = _sequence([1.0e9, 1.0e9, 1.5e9])  # µJ

    def amdsmi(bus: str) -> float | None:
        asked.append(bus)
        return next(readings)

    monkeypatch.setattr(probes, "torch_hip_version", lambda: "6.2")
    monkeypatch.setattr(probes, "cuda_device_properties", _props(bus="0000:d1:00.0"))
    monkeypatch.setattr(probes, "amdsmi_energy_uj", amdsmi)
    meter = EnergyMeter(torch.device("cuda", 0))
    meter.sample()
    meter.sample()
    assert meter.joules == pytest.approx(500.0)  # watts x seconds, not a 1000x off power reading
    assert set(asked) == {"0000:d1:00.0"}


def test_amd_gcd_without_its_own_counter_has_no_energy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second GCD of an MI250X reports 0: no energy rather than its sibling's or nothing."""
    monkeypatch.setattr(probes, "torch_hip_version", lambda: "6.2")
    monkeypatch.setattr(probes, "cuda_device_properties", _props(bus="0000:d6:00.0"))
    monkeypatch.setattr(probes, "amdsmi_energy_uj", lambda bus: 0.0)
    assert counter_for(torch.device("cuda", 1)) is None


def _rapl(root: Path, packages: list[tuple[int, int]]) -> None:
    for i, (energy, wrap) in enumerate(packages):
        zone = root / f"intel-rapl:{i}"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "energy_uj").write_text(f"{energy}\n")
        (zone / "max_energy_range_uj").write_text(f"{wrap}\n")
        sub = root / f"intel-rapl:{i}:0"  # a core sub-zone: part of its package, not added again
        sub.mkdir(exist_ok=True)
        (sub / "energy_uj").write_text("999999\n")


def test_cpu_energy_from_rapl_packages_with_wrap_around(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probes, "RAPL_ROOT", tmp_path)
    _rapl(tmp_path, [(900_000, 1_000_000), (10_000_000, 1_000_000_000)])
    meter = EnergyMeter(torch.device("cpu"))
    assert meter.available
    meter.sample()
    _rapl(tmp_path, [(100_000, 1_000_000), (12_000_000, 1_000_000_000)])  # package 0 wrapped
    meter.sample()
    assert meter.joules == pytest.approx(0.2 + 2.0)


def test_unreadable_rapl_means_no_energy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "RAPL_ROOT", tmp_path / "missing")
    assert not EnergyMeter(torch.device("cpu")).available


def test_a_counter_that_vanishes_invalidates_the_measurement() -> None:
    readings = iter([[(1.0, None)], [(2.0, None)], None])
    meter = EnergyMeter(torch.device("cpu"), counter=lambda: next(readings))
    meter.sample()
    meter.sample()
    assert meter.available and meter.joules == pytest.approx(1.0)
    meter.sample()
    assert not meter.available


def test_reset_starts_a_new_region() -> None:
    readings = iter([[(10.0, None)], [(20.0, None)], [(21.0, None)], [(25.0, None)]])
    meter = EnergyMeter(torch.device("cpu"), counter=lambda: next(readings))
    meter.sample()
    meter.sample()
    meter.reset()
    meter.sample()
    meter.sample()
    assert meter.joules == pytest.approx(4.0)


def test_devices_without_a_counter_report_none() -> None:
    for kind in ("hpu", "xpu"):
        assert counter_for(torch.device(kind)) is None
