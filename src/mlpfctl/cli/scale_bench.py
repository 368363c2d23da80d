"""``mlpfctl scale-bench``: strong/weak training scaling, HPO scaling, scaling-law fits, reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlpfctl.cli.common import JsonOpt

app = typer.Typer(
    help="Measure how training and HPO scale; fit loss against dataset size.", no_args_is_help=True
)


@app.command("report")
def report(
    directory: Annotated[Path, typer.Argument(help="Output directory of scale-bench runs.")],
    as_json: JsonOpt = False,
) -> None:
    """Print the tables and write CSV and PNG plots (throughput, speedup vs ideal, efficiency, L(D))."""
    from mlpfctl.bench.report import render_tables, write_report
    from mlpfctl.console import err, out, print_json

    tables, written = write_report(directory)
    if as_json:
        print_json({t.kind: t.rows for t in tables} | {"files": [str(p) for p in written]})
        return
    out.print(render_tables(tables))
    for path in written:
        err.print(f"wrote {path}")
