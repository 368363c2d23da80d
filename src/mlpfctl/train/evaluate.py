"""Physics evaluation of a trained run on the test split: MLPF against the rule-based baseline
(``ycand``) and the target.

- Particle level (per element, see ``mlpfctl.train.metrics``): efficiency and fake rate per class,
  the fake pT fraction, pT and energy ratio resolution per element type (track / cluster).
- Jets (``mlpfctl.train.jets``): ``ee_genkt`` R = 0.4, p = -1, pT > 5 GeV (the reference's CLIC/CLD
  settings), clustered with fastjet on target, MLPF and baseline particles; reconstructed jets are
  matched to target jets within dR < 0.1; the response is pT(reco) / pT(target), summarised by
  median and IQR.
- MET: |sum of particle pT vectors|; resolution = median and IQR of MET(reco) - MET(target).

Writes ``<run>/evaluation/summary.json`` and PNG plots next to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlpfctl.atomic import atomic_write_text
from mlpfctl.errors import UsageError
from mlpfctl.models.targets import predict_particles
from mlpfctl.train import jets as jetlib
from mlpfctl.train.metrics import MetricAccumulator
from mlpfctl.train.runs import LoadedRun, iter_batches, test_split

EVAL_DIR = "evaluation"
SOURCES = ("mlpf", "baseline")
# Keys of every source's summary that are plain floats (table rows, benchmark records).
SCALAR_KEYS = (
    "jet_response_median",
    "jet_response_iqr",
    "jet_match_fraction",
    "met_residual_median",
    "met_residual_iqr",
    "met_resolution_std",
    "fake_pt_fraction",
)


def evaluate_model(
    model: torch.nn.Module, dataset: Any, num_classes: int, *, max_events: int | None = None
) -> tuple[dict[str, MetricAccumulator], int]:
    """MLPF and baseline metric accumulators (with jets) over ``dataset``, and the event count."""
    if not jetlib.fastjet_available():
        raise UsageError(
            "evaluation clusters jets with fastjet, which is not installed", "pip install 'mlpfctl[physics]'"
        )
    acc = {s: MetricAccumulator(num_classes, jets=True) for s in SOURCES}
    events = 0
    model.eval()
    with torch.no_grad():
        for batch in iter_batches(dataset, 16, limit=max_events):
            binary, cls_logits, reg = model(batch.X, batch.mask)
            pred = predict_particles(binary, cls_logits, reg, batch.X, batch.mask)
            kinds = batch.X[..., 0]
            acc["mlpf"].update(batch.target_cls, pred.cls, batch.target_p4, pred.p4, batch.mask, kinds)
            acc["baseline"].update(
                batch.target_cls, batch.cand_cls, batch.target_p4, batch.cand_p4, batch.mask, kinds
            )
            events += batch.num_events
    return acc, events


def summarise(
    acc: dict[str, MetricAccumulator], class_names: tuple[str, ...], type_names: dict[int, str]
) -> dict[str, dict[str, Any]]:
    """Per source: efficiency, fake_rate and confusion, then every float metric (``SCALAR_KEYS``,
    ``pt_ratio_iqr/track``, ...)."""
    out: dict[str, dict[str, Any]] = {}
    for s in SOURCES:
        flat = acc[s].summary(class_names, type_names)
        out[s] = {
            "efficiency": {k[4:]: v for k, v in flat.items() if k.startswith("eff/")},
            "fake_rate": {k[5:]: v for k, v in flat.items() if k.startswith("fake/")},
            "confusion": flat["confusion"],
            **{k: v for k, v in flat.items() if not k.startswith(("eff/", "fake/", "confusion"))},
        }
    return out


def evaluate_run(run: LoadedRun, *, max_events: int | None = None, plots: bool = True) -> dict[str, Any]:
    test = test_split(run.config)
    acc, events = evaluate_model(run.model, test, run.spec.num_classes, max_events=max_events)
    if events == 0:
        raise UsageError("the test split has no events", "use a larger dataset")
    schema = test.schema
    names = tuple(schema.class_names) or tuple(str(i) for i in range(run.spec.num_classes))
    summary: dict[str, Any] = {
        "run_dir": str(run.run_dir),
        "checkpoint": str(run.checkpoint),
        "step": run.step,
        "events": events,
        "jets": {
            "algorithm": "ee_genkt",
            "R": jetlib.JET_R,
            "p": -1,
            "ptmin": jetlib.JET_PTMIN,
            "match_dr": jetlib.MATCH_DR,
            "target_jets": acc["mlpf"].target_jets,
        },
        **summarise(acc, names, dict(schema.element_types)),
    }
    out_dir = run.run_dir / EVAL_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    if plots:
        response = {s: acc[s].jet_response for s in SOURCES}
        met_diff = {s: acc[s].met_residual for s in SOURCES}
        summary["plots"] = [str(p) for p in _plots(out_dir, names, summary, response, met_diff)]
    summary = finite_or_none(summary)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def finite_or_none(value: Any) -> Any:
    """NaN/inf -> None, recursively (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def _plots(
    out_dir: Path,
    names: tuple[str, ...],
    summary: dict[str, Any],
    response: dict[str, list[float]],
    met_diff: dict[str, list[float]],
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlpfctl.atomic import atomic_open

    paths = []

    def save(fig: Any, name: str) -> None:
        path = out_dir / name
        with atomic_open(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [float(v) for v in np.linspace(0, 2, 41)]
    for s in SOURCES:
        ax.hist(np.clip(response[s], 0, 2), bins=bins, histtype="step", label=s)
    ax.set(xlabel="jet pT(reco) / pT(target)", ylabel="matched jets", title="Jet pT response")
    ax.legend()
    save(fig, "jet_response.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for s in SOURCES:
        ax.hist(met_diff[s], bins=40, histtype="step", label=s)
    ax.set(xlabel="MET(reco) - MET(target) [GeV]", ylabel="events", title="MET resolution")
    ax.legend()
    save(fig, "met_residual.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    classes = list(summary["mlpf"]["efficiency"])
    x = np.arange(len(classes))
    for k, (metric, title) in enumerate((("efficiency", "Efficiency"), ("fake_rate", "Fake rate"))):
        for i, s in enumerate(SOURCES):
            vals = [summary[s][metric][c] for c in classes]
            axes[k].bar(x + 0.4 * i - 0.2, np.nan_to_num(vals), width=0.4, label=s)
        axes[k].set_xticks(x, classes)
        axes[k].set_title(title)
        axes[k].legend()
    save(fig, "particles.png")
    return paths
