"""Every selection path on this CPU machine, by faking the probe boundary (backends/probes.py) only."""

from __future__ import annotations

import types

import pytest

from mlpfctl.backends import PRIORITY, get_backend, probe_all, probes, select_backend
from mlpfctl.backends.registry import auto_choice
from mlpfctl.errors import UsageError


def _fake_torch(*, cuda: str | None = None, hip: str | None = None, xpu: object | None = None) -> object:
    version = types.SimpleNamespace(cuda=cuda, hip=hip)
    return types.SimpleNamespace(
        version=version, xpu=xpu, distributed=types.SimpleNamespace(is_xccl_available=lambda: True)
    )


@pytest.fixture
def no_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "torch_module", lambda: _fake_torch())
    monkeypatch.setattr(probes, "cuda_device_count", lambda: 0)
    monkeypatch.setattr(probes, "import_optional", lambda name: None)


def test_this_machine_cpu_only() -> None:
    """The real probes here: cpu available, the four accelerators unavailable with a reason."""
    results = probe_all()
    assert results["cpu"].available and results["cpu"].count == 1
    for name in ("cuda", "rocm", "hpu", "xpu"):
        assert not results[name].available
        assert results[name].reason
    assert auto_choice(results) == "cpu"


def test_cuda_path(monkeypatch: pytest.MonkeyPatch, no_accelerators: None) -> None:
    monkeypatch.setattr(probes, "torch_module", lambda: _fake_torch(cuda="12.8"))
    monkeypatch.setattr(probes, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(
        probes,
        "nvidia_smi",
        lambda: [
            {"index": "0", "name": "NVIDIA H100 80GB HBM3", "memory_mib": "81559", "driver": "570.1"},
            {"index": "1", "name": "NVIDIA H100 80GB HBM3", "memory_mib": "81559", "driver": "570.1"},
        ],
    )
    result = get_backend("cuda").probe()
    assert result.available and result.count == 2 and result.driver_version == "570.1"
    assert result.devices[0].memory_bytes == 81559 * 2**20
    assert auto_choice() == "cuda"
    adapter = select_backend("auto")
    assert adapter.name == "cuda" and adapter.dist_backend == "nccl"
    assert adapter.peak_flops(result.devices[0].name, "bf16") == pytest.approx(989.4e12)
    assert adapter.environment()["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"


def test_cuda_visible_devices_map_to_smi_rows(monkeypatch: pytest.MonkeyPatch, no_accelerators: None) -> None:
    monkeypatch.setattr(probes, "torch_module", lambda: _fake_torch(cuda="12.8"))
    monkeypatch.setattr(probes, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(probes, "getenv", lambda name: "1" if name == "CUDA_VISIBLE_DEVICES" else None)
    monkeypatch.setattr(
        probes,
        "nvidia_smi",
        lambda: [
            {"index": "0", "name": "NVIDIA A100-SXM4-40GB", "memory_mib": "40960", "driver": "535"},
            {"index": "1", "name": "NVIDIA H100 PCIe", "memory_mib": "81559", "driver": "535"},
        ],
    )
    result = get_backend("cuda").probe()
    assert [d.name for d in result.devices] == ["NVIDIA H100 PCIe"]
    assert get_backend("cuda").peak_flops("NVIDIA H100 PCIe", "bfloat16") == pytest.approx(756.5e12)


def test_rocm_path(monkeypatch: pytest.MonkeyPatch, no_accelerators: None) -> None:
    monkeypatch.setattr(probes, "torch_module", lambda: _fake_torch(hip="6.2.41133"))
    monkeypatch.setattr(probes, "cuda_device_count", lambda: 8)
    monkeypatch.setattr(
        probes,
        "rocm_smi",
        lambda: {
            f"card{i}": {"Card Series": "AMD INSTINCT MI250X", "VRAM Total Memory (B)": "68702699520"}
            for i in range(8)
        },
    )
    cuda = get_backend("cuda").probe()
    assert not cuda.available and "ROCm" in (cuda.reason or "")
    result = get_backend("rocm").probe()
    assert result.available and result.count == 8 and result.runtime_version == "6.2.41133"
    adapter = select_backend("auto")
    assert adapter.name == "rocm"
    assert adapter.dist_backend == "nccl"  # RCCL behind the nccl name
    assert adapter.peak_flops("AMD INSTINCT MI250X", "bf16") == pytest.approx(191.5e12)
    assert adapter.visible_devices_env[0] == "ROCR_VISIBLE_DEVICES"
    assert "MIOPEN_USER_DB_PATH" in adapter.environment()
    env = {"ROCR_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
    assert adapter.visible_devices_for(1, 4, env) == {"ROCR_VISIBLE_DEVICES": "4,5,6,7"}
    with pytest.raises(UsageError):
        adapter.visible_devices_for(2, 4, env)


def test_hpu_path(monkeypatch: pytest.MonkeyPatch, no_accelerators: None) -> None:
    hpu = types.SimpleNamespace(
        is_available=lambda: True, device_count=lambda: 8, get_device_name=lambda: "GAUDI2"
    )
    fake = types.SimpleNamespace(hpu=hpu, __version__="1.21.0")
    monkeypatch.setattr(
        probes, "import_optional", lambda name: fake if name == "habana_frameworks.torch" else None
    )
    result = get_backend("hpu").probe()
    assert result.available and result.count == 8
    adapter = select_backend("auto")
    assert adapter.name == "hpu" and adapter.dist_backend == "hccl"
    assert adapter.peak_flops("GAUDI2", "bf16") == pytest.approx(432e12)
    assert adapter.peak_flops("GAUDI2", "fp32") is None  # unknown is None, never a guess


def test_hpu_missing_module_reason(no_accelerators: None) -> None:
    result = get_backend("hpu").probe()
    assert not result.available and "habana_frameworks" in (result.reason or "")


def test_xpu_path(monkeypatch: pytest.MonkeyPatch, no_accelerators: None) -> None:
    xpu = types.SimpleNamespace(
        is_available=lambda: True,
        device_count=lambda: 2,
        get_device_name=lambda i: "Intel(R) Data Center GPU Max 1550",
    )
    monkeypatch.setattr(probes, "torch_module", lambda: _fake_torch(xpu=xpu))
    result = get_backend("xpu").probe()
    assert result.available and result.count == 2 and result.details["ipex"] is None
    adapter = select_backend("auto")
    assert adapter.name == "xpu" and adapter.dist_backend == "xccl"
    assert adapter.peak_flops("Intel(R) Data Center GPU Max 1550", "bf16") == pytest.approx(838.9e12)


def test_cpu_fallback(no_accelerators: None) -> None:
    adapter = select_backend("auto")
    assert adapter.name == "cpu" and adapter.dist_backend == "gloo"
    assert adapter.autocast_dtype() is None
    assert adapter.peak_flops("AMD EPYC", "fp32") is None
    import torch

    assert adapter.setup_process(0) == torch.device("cpu")


def test_priority_is_single_and_complete() -> None:
    assert PRIORITY == ("cuda", "rocm", "hpu", "xpu", "cpu")


def test_bad_name_lists_available() -> None:
    with pytest.raises(UsageError) as info:
        get_backend("nonsense")
    for name in PRIORITY:
        assert name in (info.value.hint or "")


def test_explicit_unavailable_backend_is_usage_error(no_accelerators: None) -> None:
    with pytest.raises(UsageError, match="not available"):
        select_backend("cuda")


def test_probe_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> int:
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(probes, "torch_module", lambda: _fake_torch(cuda="12.8"))
    monkeypatch.setattr(probes, "cuda_device_count", boom)
    result = get_backend("cuda").probe()
    assert not result.available and "driver exploded" in (result.reason or "")
