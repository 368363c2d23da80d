"""benchmarks/train_throughput.py and its reference loader (benchmarks/reference_mlpf.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmarks import reference_mlpf
from benchmarks.train_throughput import main, plan_batches


def test_both_batchings_hold_the_same_events_in_the_same_number_of_steps() -> None:
    lengths = np.random.default_rng(3).integers(20, 240, size=500)
    pool = np.random.default_rng(4).permutation(500)[:300]
    for epoch in (0, 1):
        plan = plan_batches(lengths, pool, 4096, epoch)
        bucketed, fixed = plan["bucketed"], plan["batch-max"]
        assert len(bucketed) == len(fixed) > 5
        assert sorted(i for b in bucketed for i in b) == sorted(i for b in fixed for i in b) == sorted(pool)
        assert max(len(b) for b in fixed) - min(len(b) for b in fixed) <= 1
        # Bucketing groups alike lengths: far less padding than the shuffled batches.
        pad = {k: sum(len(b) * lengths[b].max() for b in v) for k, v in plan.items()}
        assert pad["bucketed"] < 0.8 * pad["batch-max"]
    assert plan_batches(lengths, pool, 4096, 0) != plan_batches(lengths, pool, 4096, 1)


def test_placeholders_stand_in_during_the_import_only() -> None:
    name = "mlpfctl_test_surely_not_installed"
    with reference_mlpf._placeholders((name, "numpy")) as added:
        assert added == [name]  # an installed module is never replaced
        module = sys.modules[name]
        fn = module.anything  # what `from x import anything` does
        with pytest.raises(RuntimeError, match="not installed"):
            fn()
    assert name not in sys.modules


def test_a_directory_that_is_not_a_checkout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(reference_mlpf.ReferenceUnavailable) as err:
        reference_mlpf.Reference(tmp_path, torch.device("cpu"))
    assert "particleflow" in err.value.hint


def test_the_cli_says_error_and_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--variants", "bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in err] == ["error", "hint"]


REFERENCE = os.environ.get("MLPFCTL_REFERENCE")


@pytest.mark.skipif(not REFERENCE, reason="set MLPFCTL_REFERENCE to a jpata/particleflow checkout")
def test_the_reference_is_the_clic_preset_and_trains() -> None:
    """The reference checkout's pyg-clic-v1 has exactly the clic preset's 2,719,506 parameters,
    and one step of its own loss and AdamW moves them."""
    from mlpfctl.data.batch import Batch

    ref = reference_mlpf.Reference(Path(str(REFERENCE)), torch.device("cpu"))
    assert ref.parameters() == 2_719_506
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 12, 17, generator=gen)
    x[..., 0] = torch.randint(1, 3, (2, 12), generator=gen).float()
    x[..., 1] = x[..., 1].abs() + 0.5
    x[..., 5] = x[..., 5].abs() + 1.0
    cls = torch.randint(0, 6, (2, 12), generator=gen)
    p4 = torch.stack([x[..., 1], x[..., 2], x[..., 3], x[..., 4], x[..., 5]], dim=-1)
    batch = Batch(
        X=x,
        mask=torch.ones(2, 12, dtype=torch.bool),
        target_cls=cls,
        target_charge=torch.zeros(2, 12),
        target_p4=p4,
        cand_cls=cls,
        cand_charge=torch.zeros(2, 12),
        cand_p4=p4,
        event_index=torch.arange(2),
    )
    before = [p.detach().clone() for p in ref.model.parameters()]
    ref.train_step(ref.prepare(batch))
    moved = sum(not torch.equal(a, b) for a, b in zip(before, ref.model.parameters(), strict=True))
    assert moved > 100
