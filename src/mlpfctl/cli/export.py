"""``mlpfctl export RUN``: ONNX export with a numerical check against PyTorch on real events.

mlpfctl export runs/train-20260101-120000 --out model.onnx
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from mlpfctl.cli.common import JsonOpt, path_argument, path_option
from mlpfctl.errors import UsageError


def export(
    run: Annotated[
        Path,
        path_argument(help="Run directory written by 'mlpfctl train'."),
    ],
    out_path: Annotated[
        Path | None,
        path_option("--out", "-o", help="ONNX file (default: RUN/model.onnx)."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        path_option("--checkpoint", help="A checkpoint file (default: the newest valid one)."),
    ] = None,
    events: Annotated[int, typer.Option("--events", min=1, help="Test events for the numerical check.")] = 64,
    atol: Annotated[float, typer.Option("--atol", min=0.0, help="Largest allowed |ONNX - PyTorch|.")] = 1e-3,
    as_json: JsonOpt = False,
) -> None:
    """Export the model to ONNX (dynamic batch and element axes) and check it with ONNX Runtime."""
    from mlpfctl.console import err, out, print_json
    from mlpfctl.paths import check_input_dir, check_output_file
    from mlpfctl.train.export import export_run
    from mlpfctl.train.runs import load_run

    if not math.isfinite(atol):  # typer's min=0.0 lets nan through
        raise UsageError(f"--atol {atol} is not a finite number", "example: --atol 1e-3")
    check_input_dir(run, "run directory", "pass a directory written by 'mlpfctl train'")
    target = out_path or run / "model.onnx"
    check_output_file(target, "--out", "model.onnx")  # before the export, not after it
    loaded = load_run(run, checkpoint)
    result = export_run(loaded, target, events=events, atol=atol)
    if as_json:
        print_json(result.as_dict())
        return
    worst = max(result.max_abs_diff.values())
    err.print(
        f"checked {result.checked_batches} batches ({len(result.element_counts)} element counts, "
        f"{min(result.element_counts)}-{max(result.element_counts)}): max |diff| {worst:.2e} <= {atol:g}"
    )
    out.print(str(result.path))
