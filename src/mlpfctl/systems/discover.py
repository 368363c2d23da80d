"""Partitions of the cluster we are on, for the ``local`` profile (``discover = true``).

``sinfo --json`` gives each node's partitions, CPUs, GPUs (gres) and memory; the maximum wall
time and the default partition are not in its 22.05 output, so they come from
``sinfo -h -o '%P|%l'`` (the default partition carries a ``*``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from mlpfctl.errors import RuntimeFailure
from mlpfctl.systems.profiles import Partition, SystemProfile
from mlpfctl.systems.runner import Runner
from mlpfctl.systems.slurmtime import parse_time

_GPU = re.compile(r"gpu(?::[^:(,]+)?:(\d+)")


def gpus_in_gres(gres: str) -> int:
    """GPUs in a gres string such as ``gpu:8``, ``gpu:a100:4(S:0-1)`` or ``gpu:2,shard:4``."""
    return sum(int(m.group(1)) for m in _GPU.finditer(gres or ""))


def _nodes(data: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        raise RuntimeFailure("sinfo --json did not list nodes", "check the SLURM version (>= 21.08)")
    return [n for n in nodes if isinstance(n, dict)]


def _time_limits(text: str) -> tuple[dict[str, int | None], str | None]:
    limits: dict[str, int | None] = {}
    default = None
    for line in text.splitlines():
        name, _, limit = line.strip().partition("|")
        if name.endswith("*"):
            name = default = name[:-1]
        if not name:
            continue
        try:
            limits[name] = parse_time(limit.replace("infinite", "UNLIMITED"), allow_unlimited=True)
        except Exception:  # an odd limit string: treat as unknown (no check) rather than fail
            limits[name] = None
    return limits, default


def discover_partitions(runner: Runner) -> tuple[dict[str, Partition], str | None]:
    """The cluster's partitions and its default partition."""
    result = runner(["sinfo", "--json"])
    if result.returncode != 0:
        raise RuntimeFailure(f"sinfo --json failed: {result.stderr.strip()}", "is this a SLURM cluster?")
    try:
        nodes = _nodes(json.loads(result.stdout))
    except json.JSONDecodeError:
        raise RuntimeFailure("sinfo --json printed no JSON", "check the SLURM version (>= 21.08)") from None
    limits_out = runner(["sinfo", "-h", "-o", "%P|%l"])
    limits, default = _time_limits(limits_out.stdout) if limits_out.returncode == 0 else ({}, None)
    found: dict[str, Partition] = {}
    for node in nodes:
        for name in node.get("partitions") or []:
            gpus = gpus_in_gres(str(node.get("gres", "")))
            cpus = int(node.get("cpus") or 1)
            known = found.get(name)
            # a partition of mixed nodes: the smallest node decides what a job can count on
            if known is not None:
                gpus, cpus = min(gpus, known.gpus_per_node), min(cpus, known.cpus_per_node)
            found[name] = Partition(
                name=name, gpus_per_node=gpus, cpus_per_node=cpus, max_time_s=limits.get(name)
            )
    return found, default


def with_discovered(profile: SystemProfile, runner: Runner) -> SystemProfile:
    """``profile`` with the cluster's partitions when it asks for discovery (else unchanged)."""
    if not profile.discover:
        return profile
    partitions, default = discover_partitions(runner)
    if not partitions:
        raise RuntimeFailure("sinfo lists no partitions", "is slurmctld configured?")
    if default not in partitions:
        default = (
            profile.default_partition if profile.default_partition in partitions else next(iter(partitions))
        )
    return dataclasses.replace(profile, partitions=partitions, default_partition=default)
