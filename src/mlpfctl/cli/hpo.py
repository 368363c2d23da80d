"""``mlpfctl hpo run|worker|status|report``: distributed hyperparameter optimisation with Optuna."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from mlpfctl.cli.common import ConfigOpt, DryRunOpt, JsonOpt, SetOpt, load_config, path_option

app = typer.Typer(
    help="Hyperparameter optimisation: Optuna search with SHA/Hyperband/ASHA/RASDA.", no_args_is_help=True
)

StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Study storage URL: sqlite:///PATH.db, journal:///PATH.log or "
        "postgresql+psycopg://USER:PW@HOST/DB "
        "(default: sqlite under run.out_dir). Prefer MLPFCTL_HPO__STORAGE for URLs with passwords.",
        show_default=False,
    ),
]
StudyOpt = Annotated[str | None, typer.Option("--study", help="Study name (hpo.study).", show_default=False)]


def _storage(config: Any, storage: str | None) -> Any:
    from mlpfctl.hpo.storage import default_url, parse_url

    url = storage or config.hpo.storage or default_url(config.run.out_dir, config.hpo.study)
    return parse_url(url)


# hpo run's study options: parameter -> (config key, flag). The submit planner reads job arguments
# through the same table (resolve_run_args), so both see one campaign.
RUN_FLAGS = {
    "space": ("hpo.space", "--space"),
    "sampler": ("hpo.sampler", "--sampler"),
    "scheduler": ("hpo.scheduler", "--scheduler"),
    "trials": ("hpo.trials", "--trials"),
    "workers": ("hpo.workers", "--workers"),
    "ranks_per_trial": ("hpo.ranks_per_trial", "--ranks-per-trial"),
    "storage": ("hpo.storage", "--storage"),
    "study": ("hpo.study", "--study"),
    "objective": ("hpo.objective", "--objective"),
    "min_resource": ("hpo.min_resource", "--min-resource"),
    "max_resource": ("hpo.max_resource", "--max-resource"),
    "eta": ("hpo.reduction_factor", "--eta"),
    "seed": ("hpo.seed", "--seed"),
}


def run_overrides(params: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    return {key: (flag, params.get(name)) for name, (key, flag) in RUN_FLAGS.items()}


def resolve_run_args(args: list[str]) -> Any:
    """The configuration that ``mlpfctl hpo run ARGS`` would resolve (read by the submit planner)."""
    import typer.main
    from typer._click import exceptions as click_exceptions

    from mlpfctl.errors import UsageError

    command: Any = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    try:
        with command.make_context("run", list(args)) as ctx:
            params = dict(ctx.params)
    except click_exceptions.ClickException as exc:
        raise UsageError(f"hpo arguments: {exc.format_message()}", "see: mlpfctl hpo run --help") from None
    return load_config(params.get("config"), params.get("sets"), run_overrides(params)).config


@app.command("run")
def run(
    ctx: typer.Context,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    space: Annotated[
        str | None, typer.Option("--space", help="Search-space preset (mlpf, quadratic) or TOML file.")
    ] = None,
    sampler: Annotated[
        str | None, typer.Option("--sampler", help="grid, random, qmc, tpe, gp, cmaes, nsga2.")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="none, median, sha, hyperband, asha, rasda.")
    ] = None,
    trials: Annotated[int | None, typer.Option("--trials", help="Configurations to evaluate.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Local worker processes.")] = None,
    ranks_per_trial: Annotated[
        int | None, typer.Option("--ranks-per-trial", help="DDP ranks per trial.")
    ] = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    objective: Annotated[
        str | None, typer.Option("--objective", help="Generic objective module:function or file.py:function.")
    ] = None,
    min_resource: Annotated[
        int | None,
        typer.Option(
            "--min-resource", help="Bottom-rung steps r (default: derived from R, eta, train.val_every)."
        ),
    ] = None,
    max_resource: Annotated[
        int | None, typer.Option("--max-resource", help="Top-rung steps R (default: train.steps).")
    ] = None,
    eta: Annotated[int | None, typer.Option("--eta", help="Reduction factor eta.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampler seed.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an existing study (after a kill).")
    ] = False,
    report_dir: Annotated[
        Path | None,
        path_option("--report", help="Write the report (plots, best config) here when done."),
    ] = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Create (or --resume) a study and run it with local workers pulling trials from the storage.

    As ``mlpfctl hpo create`` (same options): only create the study, or reuse it if it exists (a
    requeued SLURM job); the job's ``mlpfctl hpo worker`` steps then do the work.
    """
    params = {k: v for k, v in locals().items() if k in RUN_FLAGS}
    resolved = load_config(config, sets, run_overrides(params))
    from mlpfctl.console import out, print_json
    from mlpfctl.hpo.driver import RunRequest, check_inputs, run_driver
    from mlpfctl.hpo.settings import StudySettings
    from mlpfctl.paths import check_output_dir

    cfg = resolved.config
    spec = _storage(cfg, None)
    create_only = ctx.info_name == "create"
    request = RunRequest(
        spec,
        cfg.hpo.study,
        StudySettings.from_config(cfg, cfg.hpo.study),
        cfg.hpo.workers,
        resume or create_only,
        default_storage=not cfg.hpo.storage,
    )
    if dry_run:
        # A plan only: the storage and the data may exist only where the job will run (mlpfctl
        # submit dry-runs a job's command on the login node), so they are checked below.
        plan = request.describe()
        if as_json:
            print_json(plan)
        else:
            for key, value in plan.items():
                out.print(f"{key}: {value}")
        return
    check_inputs(request)  # before anything is created or any worker starts
    if report_dir is not None:
        check_output_dir(report_dir, "--report")
    if create_only:
        from mlpfctl.hpo.driver import prepare_study

        prepare_study(request)
        out.print(cfg.hpo.study)
        return
    result = run_driver(request)
    _show(spec.url, cfg.hpo.study, report_dir, as_json, top=10)
    del result


