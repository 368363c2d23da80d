"""What was submitted: the jobs registry plus live state from SLURM, cancel, logs.

State comes from one ``scontrol show job -o`` call for all jobs (the same controller request that
``squeue`` makes; one line per job or array task, with the exit code that ``squeue`` cannot show).
Jobs the controller has forgotten (``MinJobAge`` after they ended) come from one ``sacct`` call
where accounting exists, else from the last line the job script wrote into its log (``mlpfctl:
job N ended with exit code C``). A final state, once seen, is appended to the registry and read
from there ever after, so a finished job never turns into ``UNKNOWN``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpfctl.errors import RuntimeFailure, UsageError
from mlpfctl.systems.runner import Runner

TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}
# shown when neither SLURM, accounting nor the log says how a job ended (killed before its last line)
ENDED = "ENDED"
# scontrol -o separates Key=value pairs by spaces, but values (job names, paths) may hold spaces:
# split only where a space is followed by the next Key=
_NEXT_KEY = re.compile(r" (?=[A-Za-z][A-Za-z/:_]*=)")
_END_LINE = re.compile(rb"mlpfctl: job (\d+) ended with exit code (\d+)")
_TASK_RANGE = re.compile(r"(\d+)(?:-(\d+))?(?::(\d+))?")


def append_record(registry: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line under a lock: concurrent writers never mix lines."""
    registry.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(registry, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(registry: Path) -> list[dict[str, Any]]:
    """The submitted jobs in order, each with its remembered final state (``final``) if any."""
    if not registry.exists():
        return []
    records: list[dict[str, Any]] = []
    finals: dict[str, dict[str, Any]] = {}
    for line in registry.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash: skip it, keep the rest
        if not isinstance(record, dict) or "job_id" not in record:
            continue
        if "final" in record:
            finals[str(record["job_id"])] = record["final"]
        else:
            records.append(record)
    for record in records:
        if str(record["job_id"]) in finals:
            record["final"] = finals[str(record["job_id"])]
    return records


def find_record(registry: Path, job_id: str) -> dict[str, Any] | None:
    base = job_id.split("_", 1)[0]
    return next((r for r in reversed(read_records(registry)) if str(r["job_id"]) == base), None)


def _fields(line: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in _NEXT_KEY.split(line.strip()) if "=" in part)


def job_lines(job_id: str, runner: Runner) -> list[dict[str, str]]:
    """``scontrol show job -o ID`` (one dict per array task); empty when SLURM forgot the job."""
    result = runner(["scontrol", "show", "job", "-o", job_id])
    if result.returncode != 0:
        return []
    return [info for info in map(_fields, result.stdout.strip().splitlines()) if "JobId" in info]


def job_info(job_id: str, runner: Runner) -> dict[str, str]:
    """The job's (an array's first task's) ``scontrol show job -o`` fields; empty when forgotten."""
    lines = job_lines(job_id, runner)
    return lines[0] if lines else {}


@dataclass
class TaskState:
    state: str
    exit_code: str = ""  # SLURM's "EXIT:SIGNAL"
    elapsed: str = ""
    reason: str = ""
    restarts: int = 0


@dataclass
class JobState:
    """One registry job: a plain job, or an array job and its tasks by index."""

    state: str
    exit_code: str = ""
    elapsed: str = ""
    reason: str = ""
    restarts: int = 0
    source: str = ""  # scontrol, sacct, log, registry
    tasks: dict[str, TaskState] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.state in TERMINAL or self.state == ENDED

    def as_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "state": self.state,
            "exit_code": self.exit_code,
            "elapsed": self.elapsed,
            "reason": self.reason,
            "restarts": self.restarts,
            "source": self.source,
        }
        if self.tasks:
            row["tasks"] = {index: task.__dict__ for index, task in sorted(self.tasks.items(), key=_index)}
        return row


def _index(item: tuple[str, Any]) -> int:
    return int(item[0])


def exit_status(exit_code: str, state: str) -> int:
    """A process exit status from SLURM's ``EXIT:SIGNAL``: the exit code, 128 + the signal, or
    (nothing recorded) 0 for COMPLETED and 1 for any other end."""
    code, _, signal = exit_code.partition(":")
    if code.isdigit() and int(code):
        return int(code)
    if signal.isdigit() and int(signal):
        return 128 + int(signal)
    return 0 if state == "COMPLETED" else 1


