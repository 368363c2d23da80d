"""The one place that runs SLURM client commands (sbatch, squeue, scontrol, scancel, sinfo).

Tests and dry runs swap ``Runner`` for a fake at this boundary only; everything above it is the
real code.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mlpfctl.errors import RuntimeFailure


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str]], Result]


def run_command(argv: Sequence[str]) -> Result:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise RuntimeFailure(
            f"'{argv[0]}' is not installed here",
            "run this on a SLURM login node (or start a local cluster: sudo scripts/local-slurm.sh setup)",
        ) from None
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"'{' '.join(argv)}' did not answer in 120 s", "is slurmctld up?") from None
    return Result(proc.returncode, proc.stdout, proc.stderr)


def default_runner() -> Runner:
    """The runner the CLI uses (tests replace this function, not subprocess)."""
    return run_command
