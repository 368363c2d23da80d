"""Plan a job (profile + settings -> checked request -> script), then submit it.

``plan`` changes nothing (``--dry-run`` prints its script); ``submit`` writes the script into the
run directory atomically, calls ``sbatch --parsable`` through the injectable runner, and records
the job in the jobs registry.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlpfctl.atomic import atomic_write_text
from mlpfctl.config.schema import Config
from mlpfctl.console import warn
from mlpfctl.errors import RuntimeFailure
from mlpfctl.systems.discover import with_discovered
from mlpfctl.systems.profiles import SystemProfile, load_profile
from mlpfctl.systems.render import render
from mlpfctl.systems.request import JobRequest, build_request, check_kind
from mlpfctl.systems.runner import Runner
from mlpfctl.systems.validate import check_job


@dataclass(frozen=True)
class Plan:
    profile: SystemProfile
    request: JobRequest
    script: str


def registry_path(config: Config, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if config.submit.registry:
        return Path(config.submit.registry).expanduser()
    state = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "mlpfctl" / "jobs.jsonl"


def plan(
    config: Config, kind: str, args: Sequence[str], runner: Runner, *, python: str | None = None
) -> Plan:
    """The checked request and its script; nothing is written. The job's own arguments are parsed
    and its configuration resolved as on the node (``validate.check_job``)."""
    check_kind(kind)
    profile = load_profile(config.submit.system)
    try:
        profile = with_discovered(profile, runner)
    except RuntimeFailure as exc:
        # no SLURM here (a laptop, a dry run): the profile's own partitions still render a script;
        # a real submission fails at sbatch with the same message
        warn(f"{exc.message}; using the partitions in {profile.source}")
    request = build_request(
        profile,
        config.submit,
        kind,
        args,
        out_dir=config.run.out_dir,
        run_name=config.run.name,
        python=python,
    )
    checked = check_job(request)
    if kind == "scale-bench" and checked is not None and "out_dir" in checked.defaulted:
        # the records belong to the run, not to wherever the job was submitted from
        request = dataclasses.replace(
            request, command=(*request.command, "--out", str(request.run_dir / "scale-bench"))
        )
    return Plan(profile, request, render(profile, request))


def parse_job_id(stdout: str) -> str:
    """``sbatch --parsable`` prints ``ID`` or ``ID;CLUSTER``."""
    job_id = stdout.strip().split(";", 1)[0]
    if not job_id.isdigit():
        raise RuntimeFailure(
            f"sbatch printed {stdout.strip()!r} instead of a job id", "check the sbatch output"
        )
    return job_id


def append_record(registry: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line per job, in one write under a lock: concurrent submits never mix lines."""
    registry.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(registry, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def submit(job: Plan, runner: Runner, registry: Path) -> dict[str, Any]:
    request = job.request
    if request.script_path.exists():
        raise RuntimeFailure(
            f"{request.script_path} exists: that run directory belongs to another job",
            "choose another run name (--set run.name=...) or remove the directory",
        )
    created = not request.run_dir.exists()
    request.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        for path, text in request.secret_files.items():
            atomic_write_text(path, text)  # mkstemp creates 0600 files: only the owner can read it
            os.chmod(path, 0o600)
        atomic_write_text(request.script_path, job.script)
        os.chmod(request.script_path, 0o755)
        result = runner(["sbatch", "--parsable", str(request.script_path)])
        if result.returncode != 0:
            raise RuntimeFailure(
                f"sbatch rejected {request.script_path}: {result.stderr.strip() or result.stdout.strip()}",
                "read the message above; `mlpfctl submit --dry-run ...` shows the script",
            )
        job_id = parse_job_id(result.stdout)
    except BaseException:
        # nothing was queued: leave no run directory (and no password file) behind
        if created:
            shutil.rmtree(request.run_dir, ignore_errors=True)
        else:
            for path in (request.script_path, *request.secret_files):
                path.unlink(missing_ok=True)
        raise
    record = {
        "job_id": job_id,
        "system": request.system,
        "kind": request.kind,
        "job_name": request.job_name,
        "partition": request.partition.name,
        "nodes": request.nodes,
        "time": request.time,
        "run_dir": str(request.run_dir),
        "script": str(request.script_path),
        "submitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    append_record(registry, record)
    return record