def job_exit_status(job: JobState) -> int:
    """The exit status of a finished job; for an array, the first failing task's."""
    if not job.tasks:
        return exit_status(job.exit_code, job.state)
    codes = [exit_status(t.exit_code, t.state) for _, t in sorted(job.tasks.items(), key=_index)]
    return next((code for code in codes if code), 0)


def _task_indices(text: str) -> list[str]:
    """``3``, ``3-5%2``, ``1,4-6`` (a pending array's not yet started tasks) as indices."""
    indices: list[str] = []
    for part in text.split("%", 1)[0].split(","):
        match = _TASK_RANGE.fullmatch(part.strip())
        if match is None:
            continue
        low = int(match.group(1))
        high = int(match.group(2) or low)
        step = int(match.group(3) or 1)
        indices += [str(i) for i in range(low, high + 1, step)]
    return indices


def _task_state(info: Mapping[str, str]) -> TaskState:
    return TaskState(
        state=info.get("JobState", "UNKNOWN"),
        exit_code=info.get("ExitCode", ""),
        elapsed=info.get("RunTime", ""),
        reason=info.get("Reason", ""),
        restarts=int(info.get("Restarts", "0") or 0),
    )


def _summarise(tasks: Mapping[str, TaskState], size: int, source: str) -> JobState:
    """An array job's state: running while any task is, else finished once every task is."""
    states = [t.state for t in tasks.values()]
    live = [s for s in states if s not in TERMINAL]
    if live:
        state = "RUNNING" if "RUNNING" in live else live[0]
    elif len(tasks) < size:
        state = "UNKNOWN"  # some tasks are forgotten already: the caller asks elsewhere
    elif all(s == "COMPLETED" for s in states):
        state = "COMPLETED"
    else:
        state = next(s for s in states if s != "COMPLETED")
    job = JobState(state=state, source=source, tasks=dict(tasks))
    job.exit_code = f"{job_exit_status(job)}:0" if not live and len(tasks) >= size else ""
    job.restarts = sum(t.restarts for t in tasks.values())
    job.reason = ", ".join(f"{s.lower()} {states.count(s)}" for s in sorted(set(states)))
    return job


def controller_states(runner: Runner, only: str | None = None) -> dict[str, dict[str, TaskState]]:
    """Every job the controller knows (or only job ``only``, with all its array tasks), from one
    ``scontrol show job -o`` call: plain jobs as ``{id: {"": state}}``, array jobs as
    ``{array id: {task index: state}}``."""
    result = runner(["scontrol", "show", "job", "-o", *([only] if only else [])])
    if result.returncode != 0 and only:
        return {}  # "Invalid job id specified": the controller has forgotten it
    if result.returncode != 0:
        raise RuntimeFailure(
            f"scontrol show job failed: {result.stderr.strip() or result.stdout.strip()}", "is slurmctld up?"
        )
    jobs: dict[str, dict[str, TaskState]] = {}
    for line in result.stdout.splitlines():
        info = _fields(line)
        if "JobId" not in info:
            continue  # "No jobs in the system"
        array_id = info.get("ArrayJobId", "")
        if array_id and array_id != "(null)":
            task = _task_state(info)
            for index in _task_indices(info.get("ArrayTaskId", "")):
                jobs.setdefault(array_id, {})[index] = task
        else:
            jobs.setdefault(info["JobId"], {})[""] = _task_state(info)
    return jobs


def accounting_states(job_ids: Sequence[str], runner: Runner) -> dict[str, dict[str, TaskState]]:
    """Ended jobs from accounting, one ``sacct`` call; empty where the site runs none."""
    if not job_ids:
        return {}
    try:
        result = runner(
            [
                "sacct",
                "--noheader",
                "--parsable2",
                "--allocations",
                "--jobs",
                ",".join(job_ids),
                "--format",
                "JobID,State,ExitCode,Elapsed",
            ]
        )
    except RuntimeFailure:  # no sacct installed
        return {}
    if result.returncode != 0:  # "Slurm accounting storage is disabled"
        return {}
    jobs: dict[str, dict[str, TaskState]] = {}
    for line in result.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 4:
            continue
        job_id, state, exit_code, elapsed = parts[:4]
        state = state.split()[0] if state else "UNKNOWN"  # "CANCELLED by 1234"
        base, _, index = job_id.partition("_")
        if index.startswith("["):
            continue  # a pending range of an array: not ended
        jobs.setdefault(base, {})[index] = TaskState(state, exit_code, elapsed)
    return jobs


