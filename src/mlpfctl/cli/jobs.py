"""``mlpfctl jobs``, ``mlpfctl cancel``, ``mlpfctl logs``: the jobs ``mlpfctl submit`` recorded."""

from __future__ import annotations

from typing import Annotated

import typer

from mlpfctl.cli.common import ConfigOpt, JsonOpt, SetOpt, load_config


def jobs(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show the last N jobs.")] = 20,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List submitted jobs with their SLURM state."""
    from rich.table import Table

    from mlpfctl.console import out, print_json
    from mlpfctl.systems import jobs as service
    from mlpfctl.systems.runner import default_runner
    from mlpfctl.systems.submit import registry_path

    registry = registry_path(load_config(config, sets).config)
    rows = list(service.status(service.read_records(registry)[-limit:], default_runner()))
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"jobs ({registry})")
    for column in ("job", "name", "kind", "system", "state", "exit", "elapsed", "restarts", "run dir"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["job_id"]),
            r["job_name"],
            r["kind"],
            r["system"],
            r["state"],
            r["exit_code"],
            r["elapsed"],
            str(r["restarts"]),
            r["run_dir"],
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

    registry = registry_path(load_config(config, sets).config)
    outcome = service.cancel(job_id, default_runner(), registry)
    if outcome == "cancelled":
        if service.find_record(registry, job_id) is None:
            log(f"note: job {job_id} was not submitted by mlpfctl (not in {registry})")
        log(f"cancelled {job_id}")
    else:
        log(f"job {job_id} already ended ({outcome}): nothing to cancel")


def logs(
    job_id: Annotated[str, typer.Argument(help="SLURM job id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    config: ConfigOpt = None,
    sets: SetOpt = None,
) -> None:
    """Print a job's output file."""
    import sys
    import time

    from mlpfctl.errors import UsageError
    from mlpfctl.systems import jobs as service
    from mlpfctl.systems.runner import default_runner
    from mlpfctl.systems.submit import registry_path

    runner = default_runner()
    path = service.log_path(job_id, registry_path(load_config(config, sets).config), runner)
    offset = 0
    while True:
        if path.exists():
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            offset += len(chunk)
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()
        elif not follow:
            raise UsageError(
                f"job {job_id} has no output file yet ({path})", "is it still pending? see `mlpfctl jobs`"
            )
        if not follow or service.job_info(job_id, runner).get("JobState", "UNKNOWN") in service.TERMINAL | {
            "UNKNOWN"
        }:
            if follow and path.exists():  # what was written between the last read and the end
                with path.open("rb") as handle:
                    handle.seek(offset)
                    sys.stdout.write(handle.read().decode("utf-8", errors="replace"))
            return
        time.sleep(1.0)


def register(app: typer.Typer) -> None:
    app.command("jobs")(jobs)
    app.command("cancel")(cancel)
    app.command("logs")(logs)
