"""Physics evaluation of a trained run on the test split: MLPF against the rule-based baseline
(``ycand``) and the target.

- Particle level (per element, see ``mlpfctl.train.metrics``): efficiency and fake rate per class.
- Jets: ``ee_genkt`` R = 0.4, p = -1, pT > 5 GeV (the reference's CLIC/CLD settings), clustered
  with fastjet on target, MLPF and baseline particles; reconstructed jets are matched to target
  jets within dR < 0.1; the response is pT(reco) / pT(target), summarised by median and IQR.
- MET: |sum of particle pT vectors|; resolution = median and IQR of MET(reco) - MET(target).

Writes ``<run>/evaluation/summary.json`` and PNG plots next to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlpfctl.atomic import atomic_write_text
from mlpfctl.errors import UsageError
from mlpfctl.models.targets import predict_particles
from mlpfctl.train.metrics import MetricAccumulator, median_iqr
from mlpfctl.train.runs import LoadedRun, iter_batches, test_split

JET_R = 0.4
JET_PTMIN = 5.0
MATCH_DR = 0.1
EVAL_DIR = "evaluation"
SOURCES = ("mlpf", "baseline")


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """fastjet prints its banner on C-level stdout; stdout must carry data only."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def to_cartesian(p4: np.ndarray) -> np.ndarray:
    """(pt, eta, sin phi, cos phi, E) -> (px, py, pz, E); phi from atan2 so unnormalised
    predicted sin/cos are fine."""
    pt, eta = p4[:, 0], p4[:, 1]
    phi = np.arctan2(p4[:, 2], p4[:, 3])
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    energy = np.maximum(p4[:, 4], np.sqrt(px**2 + py**2 + pz**2))
    return np.stack([px, py, pz, energy], axis=1)


def cluster_jets(p4: np.ndarray) -> np.ndarray:
    """Jets ``[J, 3]`` (pt, eta, phi) of the particles ``p4``."""
    import fastjet

    if len(p4) == 0:
        return np.zeros((0, 3))
    jetdef = fastjet.JetDefinition(fastjet.ee_genkt_algorithm, JET_R, -1.0)
    cart = to_cartesian(p4)
    particles = [fastjet.PseudoJet(*map(float, row)) for row in cart]
    sequence = fastjet.ClusterSequence(particles, jetdef)
    jets = sequence.inclusive_jets(JET_PTMIN)
    return np.array([[j.pt(), j.eta(), j.phi()] for j in jets]).reshape(-1, 3)


def match_jets(target: np.ndarray, reco: np.ndarray) -> list[tuple[int, int]]:
    """Greedy unique matching by smallest dR below ``MATCH_DR``."""
    if len(target) == 0 or len(reco) == 0:
        return []
    deta = target[:, None, 1] - reco[None, :, 1]
    dphi = np.mod(target[:, None, 2] - reco[None, :, 2] + np.pi, 2 * np.pi) - np.pi
    dr = np.sqrt(deta**2 + dphi**2)
    pairs: list[tuple[int, int]] = []
    while True:
        i, j = np.unravel_index(np.argmin(dr), dr.shape)
        if dr[i, j] >= MATCH_DR:
            return pairs
        pairs.append((int(i), int(j)))
        dr[i, :] = np.inf
        dr[:, j] = np.inf


def met(p4: np.ndarray) -> float:
    phi = np.arctan2(p4[:, 2], p4[:, 3])
    return float(np.hypot((p4[:, 0] * np.cos(phi)).sum(), (p4[:, 0] * np.sin(phi)).sum()))


def evaluate_run(run: LoadedRun, *, max_events: int | None = None, plots: bool = True) -> dict[str, Any]:
    test = test_split(run.config)
    schema_names = test.schema.class_names if hasattr(test, "schema") else ()
    acc = {s: MetricAccumulator(run.spec.num_classes) for s in SOURCES}
    response: dict[str, list[float]] = {s: [] for s in SOURCES}
    matched = dict.fromkeys(SOURCES, 0)
    met_diff: dict[str, list[float]] = {s: [] for s in SOURCES}
    target_jets = 0
    events = 0
    with _stdout_to_stderr(), torch.no_grad():
        for batch in iter_batches(test, 16, limit=max_events):
            binary, cls_logits, reg = run.model(batch.X, batch.mask)
            pred = predict_particles(binary, cls_logits, reg, batch.X, batch.mask)
            acc["mlpf"].update(batch.target_cls, pred.cls, batch.target_p4, pred.p4, batch.mask)
            acc["baseline"].update(
                batch.target_cls, batch.cand_cls, batch.target_p4, batch.cand_p4, batch.mask
            )
            for b in range(batch.num_events):
                events += 1
                m = batch.mask[b]
                tgt = batch.target_p4[b][m & (batch.target_cls[b] != 0)].numpy()
                reco = {
                    "mlpf": pred.p4[b][m & (pred.cls[b] != 0)].numpy(),
                    "baseline": batch.cand_p4[b][m & (batch.cand_cls[b] != 0)].numpy(),
                }
                tj = cluster_jets(tgt)
                target_jets += len(tj)
                met_t = met(tgt)
                for s in SOURCES:
                    rj = cluster_jets(reco[s])
                    pairs = match_jets(tj, rj)
                    matched[s] += len(pairs)
                    response[s] += [rj[j, 0] / tj[i, 0] for i, j in pairs]
                    met_diff[s].append(met(reco[s]) - met_t)
    if events == 0:
        raise UsageError("the test split has no events", "use a larger dataset")
    names = tuple(schema_names) or tuple(str(i) for i in range(run.spec.num_classes))
    summary: dict[str, Any] = {
        "run_dir": str(run.run_dir),
        "checkpoint": str(run.checkpoint),
        "step": run.step,
        "events": events,
        "jets": {
            "algorithm": "ee_genkt",
            "R": JET_R,
            "p": -1,
            "ptmin": JET_PTMIN,
            "match_dr": MATCH_DR,
            "target_jets": target_jets,
        },
    }
    for s in SOURCES:
        particle = acc[s].summary(names)
        med, iqr = median_iqr(np.asarray(response[s]))
        met_med, met_iqr = median_iqr(np.asarray(met_diff[s]))
        summary[s] = {
            "efficiency": {k[4:]: v for k, v in particle.items() if k.startswith("eff/")},
            "fake_rate": {k[5:]: v for k, v in particle.items() if k.startswith("fake/")},
            "confusion": particle["confusion"],
            "jet_response_median": med,
            "jet_response_iqr": iqr,
            "jet_match_fraction": matched[s] / target_jets if target_jets else float("nan"),
            "met_residual_median": met_med,
            "met_residual_iqr": met_iqr,
            "met_resolution_std": float(np.std(met_diff[s])),
        }
    out_dir = run.run_dir / EVAL_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    if plots:
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
