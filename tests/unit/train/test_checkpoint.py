"""Checkpoints: round trip, keep the newest K, detect and skip damaged files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlpfctl.errors import DataError
from mlpfctl.train import checkpoint as ckpt


def state(step: int) -> dict[str, object]:
    return {"step": step, "model": {"w": torch.full((3,), float(step))}}


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
