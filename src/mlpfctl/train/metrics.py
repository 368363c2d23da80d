"""Validation and evaluation metrics: per-class efficiency, fake rate and confusion, regression
resolution, and (with ``jets=True``) jet response and MET.

Element-level matching, as the targets are defined per element: an element's target particle is
"found" when the prediction for that element is a particle of the same class.

    efficiency[c]    = #(target c and predicted c) / #(target c)
    fake_rate[c]     = #(predicted c and target not c) / #(predicted c)
    resolution       = median and IQR of predicted / target pt and energy, over elements where
                       both target and prediction are particles (also per element type)
    fake_pt_fraction = sum pT of predicted particles on elements without a target particle
                       / sum of target pT
    jets, MET        = per event, see ``mlpfctl.train.jets``: median and IQR of the matched jet
                       response and of MET(reco) - MET(target)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mlpfctl.train import jets as jetlib


@dataclass
class MetricAccumulator:
    num_classes: int
    jets: bool = False
    confusion: torch.Tensor = field(init=False)
    pt_ratio: list[np.ndarray] = field(default_factory=list)
    e_ratio: list[np.ndarray] = field(default_factory=list)
    eta_diff: list[np.ndarray] = field(default_factory=list)
    elem_type: list[np.ndarray] = field(default_factory=list)
    fake_pt: float = 0.0
    target_pt: float = 0.0
    jet_response: list[float] = field(default_factory=list)
    met_residual: list[float] = field(default_factory=list)
    target_jets: int = 0

    def __post_init__(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64)
        if self.jets and not jetlib.fastjet_available():
            self.jets = False  # the physics extra is optional: jet metrics are then absent

    def update(
        self,
        target_cls: torch.Tensor,
        pred_cls: torch.Tensor,
        target_p4: torch.Tensor,
        pred_p4: torch.Tensor,
        mask: torch.Tensor,
        elem_type: torch.Tensor | None = None,
    ) -> None:
        target_cls, pred_cls, mask = target_cls.cpu(), pred_cls.cpu(), mask.cpu()
        target_p4, pred_p4 = target_p4.float().cpu(), pred_p4.float().cpu()
        t = target_cls[mask].long()
        p = pred_cls[mask].long()
        self.confusion += (
            torch.bincount(t * self.num_classes + p, minlength=self.num_classes**2)
            .view(self.num_classes, self.num_classes)
            .double()
        )
        both = mask & (target_cls != 0) & (pred_cls != 0)
        tp4, pp4 = target_p4[both], pred_p4[both]
        ok = (tp4[:, 0] > 0) & (tp4[:, 4] > 0)
        self.pt_ratio.append((pp4[ok, 0] / tp4[ok, 0]).numpy())
        self.e_ratio.append((pp4[ok, 4] / tp4[ok, 4]).numpy())
        self.eta_diff.append((pp4[ok, 1] - tp4[ok, 1]).numpy())
        kinds = elem_type.cpu().round().long() if elem_type is not None else torch.zeros_like(target_cls)
        self.elem_type.append(kinds[both][ok].numpy())
        fake = mask & (target_cls == 0) & (pred_cls != 0)
        self.fake_pt += float(pred_p4[..., 0][fake].sum())
        self.target_pt += float(target_p4[..., 0][mask & (target_cls != 0)].sum())
        if self.jets:
            self._update_jets(target_cls, pred_cls, target_p4, pred_p4, mask)

    def _update_jets(
        self,
        target_cls: torch.Tensor,
        pred_cls: torch.Tensor,
        target_p4: torch.Tensor,
        pred_p4: torch.Tensor,
        mask: torch.Tensor,
    ) -> None:
        with jetlib.stdout_to_stderr():
            for b in range(target_cls.shape[0]):
                m = mask[b]
                tgt = target_p4[b][m & (target_cls[b] != 0)].numpy()
                reco = pred_p4[b][m & (pred_cls[b] != 0)].numpy()
                tj, rj = jetlib.cluster_jets(tgt), jetlib.cluster_jets(reco)
                self.target_jets += len(tj)
                self.jet_response += [float(rj[j, 0] / tj[i, 0]) for i, j in jetlib.match_jets(tj, rj)]
                self.met_residual.append(jetlib.met(reco) - jetlib.met(tgt))

    def merge(self, others: Sequence[MetricAccumulator]) -> None:
        for other in others:
            if other is self:
                continue
            self.confusion += other.confusion
            self.pt_ratio += other.pt_ratio
            self.e_ratio += other.e_ratio
            self.eta_diff += other.eta_diff
            self.elem_type += other.elem_type
            self.fake_pt += other.fake_pt
            self.target_pt += other.target_pt
            self.jet_response += other.jet_response
            self.met_residual += other.met_residual
            self.target_jets += other.target_jets

    def summary(
        self, class_names: Sequence[str], type_names: Mapping[int, str] | None = None
    ) -> dict[str, Any]:
        """Flat float metrics (for history and hooks) plus the confusion matrix under ``confusion``."""
        cm = self.confusion
        out: dict[str, Any] = {}
        for c in range(1, self.num_classes):
            name = class_names[c] if c < len(class_names) else str(c)
            true_c, pred_c = cm[c].sum().item(), cm[:, c].sum().item()
            out[f"eff/{name}"] = cm[c, c].item() / true_c if true_c else float("nan")
            out[f"fake/{name}"] = (pred_c - cm[c, c].item()) / pred_c if pred_c else float("nan")
        total = cm.sum().item()
        out["accuracy"] = cm.diag().sum().item() / total if total else float("nan")
        pt, energy = _cat(self.pt_ratio), _cat(self.e_ratio)
        for key, values in (("pt", pt), ("energy", energy)):
            out[f"{key}_ratio_median"], out[f"{key}_ratio_iqr"] = median_iqr(values)
        kinds = _cat(self.elem_type).astype(np.int64)
        for code, name in (type_names or {}).items():
            sel = kinds == code
            out[f"pt_ratio_median/{name}"], out[f"pt_ratio_iqr/{name}"] = median_iqr(pt[sel])
            out[f"energy_ratio_median/{name}"], out[f"energy_ratio_iqr/{name}"] = median_iqr(energy[sel])
        eta = _cat(self.eta_diff)
        out["eta_resolution"] = float(np.std(eta)) if eta.size else float("nan")
        out["fake_pt_fraction"] = self.fake_pt / self.target_pt if self.target_pt else float("nan")
        if self.jets:
            response = np.asarray(self.jet_response)
            out["jet_response_median"], out["jet_response_iqr"] = median_iqr(response)
            out["jet_match_fraction"] = len(response) / self.target_jets if self.target_jets else float("nan")
            residual = np.asarray(self.met_residual)
            out["met_residual_median"], out["met_residual_iqr"] = median_iqr(residual)
            out["met_resolution_std"] = float(np.std(residual)) if residual.size else float("nan")
        out["confusion"] = cm.round().long().tolist()
        return out


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def median_iqr(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float(q50), float(q75 - q25)
