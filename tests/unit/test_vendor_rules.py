"""Each accelerator by its vendor's rules: Gaudi execution mode, HCCL and graph-friendly padding;
ROCm's attention kernel; per-backend RNG and memory services. Vendor modules are faked at the
probe boundary (``probes.import_optional``) only; the modules, kernels and padding are real."""

from __future__ import annotations

import os
import types
from typing import Any

import pytest
import torch
from torch import nn

from mlpfctl.backends import get_backend, probes
from mlpfctl.backends.sdpa import restrict_to_math, version_below
from mlpfctl.config.schema import ModelSection
from mlpfctl.data.collate import bucket_width, collate_events
from mlpfctl.data.events import Event
from mlpfctl.errors import RuntimeFailure
from mlpfctl.models.registry import build_model
from mlpfctl.models.spec import resolve_spec


def _restorable(monkeypatch: pytest.MonkeyPatch, name: str, value: str | None) -> None:
    monkeypatch.setenv(name, "placeholder")
    if value is None:
        monkeypatch.delenv(name)
    else:
        monkeypatch.setenv(name, value)


COMPILED: list[int] = []


def _stand_in_backend(gm: Any, example_inputs: Any) -> Any:
    COMPILED.append(1)
    return gm.forward


class FakeHabana:
    """What the Habana bridge exposes to the adapter, recording what it is asked."""

    def __init__(self, *, hccl: bool = True) -> None:
        self.marks = 0
        self.imported: list[str] = []
        self.hccl = hccl
        self.env_at_hccl: dict[str, str | None] = {}
        self.rng = torch.tensor([1, 2, 3])
        self.core = types.SimpleNamespace(mark_step=self._mark)
        self.hpu = types.SimpleNamespace(
            max_memory_allocated=lambda: 7 * 2**30, memory_allocated=lambda: 2**30, synchronize=lambda: None
        )
        self.random = types.SimpleNamespace(get_rng_state=lambda: self.rng, set_rng_state=self._set_rng)

    @staticmethod
    def _register_hpu_backend() -> None:
        """What importing the bridge does for torch.compile: register "hpu_backend" (here a
        stand-in that runs the captured graph on the CPU and counts its compilations)."""
        from torch._dynamo import list_backends, register_backend

        if "hpu_backend" not in list_backends(exclude_tags=()):
            register_backend(name="hpu_backend")(_stand_in_backend)

    def _mark(self) -> None:
        self.marks += 1

    def _set_rng(self, state: Any) -> None:
        self.rng = state

    def import_optional(self, name: str) -> probes.Imported:
        self.imported.append(name)
        modules = {
            "habana_frameworks.torch.core": self.core,
            "habana_frameworks.torch.hpu": self.hpu,
            "habana_frameworks.torch.hpu.random": self.random,
        }
        if name == "habana_frameworks.torch.core":
            self._register_hpu_backend()
        if name == "habana_frameworks.torch.distributed.hccl":
            self.env_at_hccl = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
            if self.hccl:
                return probes.Imported(types.SimpleNamespace())
            return probes.Imported(None, f"{name} is installed but cannot be imported: OSError: libhccl.so")
        return probes.Imported(modules.get(name, types.SimpleNamespace()))


LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def launcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gaudi's set-up exports torchrun's variables: restore the test process's afterwards."""
    for name in LAUNCHER_VARS:
        _restorable(monkeypatch, name, None)


def _small_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


# -- Gaudi ----------------------------------------------------------------------------------------
def test_gaudi_default_is_eager_with_torch_compile(
    monkeypatch: pytest.MonkeyPatch, launcher_env: None
) -> None:
    _restorable(monkeypatch, "PT_HPU_LAZY_MODE", None)
    fake = FakeHabana()
    monkeypatch.setattr(probes, "import_optional", fake.import_optional)
    adapter = get_backend("hpu")
    device = adapter.setup_process(0)
    assert device.type == "hpu" and os.environ["PT_HPU_LAZY_MODE"] == "0" and not adapter.lazy_mode
    model = _small_model()
    keys = list(model.state_dict())
    assert adapter.prepare_model(model, device) is model
    assert list(model.state_dict()) == keys  # checkpoints keep their keys
    compiled = len(COMPILED)
    model(torch.ones(3, 4))
    assert len(COMPILED) > compiled  # the forward really went through hpu_backend
    adapter.step_boundary(device)
    assert fake.marks == 0  # no mark_step outside lazy mode


