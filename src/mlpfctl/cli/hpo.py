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
    resolved = load_config(
        config,
        sets,
        {
            "hpo.space": ("--space", space),
            "hpo.sampler": ("--sampler", sampler),
            "hpo.scheduler": ("--scheduler", scheduler),
            "hpo.trials": ("--trials", trials),
            "hpo.workers": ("--workers", workers),
            "hpo.ranks_per_trial": ("--ranks-per-trial", ranks_per_trial),
            "hpo.storage": ("--storage", storage),
            "hpo.study": ("--study", study),
            "hpo.objective": ("--objective", objective),
            "hpo.min_resource": ("--min-resource", min_resource),
            "hpo.max_resource": ("--max-resource", max_resource),
            "hpo.reduction_factor": ("--eta", eta),
            "hpo.seed": ("--seed", seed),
        },
    )
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
