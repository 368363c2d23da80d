"""The probe boundary: every question an adapter asks the machine goes through one function here.

Tests replace these functions (monkeypatch) to fake hardware; nothing else is faked. None of them
creates a device context: counts come from torch's NVML/driver-based queries, names and memory
from the vendor SMI tools where present.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
from types import ModuleType
from typing import Any


def torch_module() -> ModuleType | None:
    try:
        import torch
    except ImportError:
        return None
    return torch


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


def nvidia_smi() -> list[dict[str, str]] | None:
    """Rows of nvidia-smi (index, name, memory MiB, driver), or None without nvidia-smi."""
    text = _run(
        ["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader,nounits"]
    )
    if text is None:
        return None
    rows = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            rows.append({"index": parts[0], "name": parts[1], "memory_mib": parts[2], "driver": parts[3]})
    return rows


def rocm_smi() -> dict[str, Any] | None:
    text = _run(["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--showdriverversion", "--json"])
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def import_optional(name: str) -> ModuleType | None:
    """Import an optional vendor module (habana_frameworks.torch, intel_extension_for_pytorch)."""
    try:
        return importlib.import_module(name)
    except Exception:  # vendor stacks raise more than ImportError when half-installed
        return None


def getenv(name: str) -> str | None:
    return os.environ.get(name)
