"""ONNX export of a trained model with a numerical check against PyTorch on real events.

The graph takes ``X [batch, elements, F]`` and ``mask [batch, elements]`` with both axes dynamic,
and returns ``binary``, ``cls`` and ``reg``. The check runs the exported graph in ONNX Runtime on
test-split events of several sizes (so the dynamic element axis is exercised) and compares every
output with PyTorch.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlpfctl.atomic import atomic_write_bytes
from mlpfctl.errors import RuntimeFailure, UsageError
from mlpfctl.train.runs import LoadedRun

INPUTS = ("X", "mask")
OUTPUTS = ("binary", "cls", "reg")
OPSET = 17


@dataclass
class ExportResult:
    path: Path
    opset: int
    checked_batches: int
    element_counts: list[int]
    max_abs_diff: dict[str, float]
    atol: float
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "opset": self.opset,
            "checked_batches": self.checked_batches,
            "element_counts": self.element_counts,
            "max_abs_diff": self.max_abs_diff,
            "atol": self.atol,
            "ok": self.ok,
        }


def export_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> bytes:
    """The ONNX bytes of ``model`` (TorchScript exporter: no onnxscript dependency)."""
    axes = {name: {0: "batch", 1: "elements"} for name in (*INPUTS, *OUTPUTS)}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
        torch.onnx.export(
            model,
            example,
            buffer,  # type: ignore[arg-type]
            dynamo=False,
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes=axes,
            opset_version=OPSET,
        )
    return buffer.getvalue()


def check_onnx(
    blob: bytes, model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], atol: float
) -> tuple[dict[str, float], list[int]]:
    """Largest |ONNX - PyTorch| per output over ``batches`` (real elements only)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("onnxruntime is not installed", "pip install 'mlpfctl[onnx]'") from None
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    worst = dict.fromkeys(OUTPUTS, 0.0)
    sizes = []
    for x, mask in batches:
        sizes.append(int(x.shape[1]))
        got = session.run(list(OUTPUTS), {"X": x.numpy(), "mask": mask.numpy()})
        with torch.no_grad():
            want = model(x, mask)
        m = mask.numpy()
        for name, a, b in zip(OUTPUTS, got, want, strict=True):
            diff = np.abs(a - b.numpy())[m]
            worst[name] = max(worst[name], float(diff.max()) if diff.size else 0.0)
    return worst, sizes


def export_run(run: LoadedRun, out: Path, *, events: int = 64, atol: float = 1e-3) -> ExportResult:
    from mlpfctl.train.runs import iter_batches, test_split

    test = test_split(run.config)
    # Small batches of different lengths exercise the dynamic element axis.
    batches = [(b.X, b.mask) for b in iter_batches(test, 4, limit=events)]
    if not batches:
        raise UsageError("no test events to check the export with", "use a dataset with a test split")
    model = run.model.float().eval()
    blob = export_onnx(model, batches[0])
    worst, sizes = check_onnx(blob, model, batches, atol)
    ok = all(v <= atol for v in worst.values())
    if not ok:
        raise RuntimeFailure(
            f"ONNX outputs differ from PyTorch by up to {max(worst.values()):.3g} (tolerance {atol:g})",
            "report this with the model type; the PyTorch checkpoint is unaffected",
        )
    atomic_write_bytes(out, blob)
    return ExportResult(out, OPSET, len(batches), sorted(set(sizes)), worst, atol, ok)