app.command("create", help="Create the study (or reuse it) without running workers: the SLURM driver step.")(
    run
)


@app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    worker_index: Annotated[
        int | None,
        typer.Option(
            "--worker-index", help="Seeds this worker's sampler (default: SLURM_PROCID or array task id)."
        ),
    ] = None,
    max_jobs: Annotated[
        int | None, typer.Option("--max-jobs", min=1, help="Stop after this many jobs.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Join an existing study and work on it until it is done (what SLURM job steps run).

    The search settings come from the study itself; other study options (--space, --trials, ...)
    are accepted so that a job can pass one argument list to create and worker, and are ignored.
    """
    from mlpfctl.hpo.lifetime import bind_to_driver

    bind_to_driver()  # first: a worker of a driver that is already gone must not start a trial
    resolved = load_config(
        config, sets, {"hpo.storage": ("--storage", storage), "hpo.study": ("--study", study)}
    )
    from mlpfctl.console import print_json
    from mlpfctl.hpo.worker import WorkerRequest, run_worker

    cfg = resolved.config
    index = worker_index
    if index is None:
        # Job steps started with 'srun --ntasks=1' all have SLURM_PROCID=0: the step id tells them
        # apart, so their samplers get different seeds.
        env = os.environ
        index = int(
            env.get("SLURM_ARRAY_TASK_ID")
            or env.get("SLURM_STEP_ID")
            or env.get("SLURM_PROCID")
            or os.getpid()
        )
    if ctx.args:
        from mlpfctl.console import log

        log(f"worker: ignoring {' '.join(ctx.args)} (the study's stored settings apply)")
    result = run_worker(WorkerRequest(_storage(cfg, None), cfg.hpo.study, index, max_jobs))
    if as_json:
        print_json(result.__dict__)


# status and report accept (and ignore) a job's study options, like worker: a SLURM job polls
# 'hpo status <the run arguments>' until the driver has created the study.
_LENIENT = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command("status", context_settings=_LENIENT)
def status(
    config: ConfigOpt = None,
    sets: SetOpt = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows in the best-configurations table.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Trial counts per state and rung, and the best configurations so far."""
    resolved = load_config(
        config, sets, {"hpo.storage": ("--storage", storage), "hpo.study": ("--study", study)}
    )
    cfg = resolved.config
    _show(_storage(cfg, None).url, cfg.hpo.study, None, as_json, top)


@app.command("report", context_settings=_LENIENT)
def report(
    config: ConfigOpt = None,
    sets: SetOpt = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    out_dir: Annotated[
        Path | None,
        path_option("--out", help="Report directory (default: <hpo workdir>/report)."),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows in the best-configurations table.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Best trials, parameter importances, PNG plots and the best config as a train TOML."""
    resolved = load_config(
        config, sets, {"hpo.storage": ("--storage", storage), "hpo.study": ("--study", study)}
    )
    cfg = resolved.config
    from mlpfctl.hpo import report as rep
    from mlpfctl.paths import check_output_dir

    if out_dir is not None:
        check_output_dir(out_dir, "--out")
    url = _storage(cfg, None).url
    _, settings = rep.load(url, cfg.hpo.study)
    _show(url, cfg.hpo.study, out_dir or Path(settings.workdir) / "report", as_json, top)


def _show(url: str, study_name: str, report_dir: Path | None, as_json: bool, top: int) -> None:
    from mlpfctl.console import log, print_json
    from mlpfctl.hpo import report as rep

    study, settings = rep.load(url, study_name)
    if report_dir is not None:
        info = rep.write_report(study, settings, report_dir)
        log(f"report written to {report_dir} (best config: {info.get('best_config', 'none yet')})")
    else:
        info = rep.summary(study, settings)
    rows = rep.config_rows(study, settings)
    if as_json:
        info["top"] = [r.as_dict() for r in rows[:top]]
        print_json(info)
    else:
        rep.print_summary(info, rows, top)


def _seconds(flag: str, text: str) -> Any:
    return typer.Option(flag, min=0.0, help=text, show_default=False)


@app.command("simulate")
def simulate(
    sources: Annotated[
        list[str] | None,
        typer.Option(
            "--from",
            help="Recorded study to learn curves and job times from (repeatable).",
            show_default=False,
        ),
    ] = None,
    storages: Annotated[
        list[str] | None,
        typer.Option(
            "--storage",
            help="Storage URL of the --from studies: one for all, or one per study (default: hpo.storage).",
            show_default=False,
        ),
    ] = None,
    schedulers: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Comma-separated: none, sha, hyperband, asha, rasda (default: the study's).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[str, typer.Option("--workers", help="Comma-separated worker counts.")] = "1,4,16,64",
    trials: Annotated[
        int | None,
        typer.Option("--trials", min=1, help="Configurations (default: the study's).", show_default=False),
    ] = None,
    min_resource: Annotated[
        int | None, typer.Option("--min-resource", min=1, help="Bottom-rung steps r.", show_default=False)
    ] = None,
    max_resource: Annotated[
        int | None, typer.Option("--max-resource", min=1, help="Top-rung steps R.", show_default=False)
    ] = None,
    eta: Annotated[
        int | None, typer.Option("--eta", min=2, help="Reduction factor eta.", show_default=False)
    ] = None,
    ranks_per_trial: Annotated[
        int | None, typer.Option("--ranks-per-trial", min=1, help="Ranks per trial.", show_default=False)
    ] = None,
    max_ranks_per_trial: Annotated[
        int | None,
        typer.Option(
            "--max-ranks-per-trial", min=1, help="rasda: most ranks a trial grows to.", show_default=False
        ),
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Replays per point (uncertainties).")] = 20,
    draw: Annotated[
        str, typer.Option("--draw", help="bootstrap (recorded configurations) or model (fitted curve model).")
    ] = "bootstrap",
    trend: Annotated[
        bool,
        typer.Option("--trend/--no-trend", help="Keep the recorded sampler's improvement over the campaign."),
    ] = True,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the replays.")] = 0,
    target: Annotated[
        float | None,
        typer.Option(
            "--target", help="Loss to reach (default: reached in half the replays).", show_default=False
        ),
    ] = None,
    timing: Annotated[
        str,
        typer.Option(
            "--timing",
            help="Job-time factors: noise (the recorded scatter), load (the recorded machine load over "
            "the campaign's time, then the scatter left), fixed (none).",
        ),
    ] = "noise",
    step_s: Annotated[
        float | None, _seconds("--step-s", "Seconds per training step (default: fitted).")
    ] = None,
    startup_s: Annotated[
        float | None, _seconds("--startup-s", "Start-up seconds per job (default: fitted).")
    ] = None,
    resume_s: Annotated[
        float | None, _seconds("--resume-s", "Extra seconds to resume a checkpoint (default: fitted).")
    ] = None,
    checkpoint_s: Annotated[
        float | None, _seconds("--checkpoint-s", "Extra seconds per paused job's checkpoint.")
    ] = None,
    dispatch_s: Annotated[
        float | None, _seconds("--dispatch-s", "Seconds between two jobs of a worker (default: measured).")
    ] = None,
    launch_s: Annotated[
        float | None, _seconds("--launch-s", "Campaign start-up seconds (driver, workers).")
    ] = None,
    rank_efficiency: Annotated[
        float | None,
        typer.Option(
            "--rank-efficiency",
            min=0.01,
            max=1.0,
            help="rasda: weak-scaling efficiency of extra ranks (default: measured, else 1).",
            show_default=False,
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Write simulate.json, .csv and .png here.", show_default=False),
    ] = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Predict an HPO campaign's wall time, GPU-hours and speed-up per scheduler and worker count.

    A discrete-event replay of the workers (no training), fed with the learning curves and job
    times recorded in earlier studies. Example:

    mlpfctl hpo simulate --from scale-w1 --storage sqlite:///sb/hpo-w1.db --scheduler asha,sha
    """
    from mlpfctl.cli.common import int_list
    from mlpfctl.console import err, out, print_json, warn
    from mlpfctl.errors import UsageError
    from mlpfctl.hpo import sim_plan, sim_report

    if not sources:
        raise UsageError("no study to simulate from", "give one or more: --from STUDY --storage URL")
    cfg = load_config(config, sets).config
    urls = list(storages or [])
    if not urls:
        from mlpfctl.hpo.storage import default_url

        urls = [cfg.hpo.storage or default_url(cfg.run.out_dir, s) for s in sources]
    elif len(urls) == 1:
        urls = urls * len(sources)
    elif len(urls) != len(sources):
        raise UsageError(
            f"{len(urls)} --storage URLs for {len(sources)} --from studies",
            "give one --storage for all studies, or one per --from",
        )
    names = tuple(s.strip() for s in (schedulers or "").split(",") if s.strip())
    request = sim_plan.SimRequest(
        sources=tuple(sim_plan.Source(u, s) for u, s in zip(urls, sources, strict=True)),
        schedulers=names,
        workers=tuple(int_list(workers, "--workers")),
        trials=trials,
        min_resource=min_resource,
        max_resource=max_resource,
        eta=eta,
        ranks_per_trial=ranks_per_trial,
        max_ranks_per_trial=max_ranks_per_trial,
        repeats=repeats,
        draw=draw,
        trend=trend,
        seed=seed,
        target=target,
        timing=timing,
        costs=sim_plan.CostOverrides(
            step_s, startup_s, resume_s, checkpoint_s, dispatch_s, launch_s, rank_efficiency
        ),
    )
    prepared = sim_plan.prepare(request)
    for note in prepared.notes:
        warn(note)
    if dry_run:
        plan = prepared.describe()
        if as_json:
            print_json(plan)
        else:
            for key, value in plan.items():
                out.print(f"{key}: {value}")
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    total = repeats * len(prepared.schedulers) * len(prepared.workers)
    with Progress(
        TextColumn("simulate"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("simulate", total=total)
        result = sim_plan.run(prepared, lambda n: progress.advance(task, n))
    written = sim_report.write(result, out_dir) if out_dir is not None else []
    if as_json:
        print_json(result.as_dict() | {"files": [str(p) for p in written]})
        return
    out.print(sim_report.render(result))
    for path in written:
        err.print(f"wrote {path}")


def submit_plan(request: Any, studies: list[str], storage: str | None) -> dict[str, Any]:
    """``mlpfctl submit --plan-from STUDY ... -- hpo``: log the job's campaign plan and return it."""
    from mlpfctl.console import log, warn
    from mlpfctl.errors import UsageError
    from mlpfctl.hpo.campaign_plan import plan_campaign
    from mlpfctl.hpo.sim_plan import Source
    from mlpfctl.hpo.storage import default_url

    if request.hpo is None:
        raise UsageError(
            f"--plan-from plans HPO campaigns, not {request.kind} jobs",
            "drop --plan-from, or submit '-- hpo ...'",
        )
    cfg = resolve_run_args(list(request.hpo.driver_command[2:]))
    sources = [Source(storage or default_url(cfg.run.out_dir, study), study) for study in studies]
    plan = plan_campaign(
        cfg.hpo, request.hpo.workers, request.nodes * request.gpus_per_node, request.time_s, sources
    )
    for line in plan.lines():
        log(line)
    for message in plan.warnings:
        warn(message)
    return plan.as_dict()
