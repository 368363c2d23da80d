"""``mlpfctl jobs``, ``mlpfctl cancel``, ``mlpfctl logs``: the jobs ``mlpfctl submit`` recorded."""

from __future__ import annotations

from typing import Annotated

import typer

from mlpfctl.cli.common import ConfigOpt, JsonOpt, SetOpt, load_config


def jobs(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show the last N jobs.")] = 20,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List submitted jobs with their SLURM state (one scontrol call, sacct fallback).

    Jobs SLURM has forgotten are looked up with sacct or in their log; final states are
    remembered in the registry."""
    from rich.table import Table

    from mlpfctl.console import out, print_json
    from mlpfctl.systems import jobs as service
    from mlpfctl.systems.runner import default_runner
    from mlpfctl.systems.submit import registry_path

    registry = registry_path(load_config(config, sets).config)
    rows = list(service.status(service.read_records(registry)[-limit:], default_runner(), registry))
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"jobs ({registry})")
    columns = ("job", "name", "kind", "system", "state", "exit", "elapsed", "restarts", "tasks / reason")
    for column in (*columns, "run dir"):
        table.add_column(column)
    for r in rows:
        job = str(r["job_id"]) + (f" [{r['array']}]" if r.get("array") else "")
        if r.get("after"):
            job += f" after {','.join(r['after'])}"
        table.add_row(
            job,
            r.get("job_name", ""),
            r.get("kind", ""),
            r.get("system", ""),
            r["state"],
            r["exit_code"],
            r["elapsed"],
            str(r["restarts"]),
            r["reason"] if r["reason"] not in ("None", "") else "",
            r.get("run_dir", ""),
        )
    out.print(table)


def cancel(
    job_id: Annotated[str, typer.Argument(help="SLURM job id.")],
    config: ConfigOpt = None,
    sets: SetOpt = None,
) -> None:
    """Cancel a job (scancel)."""
    from mlpfctl.console import log
    from mlpfctl.systems import jobs as service
    from mlpfctl.systems.runner import default_runner
    from mlpfctl.systems.submit import registry_path

    service.check_job_id(job_id)
    registry = registry_path(load_config(config, sets).config)
    outcome = service.cancel(job_id, default_runner(), registry)
    if outcome == "cancelled":
        if service.find_record(registry, job_id) is None:
            log(f"note: job {job_id} was not submitted by mlpfctl (not in {registry})")
        log(f"cancelled {job_id}")
    else:
        log(f"job {job_id} already ended ({outcome}): nothing to cancel")


def logs(
    job_id: Annotated[str, typer.Argument(help="SLURM job id (an array's: every task; ID_N: task N).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    config: ConfigOpt = None,
    sets: SetOpt = None,
) -> None:
    """Print a job's output file (an array job's: each task's lines, prefixed with its task)."""
    import sys
    import time

    from mlpfctl.errors import UsageError
    from mlpfctl.systems import jobs as service
    from mlpfctl.systems.runner import default_runner
    from mlpfctl.systems.submit import registry_path

    runner = default_runner()
    registry = registry_path(load_config(config, sets).config)
    paths = service.log_paths(job_id, registry, runner)
    record = service.find_record(registry, job_id)
    whole_array = record if record is not None and record.get("array") and "_" not in job_id else None
    follower = service.LogFollower(paths, array=whole_array)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if not follow:
        if not any(path.exists() for path in (service.log_files(whole_array) if whole_array else paths)):
            raise UsageError(
                f"job {job_id} has no output file yet ({paths[0] if paths else 'none'})",
                "is it still pending? see `mlpfctl jobs`",
            )
        follower.poll(write, final=True)
        return
    while True:
        follower.poll(write)
        # ended when every task has (or SLURM no longer knows the job)
        if all(info.get("JobState") in service.TERMINAL for info in service.job_lines(job_id, runner)):
            follower.poll(write, final=True)  # what was written between the last read and the end
            return
        time.sleep(1.0)


def register(app: typer.Typer) -> None:
    app.command("jobs")(jobs)
    app.command("cancel")(cancel)
    app.command("logs")(logs)
