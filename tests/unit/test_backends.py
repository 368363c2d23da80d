"""Every selection path on this CPU machine, by faking the probe boundary (backends/probes.py) only."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path
from typing import Any

import pytest

from mlpfctl.backends import PRIORITY, get_backend, probe_all, probes, select_backend
from mlpfctl.backends.registry import auto_choice
from mlpfctl.errors import RuntimeFailure, UsageError


def _fake_torch(*, cuda: str | None = None, hip: str | None = None, xpu: object | None = None) -> object:
    version = types.SimpleNamespace(cuda=cuda, hip=hip)
    return types.SimpleNamespace(
        version=version, xpu=xpu, distributed=types.SimpleNamespace(is_xccl_available=lambda: True)
    )


def _missing(name: str) -> probes.Imported:
    return probes.Imported(None, f"{name} is not installed", installed=False)


def _unset_and_restore(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Unset ``name`` now and restore its original state after the test (code under test sets it)."""
    monkeypatch.setenv(name, "placeholder")
    monkeypatch.delenv(name)


@pytest.fixture
def no_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "torch_module", lambda: _fake_torch())
    monkeypatch.setattr(probes, "cuda_device_count", lambda: 0)
    monkeypatch.setattr(probes, "import_optional", _missing)
    monkeypatch.setattr(probes, "module_installed", lambda name: False)
    monkeypatch.setattr(probes, "hl_smi", lambda: None)


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
            {"index": str(i), "name": "NVIDIA H100 80GB HBM3", "memory_mib": "81559", "driver": "570.1"}
            for i in range(2)
        ],
    )
    result = get_backend("cuda").probe()
    assert result.available and result.count == 2 and result.driver_version == "570.1"
    assert result.devices[0].memory_bytes == 81559 * 2**20
    assert auto_choice() == "cuda"
    adapter = select_backend("auto")
    assert adapter.name == "cuda" and adapter.dist_backend == "nccl" and adapter.pin_memory
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
    assert adapter.visible_devices_env[0] == "ROCR_VISIBLE_DEVICES"


def test_rocm_environment_comes_from_the_profile_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    """rocm.toml's [env], with ${USER} expanded (it used to reach MIOpen as a literal)."""
    adapter = get_backend("rocm")
    env: dict[str, str] = {"USER": "alice"}
    adapter.apply_environment(env)
    assert env["MIOPEN_USER_DB_PATH"] == "/tmp/miopen-alice"
    assert env["MIOPEN_CUSTOM_CACHE_DIR"] == "/tmp/miopen-alice"
    assert not any("${" in v for v in env.values())
    # a job script's own cache (the SLURM profiles' [cache] section) wins, and the derived default follows it
    job = {"USER": "alice", "MIOPEN_USER_DB_PATH": "/tmp/node-cache"}
    adapter.apply_environment(job)
    assert (
        job["MIOPEN_USER_DB_PATH"] == "/tmp/node-cache"
        and job["MIOPEN_CUSTOM_CACHE_DIR"] == "/tmp/node-cache"
    )
    # no USER variable (containers): the account name still expands
    bare: dict[str, str] = {}
    adapter.apply_environment(bare)
    assert bare["MIOPEN_USER_DB_PATH"].startswith("/tmp/miopen-") and "$" not in bare["MIOPEN_USER_DB_PATH"]


def test_setup_process_applies_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Selecting a device applies the backend's defaults first (they were never applied before)."""
    _unset_and_restore(monkeypatch, "TORCH_NCCL_ASYNC_ERROR_HANDLING")
    adapter = get_backend("cuda")
    with pytest.raises(RuntimeFailure, match="no cuda device"):  # this machine has no GPU
        adapter.setup_process(0)
    assert os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"


def test_hpu_path(monkeypatch: pytest.MonkeyPatch, no_accelerators: None) -> None:
    """Gaudi is found through hl-smi (module ids, names, memory); no device name is asked of the
    bridge, which would acquire a module."""
    acquired: list[str] = []
    hpu = types.SimpleNamespace(
        is_available=lambda: True,
        device_count=lambda: 8,
        get_device_name=lambda: acquired.append("device taken") or "GAUDI2",
    )
    fake = types.SimpleNamespace(hpu=hpu, __version__="1.21.0")
    monkeypatch.setattr(probes, "module_installed", lambda name: True)
    monkeypatch.setattr(
        probes,
        "import_optional",
        lambda name: probes.Imported(fake) if name == "habana_frameworks.torch" else _missing(name),
    )
    monkeypatch.setattr(
        probes,
        "hl_smi",
        lambda: [
            {
                "index": str(i),
                "module_id": str(7 - i),
                "name": "HL-225",
                "memory_mib": "98304",
                "driver": "1.21",
            }
            for i in range(8)
        ],
    )
    _unset_and_restore(monkeypatch, "PT_HPU_LAZY_MODE")
    result = get_backend("hpu").probe()
    assert result.available and result.count == 8 and not acquired
    assert result.devices[0].visible_id == "7" and result.devices[0].memory_bytes == 96 * 2**30
    assert os.environ["PT_HPU_LAZY_MODE"] == "0"  # applied before the bridge was imported
    adapter = select_backend("auto")
    assert adapter.name == "hpu" and adapter.dist_backend == "hccl" and not adapter.shares_devices
    assert adapter.peak_flops("GAUDI2", "bf16") == pytest.approx(432e12)
    assert adapter.peak_flops("HL-225", "bf16") == pytest.approx(432e12)
    assert adapter.peak_flops("GAUDI2", "fp32") is None  # unknown is None, never a guess
    # HABANA_VISIBLE_MODULES (SLURM or a partition) restricts what the probe reports
    monkeypatch.setattr(probes, "getenv", lambda name: "2,3" if name == "HABANA_VISIBLE_MODULES" else None)
    assert [d.visible_id for d in get_backend("hpu").probe().devices] == ["3", "2"]


