"""The probe boundary: every question an adapter asks the machine goes through one function here.

Tests replace these functions (monkeypatch) to fake hardware; nothing else is faked.

Two kinds of question live here:

* discovery (``torch_module``, ``cuda_device_count``, the ``*_smi`` tools, ``import_optional``):
  used by ``probe()``, which may run in any process (``mlpfctl devices``, the HPO driver, a local
  launcher); none of them creates a device context or takes a device;
* run-time facts about the device a rank already uses (``*_device_properties``, the energy
  counters): called only after ``setup_process`` selected the device.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Imported:
    """An optional vendor module, or why it is not there (kept for ``mlpfctl devices``)."""

    module: ModuleType | None
    reason: str | None = None
    installed: bool = True


def torch_module() -> ModuleType | None:
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_version() -> str:
    torch = torch_module()
    return "" if torch is None else str(torch.__version__)


def torch_cuda_version() -> str | None:
    torch = torch_module()
    return None if torch is None else getattr(torch.version, "cuda", None)


def torch_hip_version() -> str | None:
    torch = torch_module()
    return None if torch is None else getattr(torch.version, "hip", None)


def cuda_device_count() -> int:
    """Devices visible to torch.cuda (NVIDIA or AMD), without initialising a context."""
    torch = torch_module()
    if torch is None:
        return 0
    return int(torch.cuda.device_count())


def _run(cmd: list[str], timeout: float = 10.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _csv_rows(text: str | None, keys: tuple[str, ...]) -> list[dict[str, str]] | None:
    if text is None:
        return None
    rows = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == len(keys):
            rows.append(dict(zip(keys, parts, strict=True)))
    return rows


def nvidia_smi() -> list[dict[str, str]] | None:
    """Rows of nvidia-smi (index, name, memory MiB, driver, PCI bus id), or None without it."""
    keys = ("index", "name", "memory_mib", "driver", "pci_bus_id")
    query = "index,name,memory.total,driver_version,pci.bus_id"
    return _csv_rows(_run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"]), keys)


def rocm_smi() -> dict[str, Any] | None:
    text = _run(["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--showdriverversion", "--json"])
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def hl_smi() -> list[dict[str, str]] | None:
    """Rows of hl-smi (index, module id, name, memory MiB, driver): Gaudi facts without taking one.

    hl-smi reads the driver; it does not acquire a device the way the bridge's
    ``get_device_name()`` does (which fails on a node whose modules are all in use).
    """
    keys = ("index", "module_id", "name", "memory_mib", "driver")
    query = "index,module_id,name,memory.total,driver_version"
    return _csv_rows(_run(["hl-smi", "-Q", query, "-f", "csv,noheader,nounits"]), keys)


def import_optional(name: str) -> Imported:
    """Import an optional vendor module, keeping the reason when it cannot be used.

    A missing package and an installed one that fails to import (an IPEX built for another torch,
    a half-installed Habana stack) are different problems with different fixes; ``mlpfctl
    devices`` shows which one it is.
    """
    try:
        return Imported(importlib.import_module(name))
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return Imported(None, f"{name} is not installed", installed=False)
        return Imported(None, f"{name} is installed but cannot be imported: {exc}")
    except Exception as exc:  # vendor stacks raise more than ImportError when half-installed
        return Imported(None, f"{name} is installed but cannot be imported: {type(exc).__name__}: {exc}")


def module_installed(name: str) -> bool:
    """Whether the top-level package of ``name`` is installed, without importing anything."""
    return importlib.util.find_spec(name.split(".")[0]) is not None


def getenv(name: str) -> str | None:
    return os.environ.get(name)


def cpu_flags() -> frozenset[str]:
    """The host CPU's feature flags (``/proc/cpuinfo``; empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


# -- run-time facts about the device in use ---------------------------------------------------
def torch_device_module(name: str) -> Any:
    """``torch.cuda`` or ``torch.xpu``: memory counters, generators and streams of the device."""
    import torch

    return getattr(torch, name)


