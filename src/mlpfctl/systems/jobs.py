"""What was submitted: the jobs registry plus live state from squeue/scontrol, cancel, logs.

No ``sacct``: many clusters (and the local test cluster) run without accounting; ``scontrol
show job`` knows finished jobs for ``MinJobAge`` seconds, older ones show as ``UNKNOWN``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlpfctl.errors import RuntimeFailure, UsageError
from mlpfctl.systems.runner import Runner

TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}
# scontrol -o separates Key=value pairs by spaces, but values (job names, paths) may hold spaces:
# split only where a space is followed by the next Key=
_NEXT_KEY = re.compile(r" (?=[A-Za-z][A-Za-z/:_]*=)")


def read_records(registry: Path) -> list[dict[str, Any]]:
    if not registry.exists():
        return []
    records = []
    for line in registry.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash: skip it, keep the rest
        if isinstance(record, dict) and "job_id" in record:
            records.append(record)
    return records


def find_record(registry: Path, job_id: str) -> dict[str, Any] | None:
    return next((r for r in reversed(read_records(registry)) if str(r["job_id"]) == job_id), None)


def job_info(job_id: str, runner: Runner) -> dict[str, str]:
    """``scontrol show job -o`` as a dict; empty when SLURM no longer knows the job."""
    result = runner(["scontrol", "show", "job", "-o", job_id])
    if result.returncode != 0:
        return {}
    line = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
    return dict(part.partition("=")[::2] for part in _NEXT_KEY.split(line) if "=" in part)


def status(records: list[dict[str, Any]], runner: Runner) -> Iterator[dict[str, Any]]:
    for record in records:
        info = job_info(str(record["job_id"]), runner)
        yield {
            **record,
            "state": info.get("JobState", "UNKNOWN"),
            "exit_code": info.get("ExitCode", ""),
            "elapsed": info.get("RunTime", ""),
            "reason": info.get("Reason", ""),
            "restarts": int(info.get("Restarts", "0") or 0),
        }


def check_job_id(job_id: str) -> str:
    if not re.fullmatch(r"\d+(_\d+)?", job_id):
        raise UsageError(f"'{job_id}' is not a SLURM job id", "job ids are numbers: see `mlpfctl jobs`")
    return job_id


def cancel(job_id: str, runner: Runner, registry: Path) -> str:
    """Cancel a pending or running job; return what happened ("cancelled", or the state it
    already ended in). A job id that neither SLURM nor the registry knows is a usage error:
    ``scancel`` itself says nothing for many of them."""
    check_job_id(job_id)
    info = job_info(job_id, runner)
    if not info:
        if find_record(registry, job_id) is None:
            raise UsageError(
                f"no job {job_id}: SLURM does not know it and mlpfctl did not submit it",
                "see `mlpfctl jobs` (or squeue) for the job ids",
            )
        return "ENDED"  # ours, finished long enough ago that SLURM forgot it (MinJobAge)
    state = info.get("JobState", "UNKNOWN")
    if state in TERMINAL:
        return state
    result = runner(["scancel", job_id])
    if result.returncode != 0:
        raise RuntimeFailure(f"scancel {job_id} failed: {result.stderr.strip()}", "see `mlpfctl jobs`")
    return "cancelled"


def log_path(job_id: str, registry: Path, runner: Runner) -> Path:
    check_job_id(job_id)
    record = find_record(registry, job_id)
    if record is not None:  # our own jobs: the script names this file
        return Path(record["run_dir"]) / f"slurm-{job_id}.out"
    info = job_info(job_id, runner)
    if info.get("StdOut"):
        return Path(info["StdOut"])
    raise UsageError(f"job {job_id} is neither known to SLURM nor in {registry}", "see `mlpfctl jobs`")
