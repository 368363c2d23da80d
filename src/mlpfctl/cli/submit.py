"""``mlpfctl submit``: check, render and submit a SLURM job for a system profile."""

from __future__ import annotations

from typing import Annotated

import typer

from mlpfctl.cli.common import ConfigOpt, DryRunOpt, JsonOpt, SetOpt, load_config


def submit(
    job: Annotated[
        list[str] | None,
        typer.Argument(
            help="After --: the job kind (train, hpo, scale-bench, check, data) and its arguments.",
            show_default=False,
        ),
    ] = None,
    system: Annotated[
        str | None, typer.Option("--system", "-s", help="System profile (mlpfctl systems).")
    ] = None,
    account: Annotated[str | None, typer.Option("--account", "-A", help="Account/project to charge.")] = None,
    nodes: Annotated[int | None, typer.Option("--nodes", "-N", help="Number of nodes.")] = None,
    time: Annotated[
        str | None, typer.Option("--time", "-t", help="Wall time, e.g. 04:00:00 or 1-00:00:00.")
    ] = None,
    partition: Annotated[
        str | None, typer.Option("--partition", "-p", help="Partition of the profile.")
    ] = None,
    gpus_per_node: Annotated[
        int | None, typer.Option("--gpus-per-node", help="GPUs per node (0: CPU job).")
    ] = None,
    cpus_per_task: Annotated[int | None, typer.Option("--cpus-per-task", help="CPUs per task.")] = None,
    job_name: Annotated[str | None, typer.Option("--job-name", "-J", help="SLURM job name.")] = None,
    launcher: Annotated[str | None, typer.Option("--launcher", help="srun, torchrun or auto.")] = None,
    array: Annotated[
        str | None,
        typer.Option(
            "--array",
            help="N array tasks, or N%M with at most M at once (hpo: the study is created now, each "
            "task runs hpo worker steps on its share of a node).",
            show_default=False,
        ),
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option(
            "--after",
            help="Start after JOB succeeded (JOB or JOB:ok) or ended (JOB:any); repeatable. A failed "
            "parent cancels a JOB:ok dependant.",
            show_default=False,
        ),
    ] = None,
    sbatch_args: Annotated[
        list[str] | None,
        typer.Option(
            "--sbatch-arg",
            help="A site option for sbatch, e.g. --sbatch-arg=--reservation=R (repeatable); options "
            "mlpfctl controls are refused with the reason.",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Stream the job's log (stderr) and exit with the job's exit code."),
    ] = False,
    plan_from: Annotated[
        list[str] | None,
        typer.Option(
            "--plan-from",
            help="hpo: predict the campaign's wall time and GPU-hours from this recorded study "
            "(repeatable; mlpfctl hpo simulate).",
            show_default=False,
        ),
    ] = None,
    plan_storage: Annotated[
        str | None,
        typer.Option("--plan-storage", help="Storage URL of the --plan-from studies.", show_default=False),
    ] = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Submit `train`, `hpo`, `scale-bench`, `check` or `data` as a SLURM job.

    mlpfctl submit --system lumi --account project_465000000 --nodes 2 -- train --steps 1000

    mlpfctl submit --array 16%4 -- hpo --trials 64      (16 small tasks, 4 at once, one study)

    mlpfctl submit --after 12345 --wait -- train ...    (after job 12345 succeeded; wait for the end)

    mlpfctl submit --array 8 -- data generate --events 1000000 --out DIR   (8 tasks, then the manifest)
    """
    from mlpfctl.console import log, out, print_json
    from mlpfctl.errors import UsageError
    from mlpfctl.systems import runner as runner_mod
    from mlpfctl.systems import submit as service

    if not job:
        raise UsageError(
            "no job given", "write: mlpfctl submit [OPTIONS] -- {train|hpo|scale-bench|check|data} [ARGS...]"
        )
    flags = {
        "submit.system": ("--system", system),
        "submit.account": ("--account", account),
        "submit.nodes": ("--nodes", nodes),
        "submit.time": ("--time", time),
        "submit.partition": ("--partition", partition),
        "submit.gpus_per_node": ("--gpus-per-node", gpus_per_node),
        "submit.cpus_per_task": ("--cpus-per-task", cpus_per_task),
        "submit.job_name": ("--job-name", job_name),
        "submit.launcher": ("--launcher", launcher),
        "submit.array": ("--array", array),
        "submit.after": ("--after", after or None),
        "submit.sbatch_args": ("--sbatch-arg", sbatch_args or None),
    }
    resolved = load_config(config, sets, flags)
    runner = runner_mod.default_runner()
    plan = service.plan(resolved.config, job[0], job[1:], runner)
    request = plan.request
    campaign = None
    if plan_from:  # the campaign simulator's plan (owned by the sim engineer)
        from mlpfctl.cli.hpo import submit_plan

        campaign = submit_plan(request, plan_from, plan_storage)
    if dry_run:
        for path in request.secret_files:
            log(f"would write the storage password to {path} (mode 0600), never into the script")
        if request.hpo is not None and request.array is not None:
            log(f"would create the study: mlpfctl {' '.join(request.hpo.create_command)}")
        log(f"would run: {' '.join(service.sbatch_command(request))}")
        then = service.follow_up(plan, "ARRAY_JOB_ID")
        if then is not None:
            log(f"then: {' '.join(service.sbatch_command(then.request))} (writes the manifest)")
        if as_json:
            extra = {"campaign_plan": campaign} if campaign else {}
            print_json(
                {
                    "dry_run": True,
                    "script_path": str(request.script_path),
                    "sbatch": service.sbatch_command(request),
                    "script": plan.script,
                }
                | extra
            )
        else:
            out.file.write(plan.script)
            out.file.flush()
        return
    registry = service.registry_path(resolved.config)
    record = service.submit(plan, runner, registry)
    if not as_json:
        log(
            f"submitted {request.kind} job to {request.system} ({request.partition.name}); "
            f"script {request.script_path}"
        )
        out.print(record["job_id"])
    then = service.follow_up(plan, record["job_id"])
    if then is not None:  # a data array's manifest step, after every task
        record = {**service.submit(then, runner, registry), "array_job_id": record["job_id"]}
        if not as_json:
            log(f"then job {record['job_id']} writes the manifest ({then.request.script_path})")
            out.print(record["job_id"])
    if wait:
        import sys

        from mlpfctl.systems import jobs as jobs_mod

        def write(text: str) -> None:
            sys.stderr.write(text)
            sys.stderr.flush()

        ended = jobs_mod.wait(record, runner, registry, write)
        code = jobs_mod.job_exit_status(ended)
        log(f"job {record['job_id']} ended: {ended.state}, exit code {code}")
        if as_json:
            print_json({**record, **ended.as_row()})
        raise typer.Exit(code)
    if as_json:
        print_json(record)
