"""LR scaling with the global batch, schedules with warm-up, LAMB."""

from __future__ import annotations

import math

import pytest
import torch

from mlpfctl.config.loader import parse_set, resolve
from mlpfctl.train.context import scaled_lr
from mlpfctl.train.optim import Lamb, Schedule, build_optimizer, build_scheduler, lr_scale_factor


def config(*sets: str):  # type: ignore[no-untyped-def]
    return resolve(None, parse_set(list(sets)), env={}).config


@pytest.mark.parametrize(("mode", "expected"), [("none", 1.0), ("linear", 4.0), ("sqrt", 2.0)])
def test_lr_scale_factor(mode: str, expected: float) -> None:
    assert lr_scale_factor(mode, 4096, 1024) == pytest.approx(expected)


def test_scaled_lr_uses_world_size_and_reference_batch() -> None:
    cfg = config("train.lr=1e-3", "train.lr_scaling=linear", "train.batch_events=16")
    assert scaled_lr(cfg, 1) == pytest.approx((1e-3, 1.0))
    assert scaled_lr(cfg, 4) == pytest.approx((4e-3, 4.0))
    cfg = config("train.lr=1e-3", "train.lr_scaling=sqrt", "train.batch_events=16", "train.reference_batch=8")
    assert scaled_lr(cfg, 2) == pytest.approx((2e-3, 2.0))
    cfg = config("train.lr=1e-3", "train.lr_scaling=none", "train.batch_events=16")
    assert scaled_lr(cfg, 8) == pytest.approx((1e-3, 1.0))


def test_bucketed_batches_scale_by_element_budget() -> None:
    cfg = config("train.lr_scaling=linear", "data.max_elements_per_batch=2000", "train.reference_batch=1000")
    assert scaled_lr(cfg, 2)[1] == pytest.approx(4.0)


def test_cosine_with_warmup() -> None:
    s = Schedule("cosine", horizon=110, warmup=10, min_ratio=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55)
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)


def test_onecycle_peaks_at_thirty_percent() -> None:
    s = Schedule("onecycle", horizon=100, warmup=0, min_ratio=0.1)
    assert s(0) == pytest.approx(1 / 25)
    assert s(30) == pytest.approx(1.0)
    assert s(100) == pytest.approx(1 / 25e4)
    assert max(s(i) for i in range(101)) == pytest.approx(1.0)


def test_constant_after_warmup() -> None:
    s = Schedule("constant", horizon=100, warmup=4, min_ratio=0.1)
    assert [s(i) for i in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_schedule_horizon_is_schedule_steps_not_steps() -> None:
    cfg = config("train.steps=10", "train.schedule_steps=100", "train.lr=1.0")
    param = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([param], cfg.train, 1.0)
    sched = build_scheduler(opt, cfg.train)
    for _ in range(50):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


@pytest.mark.parametrize("name", ["adamw", "lamb", "sgd"])
def test_optimizers_minimise_a_quadratic(name: str) -> None:
    cfg = config(f"train.optimizer={name}", "train.weight_decay=0")
    param = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = build_optimizer([param], cfg.train, 0.05)
    for _ in range(200):
        opt.zero_grad()
        (param**2).sum().backward()
        opt.step()
    assert param.detach().abs().max() < 0.5
    assert isinstance(opt, Lamb) == (name == "lamb")
