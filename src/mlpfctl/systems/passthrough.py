"""Site options passed through to sbatch (``--sbatch-arg``), minus the ones mlpfctl decides.

``--reservation``, ``--mail-type``, ``--comment``, a ``--qos`` where the partition has none: the
script gets them as ``#SBATCH`` lines. An option that would override what the request checked
(wall time, GPUs, the log file, the requeue logic, ...) is refused with the reason and the
mlpfctl option to use instead. sbatch accepts unambiguous abbreviations of its long options, so
a name that abbreviates a controlled option is refused too.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlpfctl.errors import UsageError
from mlpfctl.systems.profiles import Partition, SystemProfile

_LAYOUT = "the job's tasks follow from --nodes, --gpus-per-node and the launcher"
_GPUS = "use --gpus-per-node (the profile says how this site asks for GPUs)"
_MEMORY = (
    "the profile sets memory (whole nodes: the partition's; shared GPU partitions: per GPU, as the site "
    "bills it)"
)
_LOG = "the job's log is RUN_DIR/slurm-%j.out, appended across requeues (mlpfctl logs reads it)"
_SUBMIT = "mlpfctl submit runs sbatch itself: use mlpfctl submit --dry-run / --wait"
CONTROLLED: dict[str, str] = {
    "--job-name": "use mlpfctl submit --job-name",
    "--partition": "use --partition (checked against the profile's limits)",
    "--account": "use --account",
    "--nodes": "use --nodes (checked against the partition's limit)",
    "--ntasks": _LAYOUT,
    "--ntasks-per-node": _LAYOUT,
    "--ntasks-per-gpu": _LAYOUT,
    "--cpus-per-task": "use --cpus-per-task (checked against the node's CPUs)",
    "--cpus-per-gpu": "use --cpus-per-task (checked against the node's CPUs)",
    "--gpus": _GPUS,
    "--gpus-per-node": _GPUS,
    "--gpus-per-task": _GPUS,
    "--gres": _GPUS,
    "--mem": _MEMORY,
    "--mem-per-cpu": _MEMORY,
    "--mem-per-gpu": _MEMORY,
    "--time": "use --time (checked against the partition's limit)",
    "--output": _LOG,
    "--error": _LOG,
    "--open-mode": _LOG,
    "--signal": "the time-limit warning that makes the job checkpoint: set submit.warning_seconds",
    "--requeue": "the job requeues itself after checkpointing: set submit.max_requeues (0: never)",
    "--no-requeue": "the job requeues itself after checkpointing: set submit.max_requeues (0: never)",
    "--array": "use mlpfctl submit --array N[%M]",
    "--dependency": "use mlpfctl submit --after JOB[:ok|any]",
    "--kill-on-invalid-dep": "mlpfctl submit --after sets it (a failed parent cancels the job)",
    "--chdir": "the job runs in the directory mlpfctl submit ran in (relative paths were checked there)",
    "--export": "the job needs the environment mlpfctl submit checked it in (MLPFCTL_* settings)",
    "--wrap": "the job is the rendered script",
    "--parsable": _SUBMIT,
    "--test-only": _SUBMIT,
    "--wait": _SUBMIT,
}


def _split(arg: str) -> tuple[str, str | None]:
    name, sep, value = arg.partition("=")
    if not sep and " " in arg.strip():  # "--mail-type END" given as one argument
        name, _, value = arg.strip().partition(" ")
        return name, value.strip()
    return name, value if sep else None


def _profile_sets(profile: SystemProfile, part: Partition) -> dict[str, str]:
    """Options this profile and partition render themselves, with where they come from."""
    source = f"the {profile.name} profile ({profile.source.name})"
    owned = {_split(option)[0]: f"{source} sets it" for option in profile.sbatch}
    if profile.constraint:
        owned["--constraint"] = f"{source} sets --constraint={profile.constraint}"
    if part.qos:
        owned["--qos"] = (
            f"partition '{part.name}' on {profile.name} is the QOS {part.qos}: choose another --partition"
        )
    if part.exclusive:
        owned["--exclusive"] = f"partition '{part.name}' on {profile.name} is node-exclusive already"
    return owned


def check_sbatch_args(
    args: Sequence[str], profile: SystemProfile, part: Partition, qos: str | None
) -> tuple[tuple[str, ...], str | None]:
    """The options to render as ``#SBATCH`` lines, and the QOS (``--qos`` becomes the request's,
    so that the script has one ``--qos`` line)."""
    refused = {**CONTROLLED, **_profile_sets(profile, part)}
    kept: list[str] = []
    for arg in args:
        name, value = _split(arg)
        if not name.startswith("--") or len(name) < 3:
            raise UsageError(
                f"--sbatch-arg {arg!r} is not a long sbatch option",
                "write the long form, e.g. --sbatch-arg=--reservation=maint or --sbatch-arg=--mail-type=END",
            )
        reason = refused.get(name)
        if reason is None:
            # sbatch takes unambiguous abbreviations (--ti=5 is --time=5 where nothing else starts so)
            covered = sorted(option for option in refused if option.startswith(name))
            if covered:
                reason = f"it abbreviates {', '.join(covered)}, which mlpfctl sets: {refused[covered[0]]}"
        if reason is not None:
            raise UsageError(f"--sbatch-arg {arg!r} is refused: {name} is set by mlpfctl", reason)
        if name == "--qos":
            if not value:
                raise UsageError("--sbatch-arg --qos needs a value", "e.g. --sbatch-arg=--qos=high")
            if qos and qos != value:
                raise UsageError(
                    f"--sbatch-arg --qos={value} contradicts submit.qos={qos}", "give the QOS once"
                )
            qos = value
            continue
        kept.append(name if value is None else f"{name}={value}")
    return tuple(kept), qos
