"""The error types every command raises, and the exit codes they map to.

Exit codes (documented in the README):
    0  success
    1  runtime failure (training diverged, a job failed, a device vanished)
    2  usage or configuration error (bad flag, bad config value, bad input file)
    3  interrupted by a signal after a clean checkpoint (SIGTERM/SIGUSR1 from SLURM): requeue me
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CHECKPOINTED = 3


class MlpfctlError(Exception):
    """Base class: a message for the ``error:`` line and a ``hint:`` that says how to fix it."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(MlpfctlError):
    """Bad flag, bad config value, bad input file: the user can fix it (exit 2)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration key, type or range problem (exit 2)."""


class DataError(UsageError):
    """An input file that is corrupt, truncated or of a foreign format (exit 2)."""


class RuntimeFailure(MlpfctlError):
    """Something went wrong while running (exit 1)."""


class Checkpointed(MlpfctlError):
    """The run stopped on a signal after writing a checkpoint; resubmit with --resume (exit 3)."""

    exit_code = EXIT_CHECKPOINTED
