"""Checkpoints: atomic, checksummed, the newest K kept, damaged ones detected and skipped.

File layout (one file, so that the checksum and the payload are replaced together)::

    b"MLPFCKPT1\n" + sha256(payload) as 64 hex bytes + b"\n" + payload (a torch.save stream)

A checkpoint is written to a temporary sibling, fsynced and renamed into place
(``mlpfctl.atomic``), so a crash leaves either the old set or the new file, never half of one.

A checkpoint holds data, never code. The checksum only detects damage (anyone can recompute
it), so loading must be safe on a hostile file: ``torch.load(weights_only=True)`` rebuilds
tensors, containers and numbers only, plus the allow-list below (the numpy arrays inside the saved
RNG state). Anything else in the pickle (a function call such as ``os.system``, an arbitrary
class) is refused with :class:`UnsafeCheckpoint` before it runs. The state saved must therefore
consist of tensors, dicts, lists, tuples, strings, numbers, ``None`` and numeric numpy arrays.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlpfctl.atomic import atomic_write_bytes
from mlpfctl.console import warn
from mlpfctl.errors import DataError
from mlpfctl.train.rundir import CHECKPOINT_DIR, list_checkpoints

__all__ = ["CHECKPOINT_DIR", "UnsafeCheckpoint", "list_checkpoints", "load", "load_latest", "save"]

MAGIC = b"MLPFCKPT1\n"
NEXT_STEP = "pick another checkpoint or run (train: start without --resume)"


# Keys every checkpoint of the training loop has, with the type each must have.
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "step": int,
    "model": dict,
    "spec": dict,
    "optimizer": dict,
    "scheduler": dict,
    "position": dict,
    "rng": list,
}


class UnsafeCheckpoint(DataError):
    """A checkpoint whose pickle asks for code or types outside the allow-list: never skipped."""


def _safe_globals() -> list[Any]:
    """What ``weights_only`` loading may build besides tensors: numpy arrays of plain numbers.

    Only numeric dtypes are listed, so no object array (a pickle inside the pickle) can be built.
    The numpy 1.x module path of ``_reconstruct`` is accepted too (checkpoints written there).
    """
    core = np._core if hasattr(np, "_core") else np.core
    reconstruct = core.multiarray._reconstruct
    numeric = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
    floats = (np.float16, np.float32, np.float64)
    return [
        reconstruct,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *(type(np.dtype(t)) for t in (*numeric, *floats)),
    ]


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
            NEXT_STEP,
        )
    digest, payload = blob[len(MAGIC) : head - 1].decode(errors="replace"), blob[head:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise DataError(
            f"checkpoint {source} is damaged (checksum mismatch)",
            NEXT_STEP,
        )
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch explains how to allow the global; what matters here is which one was refused.
        found = re.search(r"(?:Unsupported global|Unsupported operand|GLOBAL) ([\w.]+)", str(exc))
        what = found.group(1) if found else "code or an object type outside the allow-list"
        raise UnsafeCheckpoint(
            f"checkpoint {source} was refused: it asks to run {what}, and a checkpoint holds data only",
            "the file was crafted or is not from mlpfctl; never load checkpoints from untrusted sources",
        ) from None
    except Exception as exc:  # a torch.save stream that does not parse: a zip or pickle error
        raise DataError(
            f"checkpoint {source} has a valid checksum but an unreadable payload ({type(exc).__name__})",
            NEXT_STEP,
        ) from None
    return check_state(state, source)


def check_state(state: Any, source: str) -> dict[str, Any]:
    """A checkpoint of the training loop: the keys its readers use, of the right types."""
    if not isinstance(state, dict):
        raise DataError(
            f"checkpoint {source} holds {type(state).__name__}, not a training state",
            "pick a checkpoint written by 'mlpfctl train'",
        )
    problems = [
        f"'{key}' missing" if key not in state else f"'{key}' is {type(state[key]).__name__}"
        for key, kind in REQUIRED.items()
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool)
    ]
    if not problems and (state["step"] < 0 or not state["model"]):
        problems.append("negative step or empty model")
    if not problems and not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        problems.append("'model' holds values that are not tensors")
    if problems:
        raise DataError(
            f"checkpoint {source} is not a training state of mlpfctl ({'; '.join(problems)})",
            "pick a checkpoint written by 'mlpfctl train'",
        )
    return state


@contextlib.contextmanager
def restoring(source: str | Path | None) -> Iterator[None]:
    """Wrap the ``load_state_dict`` calls that apply a loaded state: a state that does not fit
    (another model size, a hand-edited file) becomes a user error naming the checkpoint."""
    try:
        yield
    except (KeyError, IndexError, RuntimeError, TypeError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        if len(detail) > 240:
            detail = detail[:240] + " ..."
        raise DataError(
            f"checkpoint {source} does not fit this run ({type(exc).__name__}: {detail})",
            "it belongs to another model or configuration: use that run's settings, or " + NEXT_STEP,
        ) from None


def save(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write the checkpoint for ``step`` and delete all but the newest ``keep``."""
    path = checkpoint_path(run_dir, step)
    atomic_write_bytes(path, encode(state))
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


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
    skipped: list[str] = []
    for path in reversed(candidates):
        try:
            state = load(path)
        except UnsafeCheckpoint:
            raise  # tampering is not damage: stop instead of quietly using an older state
        except DataError as exc:
            skipped.append(exc.message)
            continue
        for message in skipped:  # said only when an older checkpoint takes over
            warn(f"skipping {message}")
        return path, state
    raise DataError(
        f"every checkpoint in {target} is damaged ({len(skipped)}; newest: {skipped[0]})",
        "the run has no usable checkpoint: train it again (mlpfctl train without --resume)",
    )
