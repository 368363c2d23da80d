"""Checks on the places a command will write to, made before it does any work.

A command that trains for an hour and then cannot write its result into a read-only directory, or
finds a file where its output directory belongs, has wasted the hour: these checks let it fail in
milliseconds instead, naming the path. They create nothing. Root is not stopped by permission
bits, but ``os.access`` still reports read-only mounts and immutable files, so the checks hold
for root too.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlpfctl.errors import UsageError


def nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists (what creating ``path`` would use)."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _not_writable(path: Path) -> str:
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "a read-only file system"
    except OSError:
        pass
    return "not writable (permissions or an immutable attribute)"


def check_output_dir(path: Path, what: str, hint: str | None = None) -> None:
    """``path`` is a directory this command writes into, creating it if needed.

    ``hint`` replaces the advice for an unwritable place (where the user cannot choose it).
    """
    if not str(path).strip():
        raise UsageError(f"{what} is an empty path", f"give {what} a directory path")
    if path.exists() and not path.is_dir():
        raise UsageError(
            f"{what} {path} is a file, not a directory", f"pass a directory (or a new path) as {what}"
        )
    base = nearest_existing(path)
    if not base.is_dir():
        raise UsageError(
            f"{what} {path} cannot be created: {base} is a file, not a directory",
            f"fix the path of {what}",
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(
            f"{what} {path} cannot be written: {base} is {_not_writable(base)}",
            hint or f"choose a writable location for {what}",
        )


def check_output_file(path: Path, what: str, example: str = "out.file") -> None:
    """``path`` is a file this command (re)writes atomically, creating its directory if needed."""
    if not str(path).strip():
        raise UsageError(f"{what} is an empty path", f"give {what} a file path")
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory", f"pass a file path, e.g. {what} {path / example}")
    base = nearest_existing(path.parent)
    if not base.is_dir():
        raise UsageError(
            f"{what} {path} cannot be created: {base} is a file, not a directory", f"fix the path of {what}"
        )
    target = path if path.exists() else base
    if not os.access(target, os.W_OK) or not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(
            f"{what} {path} cannot be written: {target} is {_not_writable(target)}",
            f"choose a writable location with {what}",
        )


def check_input_dir(path: Path, what: str, hint: str) -> None:
    """``path`` must be an existing directory this command reads."""
    if not path.exists():
        raise UsageError(f"{what} {path} does not exist", hint)
    if not path.is_dir():
        raise UsageError(f"{what} {path} is a file, not a directory", hint)


def unused_dir(parent: Path, base: str) -> Path:
    """``parent/base``, or ``base-2``, ``base-3``, ... when it exists: a generated, time-stamped
    name must not land in a directory another run or job already owns (scripts start several
    within one second)."""
    candidate, n = parent / base, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{base}-{n}"
    return candidate
