"""One device partition for HPO workers, scale-bench points and local launches, per backend.

Hardware is faked at the probe boundary only (backends/probes.py); the partition, the adapters'
pools, the HPO driver's slices and the local launcher's ranks are the real code.
"""

from __future__ import annotations

import types

import pytest

from mlpfctl.backends import get_backend, probes
from mlpfctl.backends.partition import SHARE_ENV, partition
from mlpfctl.errors import ConfigError
from mlpfctl.hpo.driver import device_slices
from mlpfctl.launch import local


def _fake_torch(*, cuda: str | None = None, hip: str | None = None, xpu: object | None = None) -> object:
    return types.SimpleNamespace(
        version=types.SimpleNamespace(cuda=cuda, hip=hip),
        xpu=xpu,
        distributed=types.SimpleNamespace(is_xccl_available=lambda: True),
    )


@pytest.fixture
def nvidia(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node with 4 NVIDIA GPUs and no nvidia-smi."""
    monkeypatch.setattr(probes, "torch_module", lambda: _fake_torch(cuda="12.8"))
    monkeypatch.setattr(probes, "cuda_device_count", lambda: 4)
    monkeypatch.setattr(probes, "nvidia_smi", lambda: None)


@pytest.fixture
def amd(monkeypatch: pytest.MonkeyPatch) -> None:
    """A LUMI-G node: 8 GCDs."""
    monkeypatch.setattr(probes, "torch_module", lambda: _fake_torch(hip="6.2.41133"))
    monkeypatch.setattr(probes, "cuda_device_count", lambda: 8)
    monkeypatch.setattr(probes, "rocm_smi", lambda: None)


@pytest.fixture
def gaudi(monkeypatch: pytest.MonkeyPatch) -> None:
    """An 8-Gaudi node whose module ids are not its indices."""
    monkeypatch.setattr(probes, "module_installed", lambda name: True)
    monkeypatch.setattr(probes, "import_optional", lambda name: probes.Imported(types.SimpleNamespace()))
    monkeypatch.setattr(
        probes,
        "hl_smi",
        lambda: [
            {
                "index": str(i),
                "module_id": str((i + 4) % 8),
                "name": "HL-225",
                "memory_mib": "98304",
                "driver": "1",
            }
            for i in range(8)
        ],
    )
    monkeypatch.setenv("PT_HPU_LAZY_MODE", "0")  # the probe applies it; keep the test's env restorable


@pytest.fixture
def intel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two Max 1550 cards in the FLAT hierarchy: 4 stacks, 4 torch devices."""
    xpu = types.SimpleNamespace(
        is_available=lambda: True, device_count=lambda: 4, get_device_name=lambda i: "Intel GPU"
    )
    monkeypatch.setattr(probes, "torch_module", lambda: _fake_torch(xpu=xpu))
    monkeypatch.setattr(probes, "import_optional", lambda name: probes.Imported(None, "no", installed=False))


# -- NVIDIA ---------------------------------------------------------------------------------------
def test_nvidia_counts_with_the_adapter_probe_not_nvidia_smi(nvidia: None) -> None:
    assert partition(get_backend("cuda"), 2, 2, {}) == [
        {"CUDA_VISIBLE_DEVICES": "0,1"},
        {"CUDA_VISIBLE_DEVICES": "2,3"},
    ]


def test_nvidia_narrows_what_slurm_bound(nvidia: None) -> None:
    env = {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    assert partition(get_backend("cuda"), 2, 2, env) == [
        {"CUDA_VISIBLE_DEVICES": "4,5"},
        {"CUDA_VISIBLE_DEVICES": "6,7"},
    ]
    uuids = {"CUDA_VISIBLE_DEVICES": "GPU-aaaa,GPU-bbbb"}
    assert partition(get_backend("cuda"), 2, 1, uuids) == [
        {"CUDA_VISIBLE_DEVICES": "GPU-aaaa"},
        {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"},
    ]


def test_too_few_devices_is_a_config_error(nvidia: None) -> None:
    with pytest.raises(ConfigError) as info:
        partition(get_backend("cuda"), 3, 2, {"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert "need 6 cuda device(s), 4 available" in info.value.message
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3" in info.value.message and SHARE_ENV in (info.value.hint or "")


def test_sharing_is_explicit_and_never_within_one_run(nvidia: None) -> None:
    env = {"CUDA_VISIBLE_DEVICES": "0", SHARE_ENV: "1"}
    assert partition(get_backend("cuda"), 2, 1, env) == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "0"},
    ]
    with pytest.raises(ConfigError):  # one run's ranks on one GPU: NCCL refuses duplicate GPUs
        partition(get_backend("cuda"), 1, 2, env)


# -- ROCm -----------------------------------------------------------------------------------------
def test_rocm_uses_rocr_first(amd: None) -> None:
    assert partition(get_backend("rocm"), 2, 4, {}) == [
        {"ROCR_VISIBLE_DEVICES": "0,1,2,3"},
        {"ROCR_VISIBLE_DEVICES": "4,5,6,7"},
    ]


def test_rocm_narrows_slurms_rocr_binding(amd: None) -> None:
    """LUMI: SLURM sets ROCR_VISIBLE_DEVICES (lumi.toml gpu_env); the old driver ignored it."""
    env = {"ROCR_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
    assert partition(get_backend("rocm"), 8, 1, env) == [{"ROCR_VISIBLE_DEVICES": str(i)} for i in range(8)]


def test_rocm_narrows_the_innermost_variable_set(amd: None) -> None:
    """HIP indices count within ROCr's list: narrowing HIP keeps both layers consistent."""
    env = {"ROCR_VISIBLE_DEVICES": "4,5,6,7", "HIP_VISIBLE_DEVICES": "1,3"}
    assert partition(get_backend("rocm"), 2, 1, env) == [
        {"HIP_VISIBLE_DEVICES": "1"},
        {"HIP_VISIBLE_DEVICES": "3"},
    ]
    # HIP_VISIBLE_DEVICES wins over CUDA_VISIBLE_DEVICES in the HIP runtime
    both = {"CUDA_VISIBLE_DEVICES": "0,1", "HIP_VISIBLE_DEVICES": "2,3"}
    assert partition(get_backend("rocm"), 2, 1, both)[1] == {"HIP_VISIBLE_DEVICES": "3"}
    only_cuda = {"CUDA_VISIBLE_DEVICES": "6,7"}
    assert partition(get_backend("rocm"), 2, 1, only_cuda) == [
        {"CUDA_VISIBLE_DEVICES": "6"},
        {"CUDA_VISIBLE_DEVICES": "7"},
    ]


# -- Gaudi ----------------------------------------------------------------------------------------
def test_gaudi_partitions_module_ids(gaudi: None) -> None:
    slices = partition(get_backend("hpu"), 2, 4, {})
    assert slices == [{"HABANA_VISIBLE_MODULES": "4,5,6,7"}, {"HABANA_VISIBLE_MODULES": "0,1,2,3"}]
    bound = {"HABANA_VISIBLE_MODULES": "2,3"}
    assert partition(get_backend("hpu"), 2, 1, bound) == [
        {"HABANA_VISIBLE_MODULES": "2"},
        {"HABANA_VISIBLE_MODULES": "3"},
    ]


def test_gaudi_never_shares(gaudi: None) -> None:
    with pytest.raises(ConfigError, match="cannot be shared") as info:
        partition(get_backend("hpu"), 2, 1, {"HABANA_VISIBLE_MODULES": "0", SHARE_ENV: "1"})
    assert "one process per device" in (info.value.hint or "")


# -- XPU and CPU ----------------------------------------------------------------------------------
def test_xpu_uses_ze_affinity_mask(intel: None) -> None:
    assert partition(get_backend("xpu"), 2, 2, {}) == [
        {"ZE_AFFINITY_MASK": "0,1"},
        {"ZE_AFFINITY_MASK": "2,3"},
    ]
    stacks = {"ZE_AFFINITY_MASK": "0.0,0.1,1.0,1.1"}
    assert partition(get_backend("xpu"), 2, 2, stacks) == [
        {"ZE_AFFINITY_MASK": "0.0,0.1"},
        {"ZE_AFFINITY_MASK": "1.0,1.1"},
    ]


def test_cpu_pins_nothing() -> None:
    assert partition(get_backend("cpu"), 3, 2, {"CUDA_VISIBLE_DEVICES": "0"}) == [{}, {}, {}]


# -- the callers ----------------------------------------------------------------------------------
def test_hpo_driver_slices_follow_the_study_backend(amd: None) -> None:
    env = {"ROCR_VISIBLE_DEVICES": "0,1,2,3"}
    assert device_slices(2, 2, env, "rocm") == [
        {"ROCR_VISIBLE_DEVICES": "0,1"},
        {"ROCR_VISIBLE_DEVICES": "2,3"},
    ]
    assert device_slices(2, 2, env, "auto") == device_slices(2, 2, env, "rocm")
    assert device_slices(3, 2, {**env, "MLPFCTL_HPO_NO_DEVICE_PROBE": "1"}, "rocm") == [{}, {}, {}]


def test_hpo_driver_on_a_cpu_node_pins_nothing() -> None:
    assert device_slices(3, 2, {}, "auto") == [{}, {}, {}]


def test_local_launch_gives_every_rank_the_same_list(nvidia: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rank of a launch sees the launch's devices and takes the one at its local rank (the
    way Gaudi's HCCL assigns modules, and torch.cuda indices)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert local._devices("cuda", 2, None) == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert local._devices("auto", 2, {"CUDA_VISIBLE_DEVICES": "2,3"}) == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert local._devices(None, 2, None) == {}
    with pytest.raises(ConfigError, match="need 8 cuda device"):
        local.launch_local(print, 8, backend="cuda")  # refused before any rank is spawned