def log_files(record: Mapping[str, Any]) -> list[Path]:
    """The job's output files (an array's one per task, in task order)."""
    run_dir = Path(record["run_dir"])
    job_id = str(record["job_id"])
    if record.get("array"):
        found = list(run_dir.glob(f"slurm-{job_id}_*.out"))
        return sorted(found, key=lambda p: int(p.stem.rsplit("_", 1)[1]) if p.stem[-1].isdigit() else -1)
    return [run_dir / f"slurm-{job_id}.out"]


def _log_end(path: Path) -> str | None:
    """The exit code in the script's last line (``mlpfctl: job N ended with exit code C``)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            tail = handle.read()
    except OSError:
        return None
    matches = _END_LINE.findall(tail)
    return matches[-1][1].decode() if matches else None


def log_states(record: Mapping[str, Any]) -> dict[str, TaskState]:
    """Final states from the logs' last lines (our scripts write one when they end)."""
    tasks: dict[str, TaskState] = {}
    for path in log_files(record):
        code = _log_end(path)
        if code is None:
            continue
        index = path.stem.rsplit("_", 1)[1] if record.get("array") else ""
        tasks[index] = TaskState("COMPLETED" if code == "0" else "FAILED", f"{code}:0")
    return tasks


def _plain(tasks: Mapping[str, TaskState], source: str) -> JobState:
    task = tasks.get("") or next(iter(tasks.values()))
    return JobState(task.state, task.exit_code, task.elapsed, task.reason, task.restarts, source)


def _from_tasks(record: Mapping[str, Any], tasks: Mapping[str, TaskState], source: str) -> JobState:
    if record.get("array"):
        return _summarise(tasks, int(record.get("array_size") or len(tasks)), source)
    return _plain(tasks, source)


def _remembered(record: Mapping[str, Any]) -> JobState | None:
    final = record.get("final")
    if not isinstance(final, dict):
        return None
    tasks = {str(k): TaskState(**v) for k, v in (final.get("tasks") or {}).items()}
    return JobState(
        state=str(final.get("state", ENDED)),
        exit_code=str(final.get("exit_code", "")),
        elapsed=str(final.get("elapsed", "")),
        reason=str(final.get("reason", "")),
        restarts=int(final.get("restarts", 0) or 0),
        source="registry",
        tasks=tasks,
    )


def job_states(records: Sequence[Mapping[str, Any]], runner: Runner) -> dict[str, JobState]:
    """The state of every record: remembered, from the controller (one call), from accounting
    (one call for the rest), from the logs, or ENDED."""
    states: dict[str, JobState] = {}
    pending: list[Mapping[str, Any]] = []
    for record in records:
        remembered = _remembered(record)
        if remembered is not None:
            states[str(record["job_id"])] = remembered
        else:
            pending.append(record)
    if not pending:
        return states
    # one job (mlpfctl submit --wait): ask for it alone; several: one call for all of them
    known = controller_states(runner, str(pending[0]["job_id"]) if len(records) == 1 else None)
    missing: list[Mapping[str, Any]] = []
    for record in pending:
        job_id = str(record["job_id"])
        tasks = known.get(job_id)
        job = _from_tasks(record, tasks, "scontrol") if tasks else None
        if job is None or job.state == "UNKNOWN":
            missing.append(record)
        else:
            states[job_id] = job
    accounted = accounting_states([str(r["job_id"]) for r in missing], runner)
    for record in missing:
        job_id = str(record["job_id"])
        tasks = {**known.get(job_id, {}), **accounted.get(job_id, {})}
        job = _from_tasks(record, tasks, "sacct") if accounted.get(job_id) else None
        if job is None or job.state == "UNKNOWN":
            tasks = {**log_states(record), **known.get(job_id, {})}
            job = _from_tasks(record, tasks, "log") if tasks else None
        if job is None or job.state == "UNKNOWN":
            job = JobState(ENDED, source="", reason="SLURM has forgotten it and its log has no last line")
        states[job_id] = job
    return states


def remember(registry: Path, records: Iterable[Mapping[str, Any]], states: Mapping[str, JobState]) -> None:
    """Append the final state of every record that just ended (once per job)."""
    for record in records:
        job = states.get(str(record["job_id"]))
        if job is None or not job.final or job.source in ("registry", "") or "final" in record:
            continue
        final = job.as_row()
        append_record(registry, {"job_id": str(record["job_id"]), "final": final})


