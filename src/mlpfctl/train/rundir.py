"""A run directory belongs to one run.

``mlpfctl train`` claims its directory with ``run.json`` before training starts: the fingerprint
of the resolved configuration and the dataset path, both absolute and relative to the run
directory. The rules (all checked before anything is written):

* a directory that already holds a run (``run.json``, ``config.toml``, checkpoints, metrics, ...)
  is only ever continued with ``--resume``, never trained into afresh;
* ``--resume DIR`` without a checkpoint in DIR is an error, except for a requeued SLURM job whose
  first attempt stopped before its first checkpoint: when ``run.json`` records the same
  configuration (or the job's own ``--run-dir DIR`` holds no run at all), the run starts from
  scratch in DIR;
* a command that fails with a user error before the first checkpoint removes what it created.

Evaluating, exporting or resuming a run moved to another place (together with its data) works
from any directory: the dataset is looked up at its absolute path first, then relative to the run.

This module never imports torch: ``train --dry-run`` plans with it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpfctl.atomic import atomic_write_bytes, atomic_write_text
from mlpfctl.config.loader import to_dict
from mlpfctl.config.schema import Config
from mlpfctl.console import warn
from mlpfctl.errors import DataError, UsageError
from mlpfctl.paths import check_output_dir, nearest_existing

RUN_FILE = "run.json"
CONFIG_FILE = "config.toml"
CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"^step-(\d{8})\.ckpt$")
# What the training loop writes into a run directory: any of them means "a run lives here".
RUN_MARKERS = (
    RUN_FILE,
    CONFIG_FILE,
    "model.json",
    "metrics.jsonl",
    "result.json",
    CHECKPOINT_DIR,
    "tensorboard",
)
# Settings that do not change what a run computes (where it is, what it is called, the progress
# bar): a requeued job may differ in them and still be the same run.
_NOT_IDENTITY = ("run.out_dir", "run.name", "train.progress")


def absolute(path: str | os.PathLike[str]) -> str:
    """``path`` made absolute against the working directory, ``..`` folded, links kept."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def fingerprint(config: Config) -> str:
    """A hash of the settings that define a run (secrets masked, as in the run's config.toml)."""
    data = to_dict(config, mask_secrets=True)
    flat = {
        f"{section}.{key}": value
        for section, body in data.items()
        for key, value in body.items()
        if f"{section}.{key}" not in _NOT_IDENTITY and value is not None
    }
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()


def holds_run(directory: Path) -> bool:
    return directory.is_dir() and any((directory / name).exists() for name in RUN_MARKERS)


def read_record(directory: Path) -> dict[str, Any] | None:
    """The run's ``run.json``, or None when there is none (a run of an older mlpfctl)."""
    path = directory / RUN_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path} is unreadable ({type(exc).__name__})",
            "restore the file, or delete it to treat the run as one of an older mlpfctl",
        ) from None
    if not isinstance(record, dict):
        raise DataError(f"{path} is not a run record", "restore the file or delete it")
    return record


def write_record(directory: Path, config: Config) -> None:
    """Record (or refresh, on resume) who owns ``directory`` and where its data lives."""
    old = read_record(directory) or {}
    data = absolute(config.data.path)
    record = {
        "format": 1,
        "created": old.get("created") or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint(config),
        "data": {"path": data, "relative": os.path.relpath(data, absolute(directory))},
    }
    if record != old:  # an unchanged run (a plain resume) is not rewritten
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / RUN_FILE, json.dumps(record, indent=2) + "\n")


def locate_data(directory: Path, configured: str) -> str:
    """The dataset path of a run: as configured when it exists, else where ``run.json`` says
    (absolute, then relative to the run directory, which survives moving run and data together)."""
    candidates = [Path(configured).expanduser()]
    record = read_record(directory)
    stored = record.get("data") if record else None
    if isinstance(stored, dict):
        for key, base in (("path", None), ("relative", directory)):
            value = stored.get(key)
            if isinstance(value, str) and value:
                candidates.append(Path(value) if base is None else base / value)
    if not Path(configured).is_absolute():
        candidates.append(directory / configured)  # runs of older versions stored it as given
    for candidate in candidates:
        if candidate.exists():
            return absolute(candidate)
    return configured


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    directory = run_dir / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _CHECKPOINT_NAME.match(p.name))


