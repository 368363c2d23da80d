"""A fake SLURM at the process boundary (sbatch, scontrol, scancel, sinfo) for the submit tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlpfctl.systems.runner import Result

SINFO_JSON = (Path(__file__).resolve().parents[2] / "data" / "sinfo-22.05.json").read_text()


class FakeSlurm:
    """Answers sbatch/scontrol/scancel/sacct like SLURM 22.05; fails on anything else."""

    def __init__(self, sbatch: Result | None = None) -> None:
        self.calls: list[list[str]] = []
        self.sbatch = sbatch or Result(0, "77\n", "")
        self.states: dict[str, str] = {}
        self.exit_codes: dict[str, str] = {}
        # no accounting, as on the local cluster (sacct exits 1)
        self.sacct = Result(1, "", "sacct: error: Slurm accounting storage is disabled\n")

    def _line(self, job_id: str) -> str:
        return (
            f"JobId={job_id} JobName=a b c JobState={self.states[job_id]} Reason=None Restarts=1 "
            f"ExitCode={self.exit_codes.get(job_id, '0:0')} RunTime=00:00:05 StdOut=/o/{job_id}.out"
        )

    def __call__(self, argv: Sequence[str]) -> Result:
        argv = list(argv)
        self.calls.append(argv)
        if argv[0] == "sbatch":
            return self.sbatch
        if argv[:4] == ["scontrol", "show", "job", "-o"]:
            if len(argv) == 4:  # every job the controller knows
                lines = [self._line(job_id) for job_id in self.states]
                return Result(0, "\n".join(lines) + "\n" if lines else "No jobs in the system\n", "")
            if argv[4] not in self.states:
                return Result(1, "", "slurm_load_jobs error: Invalid job id specified\n")
            return Result(0, self._line(argv[4]) + "\n", "")
        if argv[0] == "sacct":
            return self.sacct
        if argv == ["sinfo", "--json"]:
            return Result(0, SINFO_JSON, "")
        if argv[0] == "sinfo":
            return Result(0, "debug*|infinite\ngpu|infinite\n", "")
        if argv[0] == "scancel":
            return Result(0, "", "")
        raise AssertionError(f"unexpected command {argv}")
