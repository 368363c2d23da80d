"""Batch-size scan planning: splitting a global batch, steps and warm-up per point, the gap summary."""

from __future__ import annotations

import pytest

from mlpfctl.bench.batch_scan import BatchRequest, plan, split_batch, summarise
from mlpfctl.config import resolve
from mlpfctl.errors import UsageError


def request(**changes: object) -> BatchRequest:
    values: dict[str, object] = {"config": resolve(None, env={}).config, "global_batches": (8, 32, 256)}
    values.update(changes)
    return BatchRequest(**values)  # type: ignore[arg-type]


def test_split_uses_the_fewest_accumulation_steps_that_divide() -> None:
    assert split_batch(32, 2, 64) == (16, 1)
    assert split_batch(256, 2, 64) == (64, 2)
    assert split_batch(96, 1, 40) == (32, 3)  # 96 / 40 -> 3 micro-batches of 32
    assert split_batch(14, 1, 4) == (2, 7)  # 14 = 7 x 2: 4 does not divide it
    with pytest.raises(UsageError, match="does not divide over 4 ranks") as info:
        split_batch(30, 4, 64)
    assert "multiples of 4" in (info.value.hint or "")


def test_plan_keeps_the_epochs_and_the_warmup_share() -> None:
    points = plan(request(epochs=2.0, warmup_fraction=0.1, rules=("sqrt",), optimizers=("lamb",)), 800)
    by_batch = {p.global_batch: p for p in points}
    assert [(p.steps, p.warmup_steps, p.local_batch, p.accum) for p in points] == [
        (200, 20, 8, 1),
        (50, 5, 32, 1),
        (6, 1, 64, 4),  # round(1600 / 256) steps; at least one warm-up step; 4 x 64 events
    ]
    assert by_batch[8].rule == "sqrt" and by_batch[8].optimizer == "lamb"
    assert len(plan(request(repeats=3), 800)) == 3 * 2 * 3 * 3  # repeats x optimisers x rules x batches


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"global_batches": (8,)}, "at least two --global-batches"),
        ({"rules": ("cubic",)}, "unknown cubic"),
        ({"optimizers": ("adam",)}, "unknown adam"),
        ({"unit": "tokens"}, "not events or elements"),
        ({"warmup_fraction": 1.5}, "warm-up fraction"),
    ],
)
def test_bad_requests(changes: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        request(**changes).check()


def test_summary_finds_the_largest_batch_within_tolerance() -> None:
    rows = []
    for rule, losses in (("none", [1.00, 1.05, 1.30]), ("linear", [1.00, 1.01, 1.019])):
        for batch, loss in zip((8, 32, 128), losses, strict=True):
            for repeat, shift in enumerate((-0.001, 0.001)):
                row = {"optimizer": "adamw", "lr_scaling": rule, "global_batch": batch, "repeat": repeat}
                row |= {"val_loss": loss + shift, "events_per_s": 10.0 * batch, "local_batch": batch}
                rows.append(row | {"grad_accum": 1})
    points, choices = summarise(rows, tolerance=0.02)
    none = [p for p in points if p["lr_scaling"] == "none"]
    assert [round(p["gap"], 3) for p in none] == [0.0, 0.05, 0.3]
    assert none[0]["val_loss_err"] == pytest.approx(0.001) and none[0]["repeats"] == 2
    by_rule = {c["lr_scaling"]: c for c in choices}
    assert by_rule["none"]["largest_batch"] == 8
    assert by_rule["linear"]["largest_batch"] == 128 and by_rule["linear"]["events_per_s"] == 1280.0