def test_hpu_missing_module_reason(no_accelerators: None) -> None:
    result = get_backend("hpu").probe()
    assert not result.available and "habana_frameworks" in (result.reason or "")


def test_hpu_broken_bridge_keeps_the_reason(monkeypatch: pytest.MonkeyPatch, no_accelerators: None) -> None:
    monkeypatch.setattr(probes, "module_installed", lambda name: True)
    monkeypatch.setattr(
        probes,
        "import_optional",
        lambda name: probes.Imported(
            None, f"{name} is installed but cannot be imported: OSError: libsynapse.so"
        ),
    )
    result = get_backend("hpu").probe()
    assert not result.available and "libsynapse.so" in (result.reason or "")


def test_import_optional_tells_missing_from_broken(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real import boundary: a missing package and one that raises on import differ."""
    missing = probes.import_optional("mlpfctl_no_such_vendor_module")
    assert missing.module is None and not missing.installed and "not installed" in (missing.reason or "")
    (tmp_path / "broken_vendor_ext.py").write_text(
        "raise RuntimeError('built for torch 2.3, this is 2.13')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = probes.import_optional("broken_vendor_ext")
    assert broken.module is None and broken.installed
    assert "built for torch 2.3" in (broken.reason or "") and "RuntimeError" in (broken.reason or "")
    assert probes.import_optional("json").module is not None


def test_xpu_path(monkeypatch: pytest.MonkeyPatch, no_accelerators: None) -> None:
    xpu = types.SimpleNamespace(
        is_available=lambda: True,
        device_count=lambda: 2,
        get_device_name=lambda i: "Intel(R) Data Center GPU Max 1550",
    )
    monkeypatch.setattr(probes, "torch_module", lambda: _fake_torch(xpu=xpu))
    result = get_backend("xpu").probe()
    assert result.available and result.count == 2 and result.details["ipex"] is None
    assert result.details["ipex_error"] is None  # IPEX simply not installed: nothing to report
    adapter = select_backend("auto")
    assert adapter.name == "xpu" and adapter.dist_backend == "xccl"


def test_xpu_incompatible_ipex_is_reported(monkeypatch: pytest.MonkeyPatch, no_accelerators: None) -> None:
    """An installed IPEX built for another torch: `mlpfctl devices` says so instead of hiding it."""
    reason = (
        "intel_extension_for_pytorch is installed but cannot be imported: ERROR! IPEX 2.3 needs torch 2.3"
    )
    monkeypatch.setattr(probes, "import_optional", lambda name: probes.Imported(None, reason))
    no_xpu = types.SimpleNamespace(is_available=lambda: False)
    monkeypatch.setattr(probes, "torch_module", lambda: _fake_torch(xpu=no_xpu))
    result = get_backend("xpu").probe()
    assert not result.available and "IPEX 2.3 needs torch 2.3" in (result.reason or "")
    assert result.details["ipex_error"] == reason


def test_devices_cli_shows_the_reason(monkeypatch: pytest.MonkeyPatch, no_accelerators: None) -> None:
    from typer.testing import CliRunner

    from mlpfctl.cli.app import app

    reason = "intel_extension_for_pytorch is installed but cannot be imported: undefined symbol: _ZN3c10"
    monkeypatch.setattr(probes, "import_optional", lambda name: probes.Imported(None, reason))
    monkeypatch.setattr(
        probes, "torch_module", lambda: _fake_torch(xpu=types.SimpleNamespace(is_available=lambda: False))
    )
    out = CliRunner().invoke(app, ["devices", "--json"])
    assert out.exit_code == 0, out.output
    assert "undefined symbol" in out.stdout


def test_cpu_fallback(monkeypatch: pytest.MonkeyPatch, no_accelerators: None) -> None:
    monkeypatch.setattr(probes, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    adapter = select_backend("auto")
    assert adapter.name == "cpu" and adapter.dist_backend == "gloo" and not adapter.pin_memory
    assert adapter.autocast_dtype() is None
    assert adapter.peak_flops("AMD EPYC", "fp32") is None
    import torch

    assert adapter.setup_process(0) == torch.device("cpu")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "bfloat16"),  # Sapphire Rapids and later
        ({"avx512f", "avx512_bf16"}, None),  # Cooper Lake, Zen 4: bf16 dot products, no AMX (unmeasured)
        ({"avx2", "fma"}, None),  # bf16 would be emulated
        (set(), None),  # no /proc/cpuinfo (macOS)
    ],
)
def test_cpu_autocasts_to_bf16_only_with_amx(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], expected: str | None
) -> None:
    import torch
    from typer.testing import CliRunner

    from mlpfctl.cli.app import app

    monkeypatch.setattr(probes, "cpu_flags", lambda: frozenset(flags))
    dtype = get_backend("cpu").autocast_dtype(torch.device("cpu"))
    assert dtype is (getattr(torch, expected) if expected else None)
    out = CliRunner().invoke(app, ["devices", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["backends"]["cpu"]["autocast_dtype"] == (expected or "none")


def test_cpu_flags_are_read_from_proc_cpuinfo() -> None:
    flags = probes.cpu_flags()
    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    assert {"fpu", "sse2"} <= flags or "fp" in flags or "neon" in flags  # x86 or ARM


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
