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
    """Base class: a message for the ``error:`` line and a ``hint:`` that says how to fix it.

    Every error prints exactly one hint line: a raise site without a specific hint gets the
    class's ``default_hint``.
    """

    exit_code = EXIT_FAILURE
    default_hint = "see the messages above"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint


class UsageError(MlpfctlError):
    """Bad flag, bad config value, bad input file: the user can fix it (exit 2)."""

    exit_code = EXIT_USAGE
    default_hint = "run the command with --help for its usage"


class ConfigError(UsageError):
    """A configuration key, type or range problem (exit 2)."""

    default_hint = "see the documentation of each key: mlpfctl config show --docs"


class DataError(UsageError):
    """An input file that is corrupt, truncated or of a foreign format (exit 2)."""

    default_hint = "check the file, or regenerate the dataset with 'mlpfctl data generate'"


class RuntimeFailure(MlpfctlError):
    """Something went wrong while running (exit 1)."""


class Checkpointed(MlpfctlError):
    """The run stopped on a signal after writing a checkpoint; resubmit with --resume (exit 3)."""

    exit_code = EXIT_CHECKPOINTED


# errno name -> what the user can do about it (the message already names the path and the cause)
_OS_HINTS = {
    "EACCES": "check the permissions of the path, or choose another location",
    "EPERM": "the path is protected (permissions or an immutable attribute): choose another location",
    "EROFS": "the file system is read-only: choose a writable location",
    "ENOSPC": "the disk is full: free space or choose another location",
    "EDQUOT": "the disk quota is exhausted: free space or choose another location",
    "ENOENT": "check the path (a missing file or parent directory)",
    "EEXIST": "remove it or choose another path",
    "EISDIR": "pass a file path, not a directory",
    "ENOTDIR": "a part of the path is a file, not a directory: fix the path",
    "ENAMETOOLONG": "use a shorter path",
    "ENOTEMPTY": "the directory is not empty: choose another path",
    "ELOOP": "the path has a symbolic-link loop: fix the path",
    "EMFILE": "too many open files: raise the limit (ulimit -n)",
}


def os_error(exc: OSError) -> UsageError:
    """A user error for a failed file operation: the path, the cause and what to do about it."""
    import errno
    import os

    name = errno.errorcode.get(exc.errno or 0, "")
    cause = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        where = os.fsdecode(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {os.fsdecode(exc.filename2)}"
        message = f"{where}: {cause}"
    else:
        message = cause
    return UsageError(message, _OS_HINTS.get(name, "check the path and the file system"))
