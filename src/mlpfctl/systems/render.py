"""Render a job script: a pure function of a system profile and a job request.

Templates live in ``templates/slurm/<kind>.sh.j2`` and use ``jinja2.StrictUndefined`` (a typo
in a template is an error, not an empty string). Every value a user typed goes through the
``q`` filter (``shlex.quote``), which also suits ``#SBATCH`` lines: sbatch strips the same
quotes and treats a quoted ``#`` as text. Control characters are refused earlier (request.py),
so no value can end a comment line and start a command.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from mlpfctl.errors import EXIT_CHECKPOINTED
from mlpfctl.resources import resource_dir
from mlpfctl.systems.profiles import SystemProfile
from mlpfctl.systems.request import JobRequest

TEMPLATES = {
    "train": "train.sh.j2",
    "check": "train.sh.j2",
    "hpo": "hpo.sh.j2",
    "scale-bench": "scale-bench.sh.j2",
}


def _shjoin(items: Iterable[Any]) -> str:
    return " ".join(shlex.quote(str(item)) for item in items)


def _slurm_filename(path: str) -> str:
    # sbatch expands %j, %x, ... in --output; a literal % in a user's path must stay literal
    return path.replace("%", "%%")


def context(profile: SystemProfile, request: JobRequest) -> dict[str, Any]:
    part = request.partition
    whole_node = request.gpus_per_node == part.gpus_per_node and request.gpus_per_node > 0
    runner: list[str] = []
    if request.container:
        runner = [*shlex.split(profile.software.container_exec), request.container]
    threads_per_proc = request.cpus_per_task
    if request.hpo is not None:  # one task runs the driver's local workers
        threads_per_proc = max(1, request.cpus_per_task // request.hpo.workers_per_node)
    elif request.tasks_per_node < request.procs_per_node:  # torchrun: several processes per task
        threads_per_proc = max(1, request.cpus_per_task // request.procs_per_node)
    return {
        "kind": request.kind,
        "kind_template": TEMPLATES[request.kind],
        "system": profile.name,
        "title": profile.title,
        "job_name": request.job_name,
        "sbatch_partition": part.sbatch_partition,
        "qos": request.qos or "",
        "account": request.account or "",
        "constraint": profile.constraint,
        "nodes": request.nodes,
        "tasks_per_node": request.tasks_per_node,
        "procs_per_node": request.procs_per_node,
        "cpus_per_task": request.cpus_per_task,
        "gpus_per_node": request.gpus_per_node,
        "gpu_request": profile.gpu_request,
        "mem": part.mem if whole_node else "",
        "exclusive": part.exclusive,
        "time": request.time,
        "output": _slurm_filename(str(request.run_dir)) + "/slurm-%j.out",
        "warning_s": request.warning_s,
        "requeue": request.kind in ("train", "hpo"),
        "max_requeues": request.max_requeues,
        "checkpointed": EXIT_CHECKPOINTED,
        "sbatch_extra": list(profile.sbatch),
        "module_purge": profile.software.module_purge,
        "module_use": list(profile.software.module_use),
        "modules": list(profile.software.modules),
        "setup_lines": list(profile.software.setup),
        "python": request.python,
        "runner": runner,
        "run_dir": str(request.run_dir),
        "omp_threads": threads_per_proc,
        "env": sorted(profile.env.items()),
        "miopen": profile.miopen_cache,
        "node_local": profile.node_local_cache or "/tmp",
        "master_addr_suffix": profile.master_addr_suffix,
        "launcher": request.launcher,
        # mlpfctl train checkpoints on SIGUSR1; torchrun and the HPO workers act on SIGTERM
        "stop_signal": "USR1" if request.launcher == "srun" and request.kind != "hpo" else "TERM",
        "cpu_bind": request.cpu_bind,
        "srun_extra": list(profile.srun),
        "entry_module": request.entry_module,
        "command": list(request.command),
        "hpo": request.hpo,
        "scale_points": list(request.scale_points),
    }


def render(profile: SystemProfile, request: JobRequest) -> str:
    """The job script text for ``request`` on ``profile``."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(resource_dir("templates") / "slurm"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    env.filters["shjoin"] = _shjoin
    template = env.get_template(TEMPLATES[request.kind])
    return template.render(context(profile, request))
