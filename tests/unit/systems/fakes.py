"""A fake SLURM at the process boundary (sbatch, scontrol, scancel, sinfo) for the submit tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlpfctl.systems.runner import Result

SINFO_JSON = (Path(__file__).resolve().parents[2] / "data" / "sinfo-22.05.json").read_text()


class FakeSlurm:
    """Answers sbatch/scontrol/scancel like SLURM 22.05; fails on anything else."""

    def __init__(self, sbatch: Result | None = None) -> None:
        self.calls: list[list[str]] = []
        self.sbatch = sbatch or Result(0, "77\n", "")
        self.states: dict[str, str] = {}

    def __call__(self, argv: Sequence[str]) -> Result:
        argv = list(argv)
        self.calls.append(argv)
        if argv[0] == "sbatch":
            return self.sbatch
        if argv[:4] == ["scontrol", "show", "job", "-o"]:
            state = self.states.get(argv[4])
            if state is None:
                return Result(1, "", "slurm_load_jobs error: Invalid job id specified\n")
            line = (
                f"JobId={argv[4]} JobName=a b c JobState={state} Reason=None Restarts=1 ExitCode=0:0 "
                f"RunTime=00:00:05 StdOut=/o/{argv[4]}.out"
            )
            return Result(0, line + "\n", "")
        if argv == ["sinfo", "--json"]:
            return Result(0, SINFO_JSON, "")
        if argv[0] == "sinfo":
            return Result(0, "debug*|infinite\ngpu|infinite\n", "")
        if argv[0] == "scancel":
            return Result(0, "", "")
        raise AssertionError(f"unexpected command {argv}")
