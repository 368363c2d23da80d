"""Validation metrics: efficiency, fake rate, confusion and resolution from known inputs."""

from __future__ import annotations

import math

import pytest
import torch

from mlpfctl.train.metrics import MetricAccumulator


def test_efficiency_fake_rate_and_confusion() -> None:
    target = torch.tensor([[1, 1, 2, 0, 3]])
    pred = torch.tensor([[1, 2, 2, 2, 0]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    p4 = torch.ones(1, 5, 5)
    pred_p4 = p4.clone()
    pred_p4[..., 0] = torch.tensor([1.1, 0.9, 1.0, 1.0, 1.0])
    acc = MetricAccumulator(4)
    acc.update(target, pred, p4, pred_p4, mask)
    out = acc.summary(("none", "a", "b", "c"))
    assert out["eff/a"] == pytest.approx(0.5) and out["eff/b"] == pytest.approx(1.0) and out["eff/c"] == 0.0
    assert out["fake/b"] == pytest.approx(2 / 3) and out["fake/a"] == 0.0 and math.isnan(out["fake/c"])
    assert out["confusion"][1] == [0, 1, 1, 0]
    assert out["pt_ratio_median"] == pytest.approx(1.0)
    assert out["accuracy"] == pytest.approx(2 / 5)


def test_padding_is_ignored_and_merge_adds() -> None:
    target = torch.tensor([[1, 1]])
    pred = torch.tensor([[1, 0]])
    mask = torch.tensor([[True, False]])
    a, b = MetricAccumulator(2), MetricAccumulator(2)
    a.update(target, pred, torch.ones(1, 2, 5), torch.ones(1, 2, 5), mask)
    b.update(target, pred, torch.ones(1, 2, 5), torch.ones(1, 2, 5), mask)
    a.merge([a, b])
    assert a.summary(("none", "x"))["confusion"] == [[0, 0], [0, 2]]
