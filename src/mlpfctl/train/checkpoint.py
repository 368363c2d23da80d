"""Checkpoints: atomic, checksummed, the newest K kept, damaged ones detected and skipped.

File layout (one file, so that the checksum and the payload are replaced together)::

    b"MLPFCKPT1\n" + sha256(payload) as 64 hex bytes + b"\n" + payload (a torch.save stream)

A checkpoint is written to a temporary sibling, fsynced and renamed into place
(``mlpfctl.atomic``), so a crash leaves either the old set or the new file, never half of one.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import torch

from mlpfctl.atomic import atomic_write_bytes
from mlpfctl.console import warn
from mlpfctl.errors import DataError

MAGIC = b"MLPFCKPT1\n"
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{8})\.ckpt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"step-{step:08d}.ckpt"


def encode(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def decode(blob: bytes, source: str) -> dict[str, Any]:
    head = len(MAGIC) + 65
    if not blob.startswith(MAGIC) or len(blob) < head:
        raise DataError(
            f"checkpoint {source} is not an mlpfctl checkpoint or is truncated",
            "pick another checkpoint or start without --resume",
        )
    digest, payload = blob[len(MAGIC) : head - 1].decode(errors="replace"), blob[head:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise DataError(
            f"checkpoint {source} is damaged (checksum mismatch)",
            "pick another checkpoint or start without --resume",
        )
    state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
    if not isinstance(state, dict):
        raise DataError(f"checkpoint {source} holds no state dictionary", "pick another checkpoint")
    return state


def save(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write the checkpoint for ``step`` and delete all but the newest ``keep``."""
    path = checkpoint_path(run_dir, step)
    atomic_write_bytes(path, encode(state))
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    directory = run_dir / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def load(path: Path) -> dict[str, Any]:
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read checkpoint {path}: {exc.strerror}", "check the --resume path") from None
    return decode(blob, str(path))


def load_latest(target: Path) -> tuple[Path, dict[str, Any]]:
    """Load ``target`` (a checkpoint file) or the newest valid checkpoint of a run directory;
    damaged checkpoints are reported and skipped."""
    if target.is_file():
        return target, load(target)
    candidates = list_checkpoints(target)
    if not candidates:
        raise DataError(
            f"no checkpoint found in {target}",
            f"expected {CHECKPOINT_DIR}/step-NNNNNNNN.ckpt inside the run directory",
        )
    for path in reversed(candidates):
        try:
            return path, load(path)
        except DataError as exc:
            warn(f"skipping {exc.message}")
    raise DataError(f"every checkpoint in {target} is damaged", "start the run again without --resume")
