"""Host facts for reports: CPU model, cores, memory, NUMA layout."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path
from typing import Any


@cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numa_nodes() -> list[dict[str, Any]]:
    base = Path("/sys/devices/system/node")
    nodes = []
    for node in sorted(base.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        try:
            cpulist = (node / "cpulist").read_text().strip()
        except OSError:
            cpulist = "?"
        nodes.append({"node": int(node.name[4:]), "cpus": cpulist})
    return nodes


def host_summary() -> dict[str, Any]:
    import psutil

    mem = psutil.virtual_memory()
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": int(mem.total),
        "numa_nodes": numa_nodes(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
