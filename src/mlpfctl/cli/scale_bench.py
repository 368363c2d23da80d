"""``mlpfctl scale-bench``: strong/weak training scaling, HPO scaling, scaling-law fits, reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlpfctl.cli.common import ConfigOpt, DryRunOpt, JsonOpt, SetOpt, load_config, path_argument, path_option
from mlpfctl.cli.common import int_list as _ints
from mlpfctl.paths import check_output_dir

app = typer.Typer(
    help="Measure how training and HPO scale; fit loss against dataset size.", no_args_is_help=True
)

OutOpt = Annotated[
    Path,
    path_option("--out", "-o", help="Directory for the JSON records, CSV and PNG plots."),
]
DataOpt = Annotated[str | None, typer.Option("--data", help="Dataset (sets data.path).", show_default=False)]
BackendOpt = Annotated[
    str | None, typer.Option("--backend", help="auto, cpu, cuda, rocm, hpu, xpu.", show_default=False)
]


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _show(out_dir: Path, as_json: bool) -> None:
    from mlpfctl.bench.report import render_tables, write_report
    from mlpfctl.console import err, out, print_json

    tables, written = write_report(out_dir)
    if as_json:
        print_json({t.kind: t.rows for t in tables} | {"files": [str(p) for p in written]})
        return
    out.print(render_tables(tables))
    for path in written:
        err.print(f"wrote {path}")


@app.command("train")
def train_scaling(
    world_sizes: Annotated[str, typer.Option("--world-sizes", help="Comma-separated world sizes.")] = "1,2",
    mode: Annotated[
        str, typer.Option("--mode", help="strong (fixed global batch) or weak (fixed per rank).")
    ] = "strong",
    steps: Annotated[int, typer.Option("--steps", min=1, help="Timed steps per point.")] = 30,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed warm-up steps per point.")] = 5,
    comm_steps: Annotated[
        int, typer.Option("--comm-steps", min=0, help="Extra no-sync steps (comm share).")
    ] = 5,
    out_dir: OutOpt = Path("scale-bench"),
    data: DataOpt = None,
    backend: BackendOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Strong or weak training scaling over world sizes (local ranks, or the srun/torchrun job it is in)."""
    from mlpfctl.console import err, print_json
    from mlpfctl.errors import UsageError
    from mlpfctl.launch.runenv import RunEnv

    if mode not in ("strong", "weak"):
        raise UsageError(f"--mode {mode!r} is not strong or weak", "use --mode strong or --mode weak")
    sizes = _ints(world_sizes, "--world-sizes")
    check_output_dir(out_dir, "--out")
    resolved = load_config(
        config, sets, {"data.path": ("--data", data), "run.backend": ("--backend", backend)}
    )
    env = RunEnv.from_env()
    if env.is_distributed:
        sizes = [env.world_size]  # inside a SLURM step / torchrun: this process group is the point
    plan = {
        "mode": mode,
        "world_sizes": sizes,
        "steps": steps,
        "warmup": warmup,
        "comm_steps": comm_steps,
        "out": str(out_dir),
        "launcher": env.source if env.is_distributed else "local",
        "data": resolved.config.data.path,
        "backend": resolved.config.run.backend,
    }
    if dry_run:
        print_json(plan) if as_json else err.print(plan)
        return
    from mlpfctl.bench.records import BenchRecord
    from mlpfctl.bench.train_scaling import PointRequest, point_config, rank_main, run_point

    out_dir.mkdir(parents=True, exist_ok=True)
    for world in sizes:
        request = PointRequest(
            point_config(resolved.config, world, mode), world, mode, steps, warmup, comm_steps
        )
        if not env.is_main:
            rank_main(request)
            continue
        err.print(f"scale-bench train: {mode} scaling, world size {world}")
        metrics = rank_main(request) if env.is_distributed else run_point(request)
        settings: dict[str, Any] = {
            **plan,
            "max_elements_per_batch": request.config.data.max_elements_per_batch,
            "batch_events": request.config.train.batch_events,
        }
        BenchRecord(
            kind=f"train-{mode}",
            point={"world_size": world},
            metrics=metrics,
            settings=settings,
            backend=str(metrics.get("backend", "")),
            device=str(metrics.get("device", "")),
        ).write(out_dir)
    if env.is_main:
        _show(out_dir, as_json)