@dataclass
class Plan:
    """What ``train`` will do with its run directory."""

    run_dir: Path
    resume: Path | None  # the checkpoint (file or run directory) to continue from, or None
    note: str | None = None  # said once training starts (a restart from scratch)


def plan(
    run_dir: Path,
    config: Config,
    resume: Path | None,
    resume_dir: Path | None,
    run_dir_given: bool,
    main_rank: bool = True,
) -> Plan:
    """Decide (and check, writing nothing) how ``train`` uses ``run_dir``; see the module doc.

    ``run_dir_given``: --run-dir was passed. A requeued SLURM job passes both --run-dir DIR and
    --resume DIR, and may find DIR without any run in it when it was stopped very early.
    ``main_rank``: false in the other ranks of an srun/torchrun launch, which run this same
    command; rank 0 owns the directory and may already have claimed it for this very run.
    """
    check_output_dir(run_dir, "--run-dir")
    same = resume_dir is not None and absolute(run_dir) == absolute(resume_dir)
    if main_rank and (resume is None or not same) and holds_run(run_dir):
        raise UsageError(
            f"run directory {run_dir} already holds a run",
            f"continue it with --resume {run_dir}, or pass another --run-dir",
        )
    if resume is None or resume.is_file() or list_checkpoints(resume):
        return Plan(run_dir, resume)
    # --resume DIR without a checkpoint: only a restart of this very run may begin from scratch.
    record = read_record(resume)
    if same and record is not None and record.get("fingerprint") == fingerprint(config):
        return Plan(run_dir, None, f"{run_dir} has no checkpoint yet: this run starts from scratch")
    if same and run_dir_given and not holds_run(run_dir):
        return Plan(run_dir, None, f"{run_dir} holds no run yet: starting it from scratch")
    if record is not None:
        raise UsageError(
            f"no checkpoint in {resume}, and it belongs to another run (its settings differ)",
            "resume with that run's settings, or start a new run with another --run-dir",
        )
    raise DataError(
        f"no checkpoint found in {resume}",
        f"expected {CHECKPOINT_DIR}/step-NNNNNNNN.ckpt there; start a new run without --resume",
    )


@contextlib.contextmanager
def claim(run_plan: Plan, config: Config) -> Iterator[None]:
    """Write ``run.json`` and run the block. A user error before any new checkpoint undoes what
    the block did: a new run's files are removed (and its directory, if it was created), a
    resumed run gets its previous ``run.json`` back."""
    directory = run_plan.run_dir
    created = not directory.exists()
    base = nearest_existing(directory)  # the directories below it are created for the run
    before = set(directory.iterdir()) if not created else set()
    new_run = not holds_run(directory)
    record_path = directory / RUN_FILE
    old_record = record_path.read_bytes() if record_path.is_file() else None
    old_times = (record_path.stat().st_atime_ns, record_path.stat().st_mtime_ns) if old_record else None
    checkpoints = list_checkpoints(directory)
    write_record(directory, config)
    if run_plan.note:
        warn(run_plan.note)
        # The stopped attempt's logs cover steps this restart computes again.
        for name in ("metrics.jsonl", "result.json"):
            (directory / name).unlink(missing_ok=True)
        shutil.rmtree(directory / "tensorboard", ignore_errors=True)
    try:
        yield
    except UsageError:
        if list_checkpoints(directory) == checkpoints:  # nothing trained that could be lost
            if new_run:
                _remove_new(directory, before, base if created else None)
            elif old_record is not None and old_times and record_path.read_bytes() != old_record:
                atomic_write_bytes(record_path, old_record)
                os.utime(record_path, ns=old_times)  # as if it had never been touched
        raise


def _remove_new(directory: Path, before: set[Path], created_below: Path | None) -> None:
    """Remove the entries of ``directory`` not in ``before``; when the directory was created,
    remove it and its (now empty) parents up to ``created_below``."""
    with contextlib.suppress(OSError):
        for entry in set(directory.iterdir()) - before:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        if created_below is not None:
            current = Path(absolute(directory))
            while current != created_below and current != current.parent:
                current.rmdir()  # OSError (not empty) stops the walk: something else lives there
                current = current.parent
