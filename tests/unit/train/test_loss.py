"""The MLPF loss on a hand-built example, and its exact split across data-parallel ranks."""

from __future__ import annotations

import math

import pytest
import torch

from mlpfctl.models.loss import LossWeights, loss_sums, reduce_loss
from mlpfctl.models.targets import charge_from, predict_particles, regression_targets


def tiny_example() -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One event, three slots: a track with a charged hadron, a cluster without a particle, padding."""
    x = torch.zeros(1, 3, 17)
    x[0, 0, :6] = torch.tensor([1.0, 4.0, 0.5, 0.0, 1.0, 5.0])
    x[0, 1, :6] = torch.tensor([2.0, 2.0, -1.0, 1.0, 0.0, 3.0])
    mask = torch.tensor([[True, True, False]])
    target_cls = torch.tensor([[1, 0, 0]])
    target_p4 = torch.zeros(1, 3, 5)
    target_p4[0, 0] = torch.tensor([4.0 * math.e, 0.7, 0.0, 1.0, 5.0])
    outputs = (torch.zeros(1, 3, 2), torch.zeros(1, 3, 6), torch.zeros(1, 3, 5))
    return outputs, x, mask, target_cls, target_p4


def test_loss_terms_by_hand() -> None:
    outputs, x, mask, cls, p4 = tiny_example()
    losses = reduce_loss(loss_sums(outputs, x, mask, cls, p4, LossWeights()))
    # Binary: zero logits give CE = ln 2 on both real elements; mean x weight 10.
    assert losses["Classification_binary"].item() == pytest.approx(10 * math.log(2))
    # Focal over 6 classes with zero logits: (1 - 1/6)^2 ln 6, one particle / 2 elements.
    assert losses["Classification"].item() == pytest.approx((5 / 6) ** 2 * math.log(6) / 2)
    # Regression targets of the one particle: log(pt ratio) = 1, eta 0.7, sin 0, cos 1, log(E ratio) 0;
    # pt and E weighted by sqrt(target pt); / 1 particle.
    w = math.sqrt(4.0 * math.e)
    assert losses["Regression_pt"].item() == pytest.approx(1.0 * w * 1.0, rel=1e-5)
    assert losses["Regression_eta"].item() == pytest.approx(0.01 * 0.49, rel=1e-5)
    assert losses["Regression_sin_phi"].item() == pytest.approx(0.0, abs=1e-7)
    assert losses["Regression_cos_phi"].item() == pytest.approx(0.01 * 1.0, rel=1e-5)
    assert losses["Regression_energy"].item() == pytest.approx(0.0, abs=1e-6)
    parts = sum(v.item() for k, v in losses.items() if k != "Total")
    assert losses["Total"].item() == pytest.approx(parts)


def test_loss_weights_are_applied() -> None:
    outputs, x, mask, cls, p4 = tiny_example()
    base = reduce_loss(loss_sums(outputs, x, mask, cls, p4, LossWeights()))
    custom = reduce_loss(
        loss_sums(outputs, x, mask, cls, p4, LossWeights(binary=1.0, focal_gamma=0.0, sqrt_pt=False))
    )
    assert custom["Classification_binary"].item() == pytest.approx(base["Classification_binary"].item() / 10)
    assert custom["Classification"].item() == pytest.approx(math.log(6) / 2)
    assert custom["Regression_pt"].item() == pytest.approx(1.0, rel=1e-5)


def test_global_denominators_split_the_loss_exactly() -> None:
    """Two halves with global counts / 2 average to the full-batch loss (what DDP computes)."""
    gen = torch.Generator().manual_seed(1)
    b, n = 4, 7
    x = torch.rand(b, n, 17, generator=gen) + 0.1
    x[..., 0] = 1.0
    mask = torch.rand(b, n, generator=gen) > 0.2
    cls = torch.randint(0, 6, (b, n), generator=gen) * mask
    p4 = torch.rand(b, n, 5, generator=gen) + 0.1
    outputs = tuple(torch.randn(b, n, k, generator=gen) for k in (2, 6, 5))
    full = reduce_loss(loss_sums(outputs, x, mask, cls, p4, LossWeights()))["Total"]
    halves = [slice(0, 1), slice(1, 4)]
    sums = [
        loss_sums(tuple(o[s] for o in outputs), x[s], mask[s], cls[s], p4[s], LossWeights()) for s in halves
    ]
    n_el = sum(s.elements for s in sums)
    n_p = sum(s.particles for s in sums)
    parts = [reduce_loss(s, n_el / 2, n_p / 2)["Total"] for s in sums]
    assert ((parts[0] + parts[1]) / 2).item() == pytest.approx(full.item(), rel=1e-6)


def test_regression_targets_invert_in_predict_particles() -> None:
    _outputs, x, mask, cls, p4 = tiny_example()
    reg = regression_targets(p4, x)
    binary = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]])
    logits = torch.nn.functional.one_hot(cls, 6).float()
    parts = predict_particles(binary, logits, reg, x, mask)
    assert parts.cls.tolist() == [[1, 0, 0]]
    torch.testing.assert_close(parts.p4[0, 0], p4[0, 0])
    assert parts.p4[0, 1].abs().sum() == 0


def test_charge_from_class_and_track_curvature() -> None:
    x = torch.zeros(1, 3, 17)
    x[0, :, 0] = torch.tensor([1.0, 1.0, 2.0])
    x[0, :, 13] = torch.tensor([-0.3, 0.2, 0.5])
    cls = torch.tensor([[1, 3, 2]])
    assert charge_from(cls, x).tolist() == [[-1.0, 0.0, 0.0]]