@app.command("scaling-law")
def scaling_law(
    train_events: Annotated[str, typer.Option("--train-events", help="Comma-separated training-set sizes.")],
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Training steps per size.")] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Seeds per size (error bars).")] = 1,
    extrapolate: Annotated[str, typer.Option("--extrapolate", help="Sizes to extrapolate the fit to.")] = "",
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Local ranks per training run.")] = 1,
    out_dir: OutOpt = Path("scale-bench"),
    data: DataOpt = None,
    backend: BackendOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train at several dataset sizes, fit L(D) = a*D^-b + c with uncertainties, plot and extrapolate."""
    from mlpfctl.bench.law import LawRequest, run_law
    from mlpfctl.console import err, print_json

    sizes = _ints(train_events, "--train-events")
    check_output_dir(out_dir, "--out")
    if len(sizes) < 4:
        from mlpfctl.errors import UsageError

        raise UsageError(
            f"--train-events {train_events!r}: a fit of L(D) = a*D^-b + c needs at least 4 distinct sizes",
            "example: --train-events 250,500,1000,2000",
        )
    extra = _ints(extrapolate, "--extrapolate") if extrapolate else []
    resolved = load_config(
        config,
        sets,
        {
            "data.path": ("--data", data),
            "run.backend": ("--backend", backend),
            "train.steps": ("--steps", steps),
        },
    )
    request = LawRequest(resolved.config, tuple(sizes), repeats, out_dir, nproc, tuple(extra))
    if dry_run:
        plan = {
            "train_events": sizes,
            "repeats": repeats,
            "steps": resolved.config.train.steps,
            "nproc": nproc,
            "out": str(out_dir),
            "extrapolate": extra,
        }
        print_json(plan) if as_json else err.print(plan)
        return
    out_dir.mkdir(parents=True, exist_ok=True)

    def note(size: int, repeat: int, loss: float) -> None:
        err.print(f"scaling-law: D={size} seed {repeat}: best validation loss {loss:.4f}")

    _records, fit = run_law(request, note)
    err.print(
        f"fit: L(D) = {fit.a:.4g} * D^-{fit.b:.3f} (+-{fit.b_err:.3f}) + {fit.c:.4f} (+-{fit.c_err:.4f})"
    )
    _show(out_dir, as_json)


@app.command("hpo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def hpo_scaling(
    ctx: typer.Context,
    workers: Annotated[str, typer.Option("--workers", help="Comma-separated worker counts.")] = "1,2",
    target: Annotated[
        float | None,
        typer.Option(
            "--target",
            help="Loss to reach (default: the worst final best of all points).",
            show_default=False,
        ),
    ] = None,
    out_dir: OutOpt = Path("scale-bench"),
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Wall-clock of one HPO campaign against the worker count; options after -- go to 'mlpfctl hpo run'.

    Example: mlpfctl scale-bench hpo --workers 1,2 -- --space mlpf-small --scheduler asha --trials 16
    """
    from mlpfctl.bench.hpo_scaling import HpoPoint, add_time_to_target, campaign_metrics, run_campaign
    from mlpfctl.bench.records import BenchRecord
    from mlpfctl.console import err, print_json
    from mlpfctl.errors import UsageError

    counts = _ints(workers, "--workers")
    check_output_dir(out_dir, "--out")
    run_args = tuple(ctx.args)
    banned = {"--workers", "--study", "--storage", "--resume"} & set(run_args)
    if banned:
        raise UsageError(
            f"{', '.join(sorted(banned))} cannot be passed to the campaigns",
            "scale-bench hpo sets the worker count, study and storage of each point itself",
        )
    points = [HpoPoint(n, out_dir, run_args) for n in counts]
    if dry_run:
        plan = {"workers": counts, "target": target, "out": str(out_dir), "hpo_run_args": list(run_args)}
        print_json(plan) if as_json else err.print(plan)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for point in points:
        err.print(f"scale-bench hpo: campaign with {point.workers} worker(s)")
        rows.append(campaign_metrics(point, run_campaign(point)))
    reached = add_time_to_target(rows, target)
    for row in rows:
        BenchRecord(
            kind="hpo",
            point={"workers": row["workers"]},
            metrics=row,
            settings={"hpo_run_args": list(run_args), "target": reached},
        ).write(out_dir)
    _show(out_dir, as_json)


