"""``mlpfctl data``: generate the embedded dataset and inspect any supported dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlpfctl.cli.common import ConfigOpt, DryRunOpt, JsonOpt, SetOpt, load_config, path_argument, path_option

app = typer.Typer(help="Generate and inspect particle-flow datasets.", no_args_is_help=True)


@app.command("generate")
def generate(
    process: Annotated[
        str | None, typer.Option("--process", "-p", help="ee_ttbar, ee_qq, ee_zz, ee_ww or pp_ttbar.")
    ] = None,
    events: Annotated[int | None, typer.Option("--events", "-n", help="Number of events.")] = None,
    out: Annotated[
        Path | None,
        path_option("--out", "-o", help="Output directory (default: data.path)."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: run.seed).")] = None,
    events_per_shard: Annotated[
        int | None, typer.Option("--events-per-shard", help="Events per shard.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-j", help="Worker processes (0 = all cores).")
    ] = None,
    pileup_mu: Annotated[
        float | None, typer.Option("--pileup-mu", help="Mean pile-up for pp processes.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Regenerate every shard, replacing any dataset there.")
    ] = False,
    task_index: Annotated[
        int | None,
        typer.Option("--task-index", help="Array jobs: generate only this task's block of shards."),
    ] = None,
    task_count: Annotated[
        int, typer.Option("--task-count", help="Array jobs: the number of tasks sharing the shards.")
    ] = 1,
    manifest_only: Annotated[
        bool,
        typer.Option("--manifest-only", help="Generate nothing: check every shard, write the manifest."),
    ] = False,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Generate events with Pythia8 and the parametric detector into Key4hep-layout Parquet shards.

    Existing valid shards are kept, so rerunning an interrupted command resumes it. On a cluster,
    `mlpfctl submit --array N -- data generate ...` runs N array tasks (--task-index/--task-count)
    and a --manifest-only step after them.
    """
    flags = {
        "generate.process": ("--process", process),
        "generate.events": ("--events", events),
        "generate.events_per_shard": ("--events-per-shard", events_per_shard),
        "generate.workers": ("--workers", workers),
        "generate.pileup_mu": ("--pileup-mu", pileup_mu),
        "run.seed": ("--seed", seed),
        "data.path": ("--out", None if out is None else str(out)),
    }
    cfg = load_config(config, sets, flags).config
    from mlpfctl.paths import check_output_dir

    check_output_dir(Path(cfg.data.path), "--out" if out is not None else "data.path")
    g = cfg.generate
    request = {
        "out": cfg.data.path,
        "process": g.process,
        "events": g.events,
        "seed": cfg.run.seed,
        "events_per_shard": g.events_per_shard,
        "workers": g.workers or None,
        "pileup_mu": g.pileup_mu,
        "force": force,
        "task": None if task_index is None else [task_index, task_count],
        "manifest_only": manifest_only,
    }
    from mlpfctl.console import out as stdout
    from mlpfctl.console import print_json

    if dry_run:
        if as_json:
            print_json({"dry_run": True, "request": request})
        else:
            stdout.print(
                f"would generate {g.events} {g.process} events into {cfg.data.path} (seed {cfg.run.seed})"
            )
        return
    from mlpfctl.data.generate import generate_dataset

    manifest = generate_dataset(
        cfg.data.path,
        process=g.process,
        events=g.events,
        seed=cfg.run.seed,
        events_per_shard=g.events_per_shard,
        workers=g.workers or None,
        pileup_mu=g.pileup_mu,
        force=force,
        progress=not as_json,
        task=None if task_index is None else (task_index, task_count),
        manifest_only=manifest_only,
    )
    t = manifest.totals
    summary = {
        "out": str(request["out"]),
        "process": manifest.process,
        "events": int(t["events"]),
        "shards": len(manifest.shards),
        "generated_shards": int(t["generated_shards"]),
        "kept_shards": int(t["kept_shards"]),
        "elements_per_event": round(t["elements"] / max(t["events"], 1), 1),
        "bytes_per_event": round(t["bytes_per_event"]),
        "wall_seconds": round(t["wall_seconds"], 2),
        **({} if task_index is None else {"task": f"{task_index}/{task_count}"}),
    }
    if as_json:
        print_json(summary)
    else:
        stdout.print(
            f"{summary['events']} {summary['process']} events in {summary['shards']} shards "
            f"({summary['kept_shards']} kept) -> {summary['out']}: "
            f"{summary['elements_per_event']} elements/event, {summary['bytes_per_event']} B/event, "
            f"{summary['wall_seconds']} s"
        )


@app.command("inspect")
def inspect(
    path: Annotated[
        Path,
        path_argument(help="Dataset directory or file (.parquet, .pkl.bz2)."),
    ],
    fmt: Annotated[str, typer.Option("--format", "-f", help="auto, key4hep or delphes.")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Events, elements per event, class fractions, feature ranges, schema and detected format."""
    from mlpfctl.console import out as stdout
    from mlpfctl.console import print_json
    from mlpfctl.data.inspect import inspect_dataset

    info = inspect_dataset(path, fmt)
    if as_json:
        print_json(info)
        return
    from rich.table import Table

    e = info["elements_per_event"]
    stdout.print(
        f"[bold]{info['path']}[/]: {info['format']} ({info['schema']}), {info['files']} files, "
        f"{info['events']} events, {info['elements']} elements; per event mean {e['mean']}, "
        f"median {e['p50']:.0f}, p90 {e['p90']:.0f}, max {e['p100']:.0f}"
    )
    classes = list(info["target_fractions"])
    table = Table(title="class fractions (target / baseline PF)")
    table.add_column("element type")
    table.add_column("per event", justify="right")
    for c in classes:
        table.add_column(c, justify="right")
    for name, d in info["element_types"].items():
        table.add_row(
            name,
            f"{d['per_event']:.1f}",
            *(f"{d['target_fractions'][c]:.3f} / {d['candidate_fractions'][c]:.3f}" for c in classes),
        )
    stdout.print(table)
    feats = Table(title="feature ranges")
    for col in ("feature", "min", "mean", "max"):
        feats.add_column(col, justify="left" if col == "feature" else "right")
    for name, r in info["features"].items():
        feats.add_row(name, f"{r['min']:.4g}", f"{r['mean']:.4g}", f"{r['max']:.4g}")
    stdout.print(feats)
