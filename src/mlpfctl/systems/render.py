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
from pathlib import Path
from typing import Any

from mlpfctl.errors import EXIT_CHECKPOINTED, ConfigError
from mlpfctl.resources import resource_dir
from mlpfctl.systems.profiles import SystemProfile
from mlpfctl.systems.request import JobRequest

TEMPLATES = {
    "train": "train.sh.j2",
    "check": "train.sh.j2",
    "hpo": "hpo.sh.j2",
    "scale-bench": "scale-bench.sh.j2",
    "data": "data.sh.j2",
}
# the same kinds as array jobs (request.ARRAY_KINDS): what one task runs
ARRAY_TEMPLATES = {"hpo": "hpo-array.sh.j2", "data": "data-array.sh.j2"}


def template_name(request: JobRequest) -> str:
    return (ARRAY_TEMPLATES if request.array else TEMPLATES)[request.kind]


def _shjoin(items: Iterable[Any]) -> str:
    return " ".join(shlex.quote(str(item)) for item in items)


def _slurm_filename(path: str) -> str:
    # sbatch expands %j, %x, ... in --output; a literal % in a user's path must stay literal
    return path.replace("%", "%%")


def context(profile: SystemProfile, request: JobRequest) -> dict[str, Any]:
    part = request.partition
    software = profile.software
    runner: list[str] = []
    modules = list(software.modules)
    if request.container:
        binds = [arg for path in request.container_binds for arg in ("--bind", path)]
        runner = [*shlex.split(software.container_exec), *binds, request.container]
        if software.container_modules is not None:
            modules = list(software.container_modules)
    cpus_per_proc = request.cpus_per_task
    if request.hpo is not None:  # one task runs the driver's local workers
        cpus_per_proc = max(1, request.cpus_per_task // request.hpo.workers_per_node)
    elif request.tasks_per_node < request.procs_per_node:  # torchrun: several processes per task
        cpus_per_proc = max(1, request.cpus_per_task // request.procs_per_node)
    # OpenMP threads on cores, not on hyperthreads where SLURM counts threads as CPUs (VEGA)
    threads_per_proc = max(1, cpus_per_proc // profile.threads_per_core)
    return {
        "kind": request.kind,
        "kind_template": template_name(request),
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
        "mem": part.mem if request.whole_node else "",
        "mem_per_gpu": request.mem_per_gpu or "",
        "exclusive": part.exclusive,
        "time": request.time,
        "output": _slurm_filename(str(request.run_dir)) + "/" + request.log_pattern,
        "array": request.array.sbatch if request.array else "",
        "array_size": request.array.size if request.array else 0,
        "warning_s": request.warning_s,
        "requeue": request.kind in ("train", "hpo"),
        "max_requeues": request.max_requeues,
        "checkpointed": EXIT_CHECKPOINTED,
        "sbatch_extra": [*profile.sbatch, *request.sbatch_args],
        "module_purge": software.module_purge,
        "module_use": list(software.module_use),
        "modules": modules,
        "setup_lines": list(software.setup),
        "python": request.python,
        "runner": runner,
        "container": request.container or "",
        "run_dir": str(request.run_dir),
        "workdir": str(request.workdir),
        "omp_threads": threads_per_proc,
        "cpus_per_proc": cpus_per_proc,
        "env": sorted(profile.env.items()),
        "miopen": profile.miopen_cache,
        "node_local": profile.node_local_cache or "/tmp",
        "master_addr_suffix": profile.master_addr_suffix,
        "launcher": request.launcher,
        "rdzv_local_addr": profile.rdzv_local_addr,
        "cpu_bind": request.cpu_bind,
        "srun_extra": list(profile.srun),
        "entry_module": request.entry_module,
        "command": list(request.command),
        "hpo": request.hpo,
        "scale_points": list(request.scale_points),
    }


def render(profile: SystemProfile, request: JobRequest) -> str:
    """The job script text for ``request`` on ``profile``; template faults are ``ConfigError``."""
    import jinja2

    try:
        text: str = (
            _environment(jinja2).get_template(template_name(request)).render(context(profile, request))
        )
        return text
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(
            f"job template '{exc.name}' is missing from {template_dir()}",
            "reinstall mlpfctl (pip install --force-reinstall mlpfctl) or restore the file",
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"job template {_where(exc.name or exc.filename, exc.lineno)} has a syntax error: {exc.message}",
            "fix the template (templates/slurm/*.sh.j2)",
        ) from None
    except Exception as exc:  # UndefinedError, or a Python error in a template expression
        name, line = _template_frame(exc)
        if name is None and not isinstance(exc, jinja2.TemplateError):
            raise  # not the template's fault
        detail = (
            exc.message if isinstance(exc, jinja2.TemplateError) else None
        ) or f"{type(exc).__name__}: {exc}"
        raise ConfigError(
            f"job template {_where(name, line)} failed: {detail}",
            "fix the template (templates/slurm/*.sh.j2), or report it if you did not change it",
        ) from None


def template_dir() -> Path:
    return resource_dir("templates") / "slurm"


def _where(name: str | None, line: int | None) -> str:
    where = f"'{Path(name).name}'" if name else "(unnamed)"
    return f"{where} line {line}" if line else where


def _template_frame(exc: BaseException) -> tuple[str | None, int | None]:
    """The innermost template file and line of a rendering error (jinja2 rewrites the traceback
    so that template frames carry the template's file name and line)."""
    found: tuple[str | None, int | None] = (None, None)
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _environment(jinja2: Any) -> Any:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir()),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    env.filters["shjoin"] = _shjoin
    return env
