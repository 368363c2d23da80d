"""A typical job of each kind for any profile: what ``mlpfctl systems show NAME --script KIND``
prints, and what the golden-file and ``sbatch --test-only`` tests render for every system."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from mlpfctl.config.schema import SubmitSection
from mlpfctl.systems.profiles import SystemProfile
from mlpfctl.systems.request import JobRequest, build_request
from mlpfctl.systems.slurmtime import format_time

EXAMPLE_ARGS: dict[str, tuple[str, ...]] = {
    "train": ("--config", "mlpf.toml", "--steps", "20000"),
    "hpo": ("--space", "space.toml", "--sampler", "tpe", "--scheduler", "asha", "--trials", "64"),
    "scale-bench": ("train", "--steps", "50"),
    "check": (),
    "data": (
        "generate",
        "--process",
        "ee_ttbar",
        "--events",
        "1000000",
        "--out",
        "/scratch/mlpf/data/ee_ttbar",
    ),
}


def example_request(
    profile: SystemProfile,
    kind: str,
    *,
    nodes: int = 2,
    out_dir: str = "/scratch/mlpf/runs",
    python: str | None = "/opt/mlpf/venv/bin/python",
    **submit: object,
) -> JobRequest:
    """The example job; ``submit`` sets more [submit] keys (array, container, sbatch_args...)."""
    part = profile.partitions[profile.default_partition]
    time_s = min(2 * 3600, part.max_time_s or 2 * 3600)
    settings = SubmitSection(
        system=profile.name,
        account=(profile.account_example or "myproject") if profile.account_required else None,
        nodes=min(nodes, part.max_nodes or nodes),
        time=format_time(time_s),
    )
    if part.gpus_per_node == 0:
        settings = replace(settings, tasks_per_node=2)
    if kind == "data":
        # one node (more: --array); no GPU, except where the partition bills GPUs anyway
        settings = replace(settings, nodes=1, gpus_per_node=1 if part.require_gpus else None)
    settings = replace(settings, **submit)  # type: ignore[arg-type]
    return build_request(
        profile,
        settings,
        kind,
        EXAMPLE_ARGS[kind],
        out_dir=out_dir,
        run_name=f"{profile.name}-{kind}",
        now=datetime(2026, 1, 1),
        python=python,
        workdir=Path(out_dir).parent,
    )
