"""Plan a job (profile + settings -> checked request -> script), then submit it.

``plan`` changes nothing (``--dry-run`` prints its script); ``submit`` writes the script into the
run directory atomically, creates the study of an HPO array job, calls ``sbatch --parsable``
(with the request's dependencies) through the injectable runner, and records the job in the jobs
registry.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlpfctl.atomic import atomic_write_text
from mlpfctl.config.schema import Config
from mlpfctl.console import warn
from mlpfctl.errors import RuntimeFailure, UsageError
from mlpfctl.systems.chain import dependency_args
from mlpfctl.systems.discover import with_discovered
from mlpfctl.systems.jobs import append_record
from mlpfctl.systems.profiles import SystemProfile, load_profile
from mlpfctl.systems.render import render
from mlpfctl.systems.request import JobRequest, build_request, check_kind, data_manifest_step
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
    if checked is not None and request.hpo is not None:
        _check_trial_devices(request, checked.plan)
    if kind == "scale-bench" and checked is not None and "out_dir" in checked.defaulted:
        # the records belong to the run, not to wherever the job was submitted from
        request = dataclasses.replace(
            request, command=(*request.command, "--out", str(request.run_dir / "scale-bench"))
        )
    return Plan(profile, request, render(profile, request))


def follow_up(job: Plan, job_id: str) -> Plan | None:
    """The job that must run after job ``job_id`` (a data array's manifest step), or None."""
    request = job.request
    if request.kind != "data" or request.array is None:
        return None
    then = data_manifest_step(request, job_id)
    return Plan(job.profile, then, render(job.profile, then))


def _check_trial_devices(request: JobRequest, plan: Mapping[str, Any]) -> None:
    """Each HPO worker step gets ``gpus_per_worker`` GPUs; a K-rank trial needs K of them."""
    assert request.hpo is not None
    ranks = int(plan.get("ranks_per_trial") or 1)
    have = request.hpo.gpus_per_worker
    if have and ranks > have:
        where = "array task" if request.array else "node"
        raise UsageError(
            f"the study runs {ranks}-rank trials, but each HPO worker gets {have} GPU(s) "
            f"({request.hpo.workers_per_node} worker(s) per {where}, {request.gpus_per_node} GPU(s))",
            f"ask for --gpus-per-node {ranks * request.hpo.workers_per_node}, or fewer workers "
            "(submit.hpo_workers)",
        )


def sbatch_command(request: JobRequest) -> list[str]:
    """The sbatch call for ``request``; dependencies go here, not into the script (the parent's id
    exists only now, and the script stays the same for a resubmission)."""
    return ["sbatch", "--parsable", *dependency_args(request.after), str(request.script_path)]


def study_environment(request: JobRequest) -> dict[str, str]:
    """The environment the job's HPO steps resolve their configuration in (as the script sets it)."""
    env = {**os.environ, "MLPFCTL_RUN__OUT_DIR": str(request.run_dir), "MLPFCTL_HPO_NO_DEVICE_PROBE": "1"}
    if request.hpo is not None and request.hpo.pgpass_file is not None:
        env["PGPASSFILE"] = str(request.hpo.pgpass_file)
    return env


def create_study(request: JobRequest) -> None:
    """Create the study of an HPO array job (or reuse it) before any task can start: the tasks
    only run ``hpo worker``, so no two of them race to create it. Runs ``mlpfctl hpo create`` with
    the job's arguments, in the job's directory and environment, with this installation."""
    assert request.hpo is not None
    argv = [sys.executable, "-m", "mlpfctl", *request.hpo.create_command]
    proc = subprocess.run(
        argv,
        cwd=request.workdir,
        env=study_environment(request),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        error = next((line[7:] for line in lines if line.startswith("error: ")), lines[-1] if lines else "")
        hint = next((line[6:] for line in lines if line.startswith("hint: ")), None)
        raise RuntimeFailure(
            f"could not create study '{request.hpo.study}' for the array job: {error}",
            hint or "the array's tasks need the study to exist; check the storage (mlpfctl hpo status)",
        )


def parse_job_id(stdout: str) -> str:
    """``sbatch --parsable`` prints ``ID`` or ``ID;CLUSTER``."""
    job_id = stdout.strip().split(";", 1)[0]
    if not job_id.isdigit():
        raise RuntimeFailure(
            f"sbatch printed {stdout.strip()!r} instead of a job id", "check the sbatch output"
        )
    return job_id


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
        if request.hpo is not None and request.array is not None:
            create_study(request)
        result = runner(sbatch_command(request))
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
    record: dict[str, Any] = {
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
    if request.array is not None:
        record["array"] = request.array.sbatch
        record["array_size"] = request.array.size
    if request.after:
        record["after"] = [str(d) for d in request.after]
    append_record(registry, record)
    return record