def test_gaudi_lazy_mode_only_on_request_then_mark_step(
    monkeypatch: pytest.MonkeyPatch, launcher_env: None
) -> None:
    _restorable(monkeypatch, "PT_HPU_LAZY_MODE", "1")  # the user asked for the legacy mode
    fake = FakeHabana()
    monkeypatch.setattr(probes, "import_optional", fake.import_optional)
    adapter = get_backend("hpu")
    device = adapter.setup_process(0)
    assert os.environ["PT_HPU_LAZY_MODE"] == "1" and adapter.lazy_mode
    model = _small_model()
    adapter.prepare_model(model, device)
    compiled = len(COMPILED)
    model(torch.ones(3, 4))
    assert len(COMPILED) == compiled  # lazy mode builds its own graphs: no torch.compile
    adapter.step_boundary(device)  # after backward
    adapter.step_boundary(device)  # after optimizer.step
    assert fake.marks == 2


def test_gaudi_registers_hccl_explicitly(monkeypatch: pytest.MonkeyPatch, launcher_env: None) -> None:
    """HCCL is imported explicitly, after the launcher variables it reads at import: under srun
    (SLURM's variables only) torchrun's are derived first."""
    _restorable(monkeypatch, "PT_HPU_LAZY_MODE", None)
    fake = FakeHabana()
    monkeypatch.setattr(probes, "import_optional", fake.import_optional)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_TASKS_PER_NODE": "4(x2)"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    get_backend("hpu").setup_process(1)
    assert fake.imported[:2] == ["habana_frameworks.torch.core", "habana_frameworks.torch.distributed.hccl"]
    assert fake.env_at_hccl == {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8"}


def test_gaudi_without_hccl_fails_only_when_distributed(
    monkeypatch: pytest.MonkeyPatch, launcher_env: None
) -> None:
    _restorable(monkeypatch, "PT_HPU_LAZY_MODE", None)
    broken = FakeHabana(hccl=False)
    monkeypatch.setattr(probes, "import_optional", broken.import_optional)
    get_backend("hpu").setup_process(0)  # one rank needs no collectives
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RuntimeFailure, match=r"libhccl\.so"):
        get_backend("hpu").setup_process(0)


def test_gaudi_rng_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHabana()
    monkeypatch.setattr(probes, "import_optional", fake.import_optional)
    adapter = get_backend("hpu")
    device = torch.device("hpu")
    state = adapter.device_rng_state(device)
    adapter.set_device_rng_state(device, torch.tensor([9]))
    assert state.tolist() == [1, 2, 3] and fake.rng.tolist() == [9]
    assert adapter.memory_stats(device) == {"peak_allocated_bytes": 7 * 2**30, "allocated_bytes": 2**30}


def test_only_gaudi_pads_to_fixed_buckets() -> None:
    buckets = get_backend("hpu").padding_buckets()
    assert buckets and list(buckets) == sorted(buckets) and len(buckets) <= 16
    for name in ("cpu", "cuda", "rocm", "xpu"):
        assert get_backend(name).padding_buckets() == ()


def _event(n: int) -> Event:
    rng = torch.Generator().manual_seed(n)
    x = torch.rand(n, 17, generator=rng).numpy()
    y = torch.rand(n, 8, generator=rng).numpy()
    return Event(X=x, ytarget=y, ycand=y)


def test_bucketed_collate_reuses_a_few_widths() -> None:
    buckets = (64, 96, 128)
    assert [bucket_width(n, buckets) for n in (1, 64, 65, 97, 128, 129, 300)] == [
        64,
        64,
        96,
        128,
        128,
        256,
        384,
    ]
    assert bucket_width(70, ()) == 70
    widths = {
        collate_events([(i, _event(n))], pad_buckets=buckets).X.shape[1] for i, n in enumerate(range(3, 120))
    }
    assert widths == {64, 96, 128}  # 117 different longest events, 3 graph shapes
    batch = collate_events([(0, _event(70)), (1, _event(5))], pad_buckets=buckets)
    assert batch.X.shape[1] == 96 and int(batch.mask.sum()) == 75  # padding is masked out
    assert collate_events([(0, _event(70))]).X.shape[1] == 70  # off by default