def cuda_device_properties(index: int) -> dict[str, Any]:
    """What torch.cuda knows of device ``index`` (NVIDIA or AMD): name, memory, arch, units, ids."""
    import torch

    props = torch.cuda.get_device_properties(index)
    out: dict[str, Any] = {
        "name": str(props.name),
        "memory_bytes": int(props.total_memory),
        "capability": (int(props.major), int(props.minor)),
        "compute_units": int(props.multi_processor_count),
        "arch": str(getattr(props, "gcnArchName", "") or "").split(":")[0] or None,
    }
    uuid = getattr(props, "uuid", None)
    out["uuid"] = str(uuid) if uuid is not None else None
    bus = getattr(props, "pci_bus_id", None)
    if bus is not None:
        domain = int(getattr(props, "pci_domain_id", 0))
        slot = int(getattr(props, "pci_device_id", 0))
        out["pci_bus_id"] = f"{domain:04x}:{int(bus):02x}:{slot:02x}.0"
    else:
        out["pci_bus_id"] = None
    return out


def xpu_device_properties(index: int) -> dict[str, Any]:
    import torch

    props = torch.xpu.get_device_properties(index)
    return {
        "name": str(props.name),
        "memory_bytes": int(props.total_memory),
        "compute_units": int(getattr(props, "max_compute_units", 0)) or None,
    }


def hpu_device_name() -> str | None:
    """The name the Habana bridge gives the acquired device ("GAUDI2", "GAUDI3")."""
    outcome = import_optional("habana_frameworks.torch.hpu")
    hpu = outcome.module
    return str(hpu.get_device_name()) if hpu is not None else None


def sdpa_fused_kernel_agrees(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the memory-efficient kernel gives the math kernel's answer with a padding mask.

    A masked event shaped like the models' (keys after the event's length masked out), in the
    training dtype. A device without that kernel for masked inputs never runs it: True.
    """
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 37, 32, generator=gen).to(device, dtype) for _ in range(3))
    mask = torch.ones(2, 1, 1, 37, dtype=torch.bool)
    mask[1, ..., 11:] = False
    mask = mask.to(device)
    try:
        with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
            fused = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    except RuntimeError:  # "No available kernel": the default dispatch cannot pick it either
        return True
    with sdpa_kernel([SDPBackend.MATH]):
        reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    return bool(torch.allclose(fused.float(), reference.float(), atol=tolerance, rtol=tolerance))


_NVML_READY: list[Any] = []


def nvml_energy_mj(uuid: str) -> int | None:
    """Total energy (mJ since the driver loaded) of the GPU with this CUDA UUID, via nvidia-ml-py."""
    outcome = import_optional("pynvml")
    nvml = outcome.module
    if nvml is None:
        return None
    try:
        if not _NVML_READY:
            nvml.nvmlInit()
            _NVML_READY.append(True)
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
        return int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:  # NVMLError_NotSupported (MIG, pre-Volta), no driver: no counter
        return None


def amdsmi_energy_uj(pci_bus_id: str) -> float | None:
    """Accumulated energy (µJ) of the AMD GPU at this PCI address, via ROCm's amdsmi."""
    amdsmi = import_optional("amdsmi").module
    if amdsmi is None:
        return None
    try:
        amdsmi.amdsmi_init()
        handle = amdsmi.amdsmi_get_processor_handle_from_bdf(pci_bus_id)
        counts = amdsmi.amdsmi_get_energy_count(handle)
        raw = counts.get("energy_accumulator", counts.get("power"))
        return float(raw) * float(counts["counter_resolution"])
    except Exception:  # AmdSmiException: no counter on this device / driver
        return None


RAPL_ROOT = Path("/sys/class/powercap")


def rapl_packages() -> list[tuple[int, int]] | None:
    """(energy µJ, wrap-around range µJ) per CPU package from RAPL; None when unreadable.

    Since Linux 5.10 ``energy_uj`` is readable by root only on most distributions.
    """
    if not RAPL_ROOT.is_dir():
        return None
    out = []
    for zone in sorted(RAPL_ROOT.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:
            continue  # sub-zones (core, uncore, dram) are parts of their package
        try:
            out.append(
                (int((zone / "energy_uj").read_text()), int((zone / "max_energy_range_uj").read_text()))
            )
        except (OSError, ValueError):
            return None
    return out or None
