"""``mlpfctl evaluate RUN``: physics evaluation on the test split, MLPF vs the rule-based baseline.

mlpfctl evaluate runs/train-20260101-120000 --json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlpfctl.cli.common import JsonOpt, path_argument, path_option


def evaluate(
    run: Annotated[
        Path,
        path_argument(help="Run directory written by 'mlpfctl train'."),
    ],
    checkpoint: Annotated[
        Path | None,
        path_option("--checkpoint", help="A checkpoint file (default: the newest valid one)."),
    ] = None,
    events: Annotated[
        int | None, typer.Option("--events", min=1, help="Evaluate at most N test events.")
    ] = None,
    data: Annotated[
        Path | None,
        path_option("--data", help="Evaluate on another dataset (data.path)."),
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Efficiency and fake rate per class, jet pT response (fastjet) and MET resolution; JSON + PNGs."""
    from mlpfctl.config.loader import Override
    from mlpfctl.console import out, print_json
    from mlpfctl.paths import check_input_dir, check_output_dir
    from mlpfctl.train.evaluate import EVAL_DIR, SCALAR_KEYS, SOURCES, evaluate_run
    from mlpfctl.train.runs import load_run

    check_input_dir(run, "run directory", "pass a directory written by 'mlpfctl train'")
    check_output_dir(
        run / EVAL_DIR,
        "the evaluation directory",
        "evaluate writes into the run directory: copy the run somewhere writable first",
    )
    overrides = [Override("data.path", str(data), "flag --data")] if data is not None else []
    loaded = load_run(run, checkpoint, overrides)
    summary = evaluate_run(loaded, max_events=events, plots=plots)
    if as_json:
        print_json(summary)
        return
    from rich.table import Table

    table = Table(title=f"{run} (step {loaded.step}, {summary['events']} test events)")
    table.add_column("metric")
    for s in SOURCES:
        table.add_column(s, justify="right")

    def fmt(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else "-"

    ratio_keys = sorted(k for k in summary["mlpf"] if k.startswith(("pt_ratio_iqr/", "energy_ratio_iqr/")))
    for key in (*SCALAR_KEYS, *ratio_keys):
        table.add_row(key, *(fmt(summary[s].get(key)) for s in SOURCES))
    for metric in ("efficiency", "fake_rate"):
        for cls in summary["mlpf"][metric]:
            table.add_row(f"{metric} {cls}", *(fmt(summary[s][metric][cls]) for s in SOURCES))
    out.print(table)
    out.print(str(run / EVAL_DIR / "summary.json"))
