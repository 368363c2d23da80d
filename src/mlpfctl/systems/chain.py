"""How one job relates to others: array tasks (``--array N[%M]``) and dependencies (``--after``).

Both are plain data on a ``JobRequest``; the header template renders the array, and ``submit``
passes the dependencies to sbatch (a dependency names a job id, which exists only at submission).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mlpfctl.errors import UsageError

_ARRAY = re.compile(r"(\d+)(?:%(\d+))?")
_AFTER = re.compile(r"(\d+(?:_\d+)?)(?::(\w+))?")
# SLURM's dependency types for "after the job succeeded" and "after it ended, however"
CONDITIONS = {"ok": "afterok", "any": "afterany"}


@dataclass(frozen=True)
class ArraySpec:
    """``size`` tasks (indices 0..size-1), at most ``throttle`` running at once."""

    size: int
    throttle: int | None = None

    @property
    def sbatch(self) -> str:
        """The ``--array`` value: ``0-15%4``."""
        return f"0-{self.size - 1}" + (f"%{self.throttle}" if self.throttle else "")

    def __str__(self) -> str:
        return f"{self.size}" + (f"%{self.throttle}" if self.throttle else "")


def parse_array(text: str) -> ArraySpec:
    match = _ARRAY.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"--array {text!r} is not N or N%M",
            "e.g. --array 16 (16 tasks) or --array 16%4 (16 tasks, at most 4 running at once)",
        )
    size, throttle = int(match.group(1)), int(match.group(2)) if match.group(2) else None
    if size < 1 or throttle == 0:
        raise UsageError(f"--array {text!r}: counts start at 1", "e.g. --array 16%4")
    if throttle is not None and throttle >= size:
        throttle = None  # %M with M >= N limits nothing
    return ArraySpec(size, throttle)


@dataclass(frozen=True)
class Dependency:
    """Start only after job ``job_id`` ended: successfully (``ok``) or in any way (``any``)."""

    job_id: str
    condition: str = "ok"

    @property
    def sbatch(self) -> str:
        return f"{CONDITIONS[self.condition]}:{self.job_id}"

    def __str__(self) -> str:
        return f"{self.job_id}:{self.condition}"


def parse_after(text: str) -> Dependency:
    match = _AFTER.fullmatch(text.strip())
    if match is None or (match.group(2) or "ok") not in CONDITIONS:
        raise UsageError(
            f"--after {text!r} is not JOB, JOB:ok or JOB:any",
            "JOB:ok (the default) starts after JOB succeeded, JOB:any after it ended in any way "
            "(job ids: mlpfctl jobs)",
        )
    return Dependency(match.group(1), match.group(2) or "ok")


def dependency_args(after: Sequence[Dependency]) -> list[str]:
    """sbatch options for ``after``: all must hold; a dependency that can never be satisfied (a
    parent that failed, for afterok) cancels the job instead of leaving it pending forever."""
    if not after:
        return []
    return ["--dependency=" + ",".join(d.sbatch for d in after), "--kill-on-invalid-dep=yes"]
