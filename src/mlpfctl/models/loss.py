"""The MLPF loss (reference ``mlpf_loss``, mlpf-reference.md §7), over unpadded elements only.

    Classification_binary = w_bin x CE(binary logits, particle exists), / N_elements
    Classification        = w_cls x w_class x focal(class logits; gamma) where a particle exists,
                            / N_elements (w_class: optional per-class weights, default 1)
    Regression_<x>        = w_x x squared error on true particles, / N_particles
                            (pt and energy also weighted by sqrt(target pt) when enabled)
    Total                 = the sum of the seven terms

Each term is a sum divided by a *denominator* the caller passes. A single process passes its own
element and particle counts (a plain mean). Data-parallel ranks pass the global counts divided by
the world size: DDP averages the gradients over ranks, so the result is exactly the gradient of
the global-batch loss, whatever the split of elements between ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mlpfctl.errors import ConfigError
from mlpfctl.models.targets import regression_targets

REG_NAMES: tuple[str, ...] = ("pt", "eta", "sin_phi", "cos_phi", "energy")
TERM_NAMES: tuple[str, ...] = (
    "Classification_binary",
    "Classification",
    *(f"Regression_{n}" for n in REG_NAMES),
)


@dataclass(frozen=True)
class LossWeights:
    binary: float = 10.0
    cls: float = 1.0
    focal_gamma: float = 2.0
    reg: tuple[float, float, float, float, float] = (1.0, 0.01, 0.01, 0.01, 1.0)
    sqrt_pt: bool = True
    # Per-class weights of the focal term (index = class); None = all 1.
    class_weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class LossSums:
    """Per-term sums (not yet divided) and the counts they are normalised by."""

    sums: dict[str, torch.Tensor]
    elements: torch.Tensor
    particles: torch.Tensor


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-element focal loss without alpha: -(1 - p_t)^gamma log p_t."""
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, target[..., None]).squeeze(-1)
    if gamma == 0:
        return -logp
    return -((1.0 - logp.exp()).clamp_min(0).pow(gamma)) * logp


def loss_sums(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    x: torch.Tensor,
    mask: torch.Tensor,
    target_cls: torch.Tensor,
    target_p4: torch.Tensor,
    weights: LossWeights,
) -> LossSums:
    binary, cls_logits, reg = outputs
    valid = mask
    exists = (target_cls != 0) & valid
    fvalid = valid.float()
    fexists = exists.float()
    ce_bin = F.cross_entropy(binary.float().flatten(0, 1), exists.long().flatten(), reduction="none")
    cls_weight = fexists
    if weights.class_weights is not None:
        if len(weights.class_weights) != cls_logits.shape[-1]:
            raise ConfigError(
                f"train.loss_class_weights has {len(weights.class_weights)} values for "
                f"{cls_logits.shape[-1]} classes",
                "give one weight per class, the 'none' class first",
            )
        table = torch.tensor(weights.class_weights, dtype=fexists.dtype, device=fexists.device)
        cls_weight = fexists * table[target_cls.clamp(0, len(table) - 1)]
    sums: dict[str, torch.Tensor] = {
        "Classification_binary": weights.binary * (ce_bin.view_as(fvalid) * fvalid).sum(),
        "Classification": weights.cls
        * (focal_loss(cls_logits, target_cls, weights.focal_gamma) * cls_weight).sum(),
    }
    target = regression_targets(target_p4, x)
    sq = (reg.float() - target) ** 2
    pt_weight = torch.sqrt(target_p4[..., 0].clamp_min(0)) if weights.sqrt_pt else torch.ones_like(fexists)
    for i, name in enumerate(REG_NAMES):
        w = fexists * (pt_weight if name in ("pt", "energy") else 1.0)
        sums[f"Regression_{name}"] = weights.reg[i] * (sq[..., i] * w).sum()
    return LossSums(sums=sums, elements=fvalid.sum(), particles=fexists.sum())


def per_particle(name: str) -> bool:
    """Whether loss term ``name`` is normalised by true particles (regression) or by elements."""
    return name.startswith("Regression")


def reduce_loss(
    sums: LossSums,
    elements: torch.Tensor | float | None = None,
    particles: torch.Tensor | float | None = None,
) -> dict[str, torch.Tensor]:
    """Divide the sums by the denominators (default: this batch's own counts); adds ``Total``."""
    n_el = sums.elements if elements is None else elements
    n_p = sums.particles if particles is None else particles
    n_el_t = torch.as_tensor(n_el, dtype=torch.float32).clamp_min(1.0)
    n_p_t = torch.as_tensor(n_p, dtype=torch.float32).clamp_min(1.0)
    out: dict[str, torch.Tensor] = {}
    for name, value in sums.sums.items():
        out[name] = value / (n_p_t if per_particle(name) else n_el_t)
    out["Total"] = torch.stack(list(out.values())).sum()
    return out