# -- ROCm -----------------------------------------------------------------------------------------
class Probe(nn.Module):
    """Records which SDPA kernels are allowed while it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bool, bool, bool]] = []
        self.lin = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backends = torch.backends.cuda
        self.seen.append(
            (backends.flash_sdp_enabled(), backends.mem_efficient_sdp_enabled(), backends.math_sdp_enabled())
        )
        out: torch.Tensor = self.lin(x)
        return out


def _mi250x(monkeypatch: pytest.MonkeyPatch) -> None:
    props = {"name": "AMD Instinct MI250X", "memory_bytes": 64 * 2**30, "capability": (9, 0)}
    props |= {"compute_units": 110, "arch": "gfx90a", "uuid": None, "pci_bus_id": None}
    monkeypatch.setattr(probes, "cuda_device_properties", lambda index: props)


def test_rocm_below_the_torch_floor_runs_attention_on_the_math_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _mi250x(monkeypatch)
    monkeypatch.setattr(probes, "torch_version", lambda: "2.6.0+rocm6.2.4")
    adapter = get_backend("rocm")
    assert "147460" in (adapter.sdpa_math_reason(torch.device("cpu")) or "")
    module = Probe()
    keys = list(module.state_dict())
    adapter.prepare_model(module, torch.device("cpu"))
    module(torch.ones(1, 2))
    assert module.seen == [(False, False, True)]  # only the math kernel while the model runs
    assert torch.backends.cuda.mem_efficient_sdp_enabled()  # and the global setting is restored
    assert list(module.state_dict()) == keys


def test_rocm_newer_torch_is_checked_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    _mi250x(monkeypatch)
    monkeypatch.setattr(probes, "torch_version", lambda: "2.9.1+rocm6.4")
    cpu = torch.device("cpu")
    assert probes.sdpa_fused_kernel_agrees(cpu, torch.float32)  # the real check, on this CPU
    assert probes.sdpa_fused_kernel_agrees(cpu, torch.bfloat16)
    adapter = get_backend("rocm")
    device = torch.device("cuda", 0)
    checked: list[torch.dtype] = []
    monkeypatch.setattr(
        probes, "sdpa_fused_kernel_agrees", lambda device, dtype: checked.append(dtype) or True
    )
    assert adapter.sdpa_math_reason(device) is None and checked == [torch.bfloat16]  # the training dtype
    monkeypatch.setattr(probes, "sdpa_fused_kernel_agrees", lambda device, dtype: False)
    assert "disagrees" in (adapter.sdpa_math_reason(device) or "")
    module = Probe()
    adapter.prepare_model(module, device)
    module(torch.ones(1, 2))
    assert module.seen == [(False, False, True)]


def test_math_restriction_keeps_the_attention_model_exact() -> None:
    spec = resolve_spec(
        ModelSection(preset="tiny", type="attention"), num_features=17, num_classes=6, num_element_types=2
    )
    torch.manual_seed(0)
    model = build_model(spec).eval()
    x = torch.randn(2, 9, 17)
    x[..., 0] = 1.0
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.no_grad():
        before = model(x, mask)
        restrict_to_math(model)
        after = model(x, mask)
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_version_floor() -> None:
    assert version_below("2.6.0+rocm6.2.4", "2.7") and not version_below("2.7.0", "2.7")
    assert not version_below("2.10.0a0+rocm7.0", "2.7")


# -- per-backend services -------------------------------------------------------------------------
def test_host_only_backends_have_no_device_generator() -> None:
    cpu = get_backend("cpu")
    assert cpu.device_rng_state(torch.device("cpu")) is None and cpu.memory_stats(torch.device("cpu")) == {}
    cpu.step_boundary(torch.device("cpu"))  # the loop calls it on every backend


@pytest.mark.gpu
def test_device_generator_round_trip_on_a_real_gpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA/ROCm GPU on this machine (the GPU check runs it where there is one)")
    adapter = get_backend("rocm" if torch.version.hip else "cuda")
    device = adapter.setup_process(0)
    state = adapter.device_rng_state(device)
    first = torch.rand(4, device=device)
    adapter.set_device_rng_state(device, state)
    assert torch.equal(first, torch.rand(4, device=device))
    identity = adapter.device_identity(device)
    assert identity.name and identity.memory_bytes


class FakeDeviceModule:
    """torch.cuda / torch.xpu as the adapters use them, recording the device they are asked about."""

    def __init__(self) -> None:
        self.asked: list[Any] = []
        self.rng = torch.tensor([4, 5])

    def max_memory_allocated(self, device: Any) -> int:
        self.asked.append(device)
        return 3 * 2**30

    def memory_allocated(self, device: Any) -> int:
        return 2**30

    def reset_peak_memory_stats(self, device: Any) -> None:
        self.asked.append(("reset", device))

    def get_rng_state(self, device: Any) -> torch.Tensor:
        return self.rng

    def set_rng_state(self, state: torch.Tensor, device: Any) -> None:
        self.rng = state

    def synchronize(self, device: Any) -> None:
        self.asked.append(("sync", device))


@pytest.mark.parametrize(("backend", "kind"), [("xpu", "xpu"), ("cuda", "cuda"), ("rocm", "cuda")])
def test_device_memory_and_generator_services(
    backend: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory statistics (the XPU adapter had none) and the device generator the loop saves for
    an exact resume, for the device the rank uses."""
    fake = FakeDeviceModule()
    monkeypatch.setattr(probes, "torch_device_module", lambda name: fake if name == kind else None)
    adapter = get_backend(backend)
    device = torch.device(kind, 1)
    assert adapter.memory_stats(device) == {"peak_allocated_bytes": 3 * 2**30, "allocated_bytes": 2**30}
    adapter.reset_peak_memory(device)
    adapter.synchronize(device)
    assert fake.asked == [device, ("reset", device), ("sync", device)]
    saved = adapter.device_rng_state(device)
    adapter.set_device_rng_state(device, torch.tensor([7]))
    assert saved.tolist() == [4, 5] and fake.rng.tolist() == [7]
