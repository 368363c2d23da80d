"""MFU that can be trusted: FLOPs measured against torch's own counter, peaks by exact device
identity (unknown rather than wrong), and the MFU arithmetic pinned per backend on a faked device
(the device's properties faked at the probe boundary only)."""

from __future__ import annotations

import types
from typing import Any

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mlpfctl.backends import get_backend, probes
from mlpfctl.backends.descriptors import DeviceIdentity
from mlpfctl.config.schema import ModelSection
from mlpfctl.models.flops import forward_flops, linear_macs, mfu, per_event_linears, train_flops
from mlpfctl.models.registry import build_model
from mlpfctl.models.spec import ModelSpec, resolve_spec

GIB = 2**30


def _spec(kind: str, preset: str = "clic") -> ModelSpec:
    return resolve_spec(
        ModelSection(preset=preset, type=kind), num_features=17, num_classes=6, num_element_types=2
    )


def _event(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(1, n, 17, generator=gen)
    x[..., 0] = torch.randint(1, 3, (1, n), generator=gen).float()
    return x, torch.ones(1, n, dtype=torch.bool)


def _measured(model: torch.nn.Module, n: int) -> dict[str, int]:
    x, mask = _event(n)
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        model(x, mask)  # the math kernel's matmuls are what torch's counter sees of attention
    return {str(op): int(v) for op, v in counter.get_flop_counts()["Global"].items()}


# -- FLOPs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [7, 64, 200])
def test_attention_flops_equal_torchs_count(n: int) -> None:
    """Every matmul of one event, counted by torch, equals the analytic count exactly."""
    spec = _spec("attention")
    model = build_model(spec)
    assert forward_flops(model, spec, n) == pytest.approx(sum(_measured(model, n).values()), rel=1e-12)


def test_readout_projections_count_once_per_event() -> None:
    """The task-query readouts' q/out projections see one query per event: their cost must not
    grow with the event size (it did, ~10 % too high at 200 elements for the clic preset)."""
    spec = _spec("attention")
    model = build_model(spec)
    per_event = per_event_linears(model)
    assert len(per_event) == 4  # q and out of the two readouts
    element, event = linear_macs(model)
    assert event == sum(m.in_features * m.out_features for m in per_event) > 0
    growth = forward_flops(model, spec, 201) - forward_flops(model, spec, 200)
    quadratic = 2 * spec.num_layers * 2 * (201**2 - 200**2) * spec.num_heads * spec.head_dim
    readout_keys = 2 * 2 * 2 * spec.num_heads * spec.head_dim  # two readout queries, one more key each
    assert growth == pytest.approx(2 * element + quadratic + readout_keys)


def test_gnnlsh_linear_flops_equal_torchs_count() -> None:
    spec = _spec("gnnlsh")
    model = build_model(spec)
    element, event = linear_macs(model)
    assert event == 0
    assert _measured(model, 64)["aten.addmm"] == 2 * 64 * element


def test_training_is_three_forwards() -> None:
    spec = _spec("attention", "tiny")
    model = build_model(spec)
    assert train_flops(model, spec, [10, 30]) == pytest.approx(
        3 * (forward_flops(model, spec, 10) + forward_flops(model, spec, 30))
    )


# -- peaks by exact identity ----------------------------------------------------------------------
def test_cuda_names_are_matched_exactly() -> None:
    cuda = get_backend("cuda")
    assert cuda.peak_flops("NVIDIA H200", "bf16") == pytest.approx(989.4e12)
    assert cuda.peak_flops("NVIDIA H200 NVL", "bf16") == pytest.approx(835.5e12)  # not the SXM peak
    assert cuda.peak_flops("nvidia  h100 pcie", "bf16") == pytest.approx(756.5e12)
    for unknown in ("", "NVIDIA GPU", "NVIDIA H200 Something New", "H100"):
        assert cuda.peak_flops(unknown, "bf16") is None
    assert cuda.peak_flops("Tesla V100-SXM2-32GB", "bf16") is None  # Volta has no bf16
    assert cuda.peak_flops("Tesla V100-SXM2-32GB", "fp16") == pytest.approx(125e12)


def test_rocm_identity_is_arch_and_compute_units() -> None:
    rocm = get_backend("rocm")
    generic = "AMD Instinct MI250X/MI250"
    assert rocm.peak_flops(DeviceIdentity(generic, 64 * GIB, "gfx90a", 110), "bf16") == pytest.approx(
        191.5e12
    )
    assert rocm.peak_flops(DeviceIdentity(generic, 64 * GIB, "gfx90a", 104), "bf16") == pytest.approx(
        181.0e12
    )
    assert rocm.peak_flops(DeviceIdentity("", None, "gfx942", 304), "bf16") == pytest.approx(1307.4e12)
    assert rocm.peak_flops(DeviceIdentity("AMD Instinct MI300X", None, "gfx942", 38), "bf16") is None  # CPX
    assert rocm.peak_flops(DeviceIdentity("AMD Instinct MI250X"), "bf16") is None  # name alone: unknown
    assert rocm.peak_flops(DeviceIdentity(""), "bf16") is None


def test_intel_max_1550_is_per_stack() -> None:
    xpu = get_backend("xpu")
    name = "Intel(R) Data Center GPU Max 1550"
    assert xpu.peak_flops(DeviceIdentity(name, 64 * GIB), "bf16") == pytest.approx(419.4e12)
    assert xpu.peak_flops(DeviceIdentity(name, 128 * GIB), "bf16") == pytest.approx(838.9e12)
    assert xpu.peak_flops(DeviceIdentity(name), "bf16") is None  # stack or card unknown: no guess


# -- MFU per backend on a faked device ------------------------------------------------------------
FLOPS = 6.0e13  # per step, all ranks together
SECONDS = 0.5
WORLD = 2


def _cuda_props(name: str, memory: int, capability: tuple[int, int], arch: str | None, units: int) -> Any:
    return lambda index: {
        "name": name,
        "memory_bytes": memory,
        "capability": capability,
        "compute_units": units,
        "arch": arch,
        "uuid": None,
        "pci_bus_id": None,
    }


CASES = {
    "cuda H200 NVL": ("cuda", "cuda", _cuda_props("NVIDIA H200 NVL", 141 * GIB, (9, 0), None, 132), 835.5e12),
    "cuda H200 SXM": ("cuda", "cuda", _cuda_props("NVIDIA H200", 141 * GIB, (9, 0), None, 132), 989.4e12),
    "rocm MI250X GCD": (
        "rocm",
        "cuda",
        _cuda_props("AMD Instinct MI250X/MI250", 64 * GIB, (9, 0), "gfx90a", 110),
        191.5e12,
    ),
    "rocm MI250 GCD": (
        "rocm",
        "cuda",
        _cuda_props("AMD Instinct MI250X/MI250", 64 * GIB, (9, 0), "gfx90a", 104),
        181.0e12,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mfu_on_faked_torch_cuda_devices(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    backend, kind, props, peak = CASES[case]
    monkeypatch.setattr(probes, "cuda_device_properties", props)
    adapter = get_backend(backend)
    device = torch.device(kind, 0)
    assert adapter.autocast_dtype(device) is torch.bfloat16
    assert adapter.device_peak_flops(device, "bf16") == pytest.approx(peak)
    assert mfu(FLOPS, SECONDS, adapter.device_peak_flops(device, "bf16"), WORLD) == pytest.approx(
        FLOPS / SECONDS / (peak * WORLD)
    )


def test_v100_trains_in_fp16_with_the_fp16_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cuda.is_bf16_supported() counts emulation; a V100 must autocast to fp16."""
    monkeypatch.setattr(
        probes, "cuda_device_properties", _cuda_props("Tesla V100-SXM2-32GB", 32 * GIB, (7, 0), None, 80)
    )
    adapter = get_backend("cuda")
    device = torch.device("cuda", 0)
    assert adapter.autocast_dtype(device) is torch.float16
    assert mfu(FLOPS, SECONDS, adapter.device_peak_flops(device, "fp16"), WORLD) == pytest.approx(
        0.48
    )  # 1.2e14 FLOP/s over 2 x 125 TFLOP/s


def test_mi50_trains_in_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        probes, "cuda_device_properties", _cuda_props("AMD Instinct MI50", 32 * GIB, (9, 0), "gfx906", 60)
    )
    assert get_backend("rocm").autocast_dtype(torch.device("cuda", 0)) is torch.float16


def test_mfu_on_a_faked_max_1550_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        probes,
        "xpu_device_properties",
        lambda index: {
            "name": "Intel(R) Data Center GPU Max 1550",
            "memory_bytes": 64 * GIB,
            "compute_units": 448,
        },
    )
    adapter = get_backend("xpu")
    peak = adapter.device_peak_flops(torch.device("xpu", 0), "bf16")
    assert mfu(FLOPS, SECONDS, peak, WORLD) == pytest.approx(FLOPS / SECONDS / (419.4e12 * WORLD))


def test_mfu_on_a_faked_gaudi3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "hpu_device_name", lambda: "GAUDI3")
    peak = get_backend("hpu").device_peak_flops(torch.device("cpu"), "bf16")
    assert mfu(FLOPS, SECONDS, peak, WORLD) == pytest.approx(FLOPS / SECONDS / (1835e12 * WORLD))


def test_cpu_and_unknown_devices_have_no_mfu(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = get_backend("cpu")
    assert mfu(FLOPS, SECONDS, cpu.device_peak_flops(torch.device("cpu"), "fp32"), 1) is None
    monkeypatch.setattr(
        probes, "cuda_device_properties", _cuda_props("NVIDIA GPU", 80 * GIB, (9, 0), None, 132)
    )
    assert (
        mfu(FLOPS, SECONDS, get_backend("cuda").device_peak_flops(torch.device("cuda", 0), "bf16"), 1) is None
    )
    assert mfu(FLOPS, 0.0, 1e12, 1) is None


def test_probe_time_identity_never_takes_a_gaudi(monkeypatch: pytest.MonkeyPatch) -> None:
    """device_name on Gaudi is asked of the bridge only once the rank holds its device."""
    calls: list[str] = []
    fake = types.SimpleNamespace(get_device_name=lambda: calls.append("asked") or "GAUDI2")
    monkeypatch.setattr(probes, "import_optional", lambda name: probes.Imported(fake))
    assert probes.hpu_device_name() == "GAUDI2" and calls == ["asked"]
