"""Checkpoints: round trip, keep the newest K, detect and skip damaged files, refuse code."""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mlpfctl.errors import DataError
from mlpfctl.train import checkpoint as ckpt


def state(step: int, **extra: Any) -> dict[str, Any]:
    """What the training loop saves, in miniature (tensors, containers, the numpy RNG state)."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    body: dict[str, Any] = {
        "format": 1,
        "step": step,
        "position": {"epoch": 0, "batch": step},
        "model": {"w": torch.full((3,), float(step))},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": None,
        "rng": [
            {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        ],
        "world_size": 1,
        "spec": {"type": "attention"},
        "history": [{"step": 1.0, "val_loss": 2.5}],
        "best_val_loss": 2.5,
    }
    body.update(extra)
    return body


def forge(path: Path, obj: Any) -> None:
    """Write ``obj`` as a checkpoint with a correct checksum (what an attacker can always do)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ckpt.MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


class RunsShell:
    """Unpickling this calls os.system: the classic malicious pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_round_trip_and_keep_last_k(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        ckpt.save(tmp_path, step, state(step), keep=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step-00000030.ckpt", "step-00000040.ckpt"]
    path, loaded = ckpt.load_latest(tmp_path)
    assert path.name == "step-00000040.ckpt" and loaded["step"] == 40
    assert torch.equal(loaded["model"]["w"], torch.full((3,), 40.0))  # type: ignore[index]
    assert not list((tmp_path / ckpt.CHECKPOINT_DIR).glob(".*tmp"))  # no temporary files left


def test_damaged_checkpoint_is_detected_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt.save(tmp_path, 1, state(1), keep=3)
    newest = ckpt.save(tmp_path, 2, state(2), keep=3)
    blob = bytearray(newest.read_bytes())
    blob[-10] ^= 0xFF
    newest.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="checksum"):
        ckpt.load(newest)
    path, loaded = ckpt.load_latest(tmp_path)
    assert path.name == "step-00000001.ckpt" and loaded["step"] == 1
    assert "skipping" in capsys.readouterr().err


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    path = ckpt.save(tmp_path, 5, state(5), keep=1)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="every checkpoint"):
        ckpt.load_latest(tmp_path)
    other = tmp_path / "foreign.ckpt"
    other.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not an mlpfctl checkpoint"):
        ckpt.load_latest(other)


def test_no_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no checkpoint"):
        ckpt.load_latest(tmp_path)


def test_numpy_rng_state_round_trips(tmp_path: Path) -> None:
    saved = state(3)
    ckpt.save(tmp_path, 3, saved, keep=1)
    _path, loaded = ckpt.load_latest(tmp_path)
    name, key, pos, *_ = loaded["rng"][0]["numpy"]
    assert name == "MT19937" and pos == saved["rng"][0]["numpy"][2]
    assert np.array_equal(key, saved["rng"][0]["numpy"][1]) and key.dtype == np.uint32
    assert loaded["rng"][0]["python"] == saved["rng"][0]["python"]


def test_crafted_checkpoint_with_valid_checksum_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt.save(tmp_path, 1, state(1), keep=3)  # an older, good checkpoint
    evil = ckpt.checkpoint_path(tmp_path, 2)
    forge(evil, state(2, history=[RunsShell(marker)]))
    with pytest.raises(ckpt.UnsafeCheckpoint, match=r"step-00000002\.ckpt.*refused.*system"):
        ckpt.load(evil)
    # Tampering is not damage: the run directory is refused too, not quietly rolled back.
    with pytest.raises(ckpt.UnsafeCheckpoint):
        ckpt.load_latest(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([1, 2, 3], "holds list"),
        ({"step": 1}, "'model' missing"),
        ({**state(1), "model": {"w": [1.0]}}, "not tensors"),
        ({**state(1), "step": -4}, "negative step"),
        ({**state(1), "rng": "x"}, "'rng' is str"),
    ],
)
def test_wrong_contents_are_data_errors(tmp_path: Path, payload: Any, fragment: str) -> None:
    path = tmp_path / "odd.ckpt"
    forge(path, payload)
    with pytest.raises(DataError, match=fragment):
        ckpt.load(path)


def test_a_state_that_does_not_fit_is_a_data_error() -> None:
    model = torch.nn.Linear(3, 2)
    with pytest.raises(DataError, match=r"x\.ckpt does not fit this run"), ckpt.restoring("x.ckpt"):
        model.load_state_dict({"weight": torch.zeros(5, 5), "bias": torch.zeros(2)})