def status(
    records: list[dict[str, Any]], runner: Runner, registry: Path | None = None
) -> Iterator[dict[str, Any]]:
    """Registry rows with their state; final states are remembered in ``registry`` when given."""
    states = job_states(records, runner)
    if registry is not None:
        remember(registry, records, states)
    for record in records:
        row = {key: value for key, value in record.items() if key != "final"}
        yield {**row, **states[str(record["job_id"])].as_row()}


def wait(
    record: Mapping[str, Any],
    runner: Runner,
    registry: Path,
    write: Any,
    interval: float = 2.0,
    sleep: Any = None,
) -> JobState:
    """Stream the job's log through ``write`` until the job has ended (requeues included); return
    its final state, remembered in the registry."""
    import time

    pause = sleep or time.sleep
    job_id = str(record["job_id"])
    follower = LogFollower(log_files(record), array=record if record.get("array") else None)
    while True:
        follower.poll(write)
        job = job_states([record], runner)[job_id]
        if job.final:
            follower.poll(write, final=True)
            remember(registry, [record], {job_id: job})
            return job
        pause(interval)


def check_job_id(job_id: str) -> str:
    if not re.fullmatch(r"\d+(_\d+)?", job_id):
        raise UsageError(f"'{job_id}' is not a SLURM job id", "job ids are numbers: see `mlpfctl jobs`")
    return job_id


def cancel(job_id: str, runner: Runner, registry: Path) -> str:
    """Cancel a pending or running job; return what happened ("cancelled", or the state it
    already ended in). A job id that neither SLURM nor the registry knows is a usage error:
    ``scancel`` itself says nothing for many of them."""
    check_job_id(job_id)
    lines = job_lines(job_id, runner)
    if not lines:
        if find_record(registry, job_id) is None:
            raise UsageError(
                f"no job {job_id}: SLURM does not know it and mlpfctl did not submit it",
                "see `mlpfctl jobs` (or squeue) for the job ids",
            )
        return ENDED  # ours, finished long enough ago that SLURM forgot it (MinJobAge)
    states = [info.get("JobState", "UNKNOWN") for info in lines]
    if all(state in TERMINAL for state in states):  # every task of an array, or the one job
        return next((state for state in states if state != "COMPLETED"), "COMPLETED")
    result = runner(["scancel", job_id])
    if result.returncode != 0:
        raise RuntimeFailure(f"scancel {job_id} failed: {result.stderr.strip()}", "see `mlpfctl jobs`")
    return "cancelled"


def log_paths(job_id: str, registry: Path, runner: Runner) -> list[Path]:
    """The output files of a job (an array's, or one task's for ``ID_TASK``)."""
    check_job_id(job_id)
    record = find_record(registry, job_id)
    if record is not None:  # our own jobs: the script names these files
        if "_" in job_id:
            return [Path(record["run_dir"]) / f"slurm-{job_id}.out"]
        return log_files(record)
    info = job_info(job_id, runner)
    if info.get("StdOut"):
        return [Path(info["StdOut"])]
    raise UsageError(f"job {job_id} is neither known to SLURM nor in {registry}", "see `mlpfctl jobs`")


@dataclass
class LogFollower:
    """Prints what a job's output files gained since the last call. For a whole array job the
    tasks' files are found as they appear, and each line is prefixed with its task index."""

    paths: list[Path]
    array: Mapping[str, Any] | None = None  # the array job's record: follow all its tasks
    offsets: dict[Path, int] = field(default_factory=dict)
    partial: dict[Path, bytes] = field(default_factory=dict)

    def poll(self, write: Any, final: bool = False) -> None:
        files = log_files(self.array) if self.array is not None else self.paths
        prefixed = self.array is not None
        for path in files:
            if not path.exists():
                continue
            with path.open("rb") as handle:
                handle.seek(self.offsets.get(path, 0))
                chunk = handle.read()
            self.offsets[path] = self.offsets.get(path, 0) + len(chunk)
            if not prefixed:
                write(chunk.decode("utf-8", errors="replace"))
                continue
            data = self.partial.pop(path, b"") + chunk
            lines = data.split(b"\n")
            rest = lines.pop()
            if rest and not final:
                self.partial[path] = rest  # an unfinished line: wait for its end
            elif rest:
                lines.append(rest)
            tag = f"[task {path.stem.rsplit('_', 1)[1]}] "
            write("".join(f"{tag}{line.decode('utf-8', errors='replace')}\n" for line in lines))
