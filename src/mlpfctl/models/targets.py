"""Target transforms: raw particles <-> the log-ratio regression targets the models predict.

Regression targets (reference loader, mlpf-reference.md §3): log(pt / X_pt), eta, sin phi,
cos phi, log(E / X_E), with NaN/inf mapped to 0. Predictions are turned back into particles by
exponentiating the ratios; the binary head decides whether an element yields a particle at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Columns of X (every supported format): 1 pt|Et, 2 eta, 3 sin phi, 4 cos phi, 5 p|E.
X_PT, X_ETA, X_SIN, X_COS, X_E = 1, 2, 3, 4, 5
# Track feature column whose sign gives the charge (CLIC track "omega", the signed curvature).
X_TRACK_OMEGA = 13
TRACK_TYPE = 1
# CLIC/CLD class indices of charged particles: ch.had, e, mu.
CHARGED_CLASSES: tuple[int, ...] = (1, 4, 5)


def _safe_log_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    out = torch.log(num / den)
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def regression_targets(target_p4: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[B, N, 5]`` targets from raw (pt, eta, sin, cos, E) and the element features."""
    pt = _safe_log_ratio(target_p4[..., 0], x[..., X_PT])
    energy = _safe_log_ratio(target_p4[..., 4], x[..., X_E])
    return torch.stack([pt, target_p4[..., 1], target_p4[..., 2], target_p4[..., 3], energy], dim=-1)


def charge_from(cls: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Charge from the predicted class and the track: charged classes on a track take the track's
    curvature sign, everything else is neutral."""
    charged = torch.zeros_like(cls, dtype=torch.bool)
    for c in CHARGED_CLASSES:
        charged |= cls == c
    on_track = x[..., 0].round().long() == TRACK_TYPE
    sign = torch.sign(x[..., X_TRACK_OMEGA]) if x.shape[-1] > X_TRACK_OMEGA else torch.ones_like(x[..., 0])
    return torch.where(charged & on_track, sign, torch.zeros_like(sign))


@dataclass
class Particles:
    """Per-element particles: ``cls`` 0 where no particle; ``p4`` = (pt, eta, sin, cos, E) raw."""

    cls: torch.Tensor
    charge: torch.Tensor
    p4: torch.Tensor


def predict_particles(
    binary: torch.Tensor, cls_logits: torch.Tensor, reg: torch.Tensor, x: torch.Tensor, mask: torch.Tensor
) -> Particles:
    """Turn model outputs into particles (reference ``predict_particles``)."""
    exists = (binary.argmax(-1) == 1) & mask
    # A particle never takes the "none" class: take the best real class where one exists.
    cls = cls_logits[..., 1:].argmax(-1) + 1
    cls = torch.where(exists, cls, torch.zeros_like(cls))
    pt = torch.exp(reg[..., 0].float().clamp(max=20)) * x[..., X_PT]
    energy = torch.exp(reg[..., 4].float().clamp(max=20)) * x[..., X_E]
    p4 = torch.stack([pt, reg[..., 1].float(), reg[..., 2].float(), reg[..., 3].float(), energy], dim=-1)
    p4 = p4 * exists[..., None].to(p4.dtype)
    return Particles(cls=cls, charge=charge_from(cls, x), p4=p4)
