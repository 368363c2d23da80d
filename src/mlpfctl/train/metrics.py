"""Validation metrics: per-class efficiency, fake rate and confusion, and regression resolution.

Element-level matching, as the targets are defined per element: an element's target particle is
"found" when the prediction for that element is a particle of the same class.

    efficiency[c] = #(target c and predicted c) / #(target c)
    fake_rate[c]  = #(predicted c and target not c) / #(predicted c)
    resolution    = median and IQR of predicted / target pt and energy, over elements where both
                    target and prediction are particles
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class MetricAccumulator:
    num_classes: int
    confusion: torch.Tensor = field(init=False)
    pt_ratio: list[np.ndarray] = field(default_factory=list)
    e_ratio: list[np.ndarray] = field(default_factory=list)
    eta_diff: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64)

    def update(
        self,
        target_cls: torch.Tensor,
        pred_cls: torch.Tensor,
        target_p4: torch.Tensor,
        pred_p4: torch.Tensor,
        mask: torch.Tensor,
    ) -> None:
        t = target_cls[mask].long().cpu()
        p = pred_cls[mask].long().cpu()
        self.confusion += (
            torch.bincount(t * self.num_classes + p, minlength=self.num_classes**2)
            .view(self.num_classes, self.num_classes)
            .double()
        )
        both = mask & (target_cls != 0) & (pred_cls != 0)
        tp4, pp4 = target_p4[both].float().cpu(), pred_p4[both].float().cpu()
        ok = (tp4[:, 0] > 0) & (tp4[:, 4] > 0)
        self.pt_ratio.append((pp4[ok, 0] / tp4[ok, 0]).numpy())
        self.e_ratio.append((pp4[ok, 4] / tp4[ok, 4]).numpy())
        self.eta_diff.append((pp4[ok, 1] - tp4[ok, 1]).numpy())

    def merge(self, others: Sequence[MetricAccumulator]) -> None:
        for other in others:
            if other is self:
                continue
            self.confusion += other.confusion
            self.pt_ratio += other.pt_ratio
            self.e_ratio += other.e_ratio
            self.eta_diff += other.eta_diff

    def summary(self, class_names: Sequence[str]) -> dict[str, Any]:
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
        for key, parts in (("pt", self.pt_ratio), ("energy", self.e_ratio)):
            med, iqr = median_iqr(np.concatenate(parts) if parts else np.zeros(0))
            out[f"{key}_ratio_median"] = med
            out[f"{key}_ratio_iqr"] = iqr
        eta = np.concatenate(self.eta_diff) if self.eta_diff else np.zeros(0)
        out["eta_resolution"] = float(np.std(eta)) if eta.size else float("nan")
        out["confusion"] = cm.round().long().tolist()
        return out


def median_iqr(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float(q50), float(q75 - q25)