@app.command("batch")
def batch_scan(
    global_batches: Annotated[
        str, typer.Option("--global-batches", help="Comma-separated global batch sizes (in --unit).")
    ] = "8,16,32,64,128",
    unit: Annotated[
        str, typer.Option("--unit", help="events (pad-to-longest batches) or elements (bucketed batches).")
    ] = "events",
    lr_scaling: Annotated[
        str, typer.Option("--lr-scaling", help="LR rules: none, linear, sqrt.")
    ] = "none,linear,sqrt",
    optimizer: Annotated[
        str, typer.Option("--optimizer", help="Optimisers: adamw, lamb, sgd.")
    ] = "adamw,lamb",
    ranks: Annotated[int, typer.Option("--ranks", min=1, help="Local DDP ranks per point.")] = 1,
    max_local: Annotated[
        int | None,
        typer.Option(
            "--max-local-batch",
            min=1,
            help="Largest per-rank micro-batch; beyond it gradients accumulate (default: 64 events, "
            "or data.max_elements_per_batch).",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        float, typer.Option("--epochs", help="Training epochs per point (same data for all).")
    ] = 2.0,
    warmup_fraction: Annotated[
        float,
        typer.Option("--warmup-fraction", help="Warm-up share of each point's steps (same data share)."),
    ] = 0.05,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance", help="Largest loss increase over the smallest batch that counts as kept."
        ),
    ] = 0.02,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Seeds per point (error bars).")] = 1,
    out_dir: OutOpt = Path("scale-bench"),
    data: DataOpt = None,
    backend: BackendOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Validation loss against the global batch per LR rule and optimiser: the generalisation gap.

    Example: mlpfctl scale-bench batch --global-batches 8,32,128 --lr-scaling none,sqrt --optimizer adamw,lamb
    """
    from mlpfctl.bench.batch_scan import BatchRequest, plan, run_scan, train_samples
    from mlpfctl.console import err, print_json

    check_output_dir(out_dir, "--out")
    resolved = load_config(
        config, sets, {"data.path": ("--data", data), "run.backend": ("--backend", backend)}
    )
    request = BatchRequest(
        config=resolved.config,
        global_batches=tuple(_ints(global_batches, "--global-batches")),
        unit=unit,
        rules=_names(lr_scaling),
        optimizers=_names(optimizer),
        ranks=ranks,
        max_local=max_local,
        epochs=epochs,
        warmup_fraction=warmup_fraction,
        tolerance=tolerance,
        repeats=repeats,
        out_dir=out_dir,
    )
    request.check()
    points = plan(request, train_samples(resolved.config, unit))
    if dry_run:
        rows = [p.__dict__ for p in points]
        summary = {"unit": unit, "out": str(out_dir), "data": resolved.config.data.path, "points": rows}
        print_json(summary) if as_json else err.print(summary)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    out_dir.mkdir(parents=True, exist_ok=True)
    with Progress(
        TextColumn("scale-bench batch"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err
    ) as progress:
        task = progress.add_task("batch", total=len(points))

        def done(point: Any, metrics: dict[str, Any]) -> None:
            progress.advance(task)
            loss = metrics.get("val_loss")
            progress.console.print(
                f"{point.optimizer}, LR {point.rule}, global batch {point.global_batch} "
                f"({point.local_batch} x {point.accum} accumulation): "
                + (f"validation loss {loss:.4f}" if loss is not None else "no validation loss")
            )

        run_scan(request, points, done)
    _show(out_dir, as_json)


@app.command("report")
def report(
    directory: Annotated[
        Path,
        path_argument(help="Output directory of scale-bench runs."),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Print the tables and write CSV and PNG plots (throughput, speedup vs ideal, efficiency, L(D))."""
    _show(directory, as_json)
