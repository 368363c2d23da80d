"""Build a checked ``JobRequest`` from the ``[submit]`` settings and a system profile.

Everything that could make SLURM reject the job, or make it fail hours later, is checked here,
before anything is written or submitted: wall time over the partition limit, more GPUs or nodes
than a partition has, a missing account, an unknown partition, SQLite shared across nodes.
Each check raises ``UsageError`` (exit 2) naming the limit and the fix.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from mlpfctl.config.schema import SubmitSection
from mlpfctl.errors import UsageError
from mlpfctl.paths import unused_dir
from mlpfctl.systems.chain import ArraySpec, Dependency, parse_after, parse_array
from mlpfctl.systems.passthrough import check_sbatch_args
from mlpfctl.systems.profiles import Partition, SystemProfile, did_you_mean
from mlpfctl.systems.slurmtime import format_time, parse_time

KINDS = ("train", "hpo", "scale-bench", "check", "data")
# what each kind runs (``python -m <module> <args...>``)
ENTRY = {
    "train": ("mlpfctl", ("train",)),
    "hpo": ("mlpfctl", ("hpo", "worker")),
    "scale-bench": ("mlpfctl", ("scale-bench",)),
    "check": ("mlpfctl.systems.check_dist", ()),
    "data": ("mlpfctl", ("data",)),
}
# kinds that run as array jobs (--array), and what one array task does
ARRAY_KINDS = {
    "hpo": "hpo worker steps on its share of a node, on the study that submit created",
    "data": "data generate on its block of shards (then one step after the array writes the manifest)",
}
# what the tasks and the manifest step of a data array add to its command line themselves
_DATA_TASK_OPTIONS = ("--task-index", "--task-count", "--manifest-only")
JOURNAL_FILE = "optuna-journal.log"
PGPASS_FILE = ".pgpass"
DEFAULT_TIME_S = 3600  # without --time: one hour, or the partition's limit if that is shorter
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class HpoPlan:
    """An HPO job: ``mlpfctl hpo run`` on the first node creates (or, after a requeue, resumes) the
    study and runs that node's workers; every other node runs ``mlpfctl hpo worker`` steps.

    As an array job, ``mlpfctl submit`` creates the study (``create_command``) before sbatch, and
    every task runs ``workers_per_node`` worker steps (the counts are per task then)."""

    workers: int
    workers_per_node: int
    gpus_per_worker: int
    storage: str  # never holds a password
    study: str
    driver_command: tuple[str, ...]  # after ``python -m mlpfctl``
    pgpass_file: Path | None = None

    @property
    def create_command(self) -> tuple[str, ...]:
        """``mlpfctl hpo create`` with the driver's arguments: creates the study or reuses it."""
        return ("hpo", "create", *self.driver_command[2:])


@dataclass(frozen=True)
class JobRequest:
    """Everything the renderer needs; every string a user typed is still raw (render quotes it)."""

    kind: str
    system: str
    job_name: str
    run_dir: Path
    partition: Partition
    account: str | None
    qos: str | None
    nodes: int
    time_s: int
    gpus_per_node: int
    tasks_per_node: int  # SLURM tasks per node (srun mode: one per GPU; torchrun: 1)
    procs_per_node: int  # training processes per node
    cpus_per_task: int
    launcher: str
    python: str
    container: str | None
    entry_module: str
    command: tuple[str, ...]  # after ``python -m entry_module``
    warning_s: int
    max_requeues: int
    cpu_bind: str
    # the directory the job runs in: where `mlpfctl submit` ran, so that relative paths in the
    # job's arguments mean on the node what they meant when the job was checked
    workdir: Path = field(default_factory=Path.cwd)
    mem_per_gpu: str | None = None  # --mem-per-gpu for sub-node jobs on shared GPU partitions
    # the job has its nodes to itself: an exclusive partition, or every GPU of a GPU node
    whole_node: bool = False
    array: ArraySpec | None = None
    after: tuple[Dependency, ...] = ()  # passed to sbatch at submission (job ids exist only then)
    sbatch_args: tuple[str, ...] = ()  # checked site options (--sbatch-arg), rendered as #SBATCH lines
    container_binds: tuple[str, ...] = ()  # host paths bound into the container
    # a follow-up job in the same run directory (e.g. a step that runs after an array, with
    # ``after``) is another script there
    script_name: str = "job.sh"
    hpo: HpoPlan | None = None
    scale_points: tuple[int, ...] = ()
    # written next to the script with mode 0600, never rendered or printed
    secret_files: dict[Path, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def time(self) -> str:
        return format_time(self.time_s)

    @property
    def script_path(self) -> Path:
        return self.run_dir / self.script_name

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node

    @property
    def log_pattern(self) -> str:
        """The job's output file name (sbatch patterns: an array task's is JOB_TASK)."""
        return "slurm-%A_%a.out" if self.array else "slurm-%j.out"


def current_python() -> str:
    """The interpreter of the environment mlpfctl runs in (jobs run the same installation)."""
    if sys.prefix != sys.base_prefix:
        return str(Path(sys.prefix) / "bin" / "python")
    return sys.executable or "python3"


def _check_text(what: str, value: str) -> str:
    # a newline in an #SBATCH value would end the comment and start a shell command
    if _CONTROL.search(value):
        raise UsageError(f"{what} {value!r} contains a control character", "use printable characters only")
    return value


def _limit_hint(profile: SystemProfile, part: Partition, need_s: int) -> str:
    longer = [
        f"{p.name} ({format_time(p.max_time_s)})"
        for p in profile.partitions.values()
        if p.max_time_s is None or p.max_time_s >= need_s
    ]
    hint = f"use --time {format_time(part.max_time_s)} or less (the job checkpoints and requeues itself)"
    return hint + (f", or a partition with a longer limit: {', '.join(longer)}" if longer else "")


def _split_option(args: list[str], name: str) -> tuple[list[str], str | None]:
    """Remove ``--name VALUE`` / ``--name=VALUE`` from ``args``; return the rest and the value."""
    rest: list[str] = []
    value: str | None = None
    it = iter(args)
    for arg in it:
        if arg == name:
            value = next(it, None)
            if value is None:
                raise UsageError(f"{name} needs a value", f"write {name} VALUE")
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1 :]
        else:
            rest.append(arg)
    return rest, value


def _pgpass_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def strip_password(url: str, pgpass: Path) -> tuple[str, dict[Path, str]]:
    """The URL without its password, and the pgpass file that carries the password instead."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, {}
    if not parts.scheme.startswith("postgres"):
        raise UsageError(
            f"the {parts.scheme} storage URL contains a password, which would end up in the job script",
            "drop it from the URL and give it to the database client through its environment",
        )
    host = parts.hostname or "localhost"
    # the URL keeps its user name as written (percent-encoded); the netloc needs IPv6 brackets back
    shown_host = f"[{host}]" if ":" in host else host
    netloc = f"{parts.username}@{shown_host}" + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    # libpq compares the pgpass fields with the decoded values: p%40ss in a URL is the password p@ss
    # (https://www.postgresql.org/docs/current/libpq-pgpass.html: "\:" and "\\" escape : and \)
    database = unquote(parts.path.lstrip("/")) or "*"
    fields = (host, str(parts.port or 5432), database, unquote(parts.username or ""), unquote(parts.password))
    line = ":".join(_pgpass_escape(x) for x in fields)
    return clean, {pgpass: line + "\n"}


def _hpo_plan(
    settings: SubmitSection, args: list[str], run_dir: Path, gpus: int, procs: int, array: ArraySpec | None
) -> tuple[HpoPlan, dict[Path, str], list[str]]:
    rest, storage = _split_option(args, "--storage")
    rest, study = _split_option(rest, "--study")
    rest, workers_arg = _split_option(rest, "--workers")
    storage = (
        storage or settings.hpo_storage or f"journal:///{(run_dir / JOURNAL_FILE).as_posix().lstrip('/')}"
    )
    if storage.startswith("sqlite") and (settings.nodes > 1 or array):
        sharers = f"the {settings.nodes} nodes of this job" if not array else "the tasks of an array job"
        raise UsageError(
            f"SQLite storage cannot be shared by {sharers} "
            "(its file locks are not coherent across nodes on parallel file systems)",
            "drop --storage to use a journal file in the run directory, or use postgresql://",
        )
    storage, secrets = strip_password(storage, run_dir / PGPASS_FILE)
    try:
        workers = int(workers_arg) if workers_arg else settings.hpo_workers or settings.nodes * procs
    except ValueError:
        raise UsageError(f"--workers {workers_arg!r} is not a number", "e.g. --workers 8") from None
    per_node, left = divmod(workers, settings.nodes)
    if per_node < 1 or left:
        raise UsageError(
            f"{workers} HPO workers cannot be spread evenly over {settings.nodes} nodes",
            f"use a multiple of {settings.nodes} workers",
        )
    per_worker, left = divmod(gpus, per_node) if gpus else (0, 0)
    if gpus and (per_worker < 1 or left):
        raise UsageError(
            f"{per_node} HPO workers per node cannot share {gpus} GPUs evenly",
            f"use {gpus} (one per GPU) or a divisor of it per node",
        )
    study = _check_text("study", study or settings.hpo_study)
    storage = _check_text("storage", storage)
    driver = ("hpo", "run", *rest, "--workers", str(per_node), "--storage", storage, "--study", study)
    plan = HpoPlan(
        workers=workers,
        workers_per_node=per_node,
        gpus_per_worker=per_worker,
        storage=storage,
        study=study,
        driver_command=driver,
        pgpass_file=run_dir / PGPASS_FILE if secrets else None,
    )
    return plan, secrets, rest


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(
            f"unknown job kind '{kind}'",
            f"{did_you_mean(kind, KINDS)}write: mlpfctl submit [OPTIONS] -- {{{'|'.join(KINDS)}}} [ARGS...]",
        )
    return kind


def path_safe(name: str) -> str:
    """``name`` as one directory name: anything but letters, digits and ``._+-`` becomes ``_``."""
    safe = _UNSAFE_IN_NAME.sub("_", name).lstrip(".")
    return safe or "job"


def _run_dir(out_dir: str, run_name: str | None, job_name: str, stamp: str) -> Path:
    parent = Path(out_dir).expanduser().absolute()
    if run_name is not None:
        # an explicit run name is the directory itself: refuse what would leave out_dir
        if run_name in ("", ".", "..") or "/" in run_name or "\\" in run_name or _CONTROL.search(run_name):
            raise UsageError(
                f"run name {run_name!r} is not a plain directory name",
                "use letters, digits, '.', '_' and '-' (--set run.name=NAME; it becomes a directory "
                f"under {parent})",
            )
        return parent / run_name
    # job names are free text for SLURM (quoted in the script); as a path they must stay one component
    return unused_dir(parent, f"{path_safe(job_name)}-{stamp}")


def _array(settings: SubmitSection, kind: str) -> ArraySpec | None:
    if settings.array is None:
        return None
    if kind not in ARRAY_KINDS:
        done = "; ".join(f"{k}: each task runs {what}" for k, what in ARRAY_KINDS.items())
        raise UsageError(
            f"a {kind} job cannot be an array job (--array)",
            f"arrays are for {', '.join(ARRAY_KINDS)} jobs ({done}); a {kind} job is one allocation "
            "(--nodes)",
        )
    if settings.nodes != 1:
        raise UsageError(
            f"an array task runs on one node (or a share of one), not {settings.nodes}",
            "drop --nodes and ask for more tasks: --array N[%M]",
        )
    return parse_array(settings.array)


def _gpus(settings: SubmitSection, part: Partition, array: ArraySpec | None) -> int:
    if settings.gpus_per_node is not None:
        return settings.gpus_per_node
    if array is not None and not part.exclusive and part.gpus_per_node:
        # many small tasks backfill sooner than whole nodes: one GPU each unless told otherwise
        return 1
    return part.gpus_per_node


def _time_s(settings: SubmitSection, part: Partition) -> int:
    if settings.time is None:
        # without --time the partition's limit caps the default (Perlmutter's debug QOS: 30 min)
        limit = part.max_time_s
        return DEFAULT_TIME_S if limit is None else min(DEFAULT_TIME_S, limit)
    time_s = parse_time(settings.time)
    assert time_s is not None  # parse_time raises for UNLIMITED without allow_unlimited
    return time_s


def _python(
    profile: SystemProfile, settings: SubmitSection, container: str | None, python: str | None
) -> str:
    if python:
        return python
    if settings.venv:
        return f"{settings.venv}/bin/python"
    if container is None:
        return current_python()
    if settings.container is None:
        # The login node's venv does not exist inside the profile's container (a different OS and
        # Python), and the site's image has no mlpfctl: the job would die after the queue wait.
        raise UsageError(
            f"jobs on {profile.name} run in the container {container}, which has no mlpfctl",
            "build a venv inside it (singularity exec IMAGE python3 -m venv --system-site-packages DIR; "
            "singularity exec IMAGE DIR/bin/pip install mlpfctl) and pass --set submit.venv=DIR, or "
            "--set submit.container=IMAGE for an image that has mlpfctl",
        )
    return "python3"  # the user's own image: its python


def build_request(
    profile: SystemProfile,
    settings: SubmitSection,
    kind: str,
    args: Sequence[str],
    *,
    out_dir: str,
    run_name: str | None = None,
    now: datetime | None = None,
    python: str | None = None,
    workdir: Path | None = None,
) -> JobRequest:
    check_kind(kind)
    for arg in args:
        _check_text("argument", arg)
    if kind == "check" and args:
        raise UsageError(
            f"the check job takes no arguments (got {' '.join(args)})",
            "write: mlpfctl submit [OPTIONS] -- check",
        )
    if kind == "data":
        _check_data_args(args, settings)
    part = profile.partition(settings.partition)
    where = f"partition '{part.name}' on {profile.name}"
    array = _array(settings, kind)

    time_s = _time_s(settings, part)
    if part.max_time_s is not None and time_s > part.max_time_s:
        raise UsageError(
            f"--time {format_time(time_s)} exceeds the {format_time(part.max_time_s)} limit of {where}",
            _limit_hint(profile, part, time_s),
        )
    if settings.warning_seconds >= time_s:
        raise UsageError(
            f"the checkpoint warning ({settings.warning_seconds} s before the end) does not fit in "
            f"--time {format_time(time_s)}",
            "ask for more time or lower submit.warning_seconds",
        )
    if part.max_nodes is not None and settings.nodes > part.max_nodes:
        raise UsageError(
            f"--nodes {settings.nodes} exceeds the {part.max_nodes}-node limit of {where}",
            f"use --nodes {part.max_nodes} or less, or another partition "
            f"(mlpfctl systems show {profile.name})",
        )
    # generation runs on CPUs: no GPUs unless asked for
    gpus = 0 if kind == "data" and settings.gpus_per_node is None else _gpus(settings, part, array)
    if gpus > part.gpus_per_node:
        raise UsageError(
            f"{gpus} GPUs per node requested, but a node of {where} has {part.gpus_per_node}",
            f"use --gpus-per-node {part.gpus_per_node} or less (more GPUs: more --nodes)",
        )
    if gpus == 0 and part.require_gpus:
        raise UsageError(
            f"a CPU-only job on {where} would be billed for GPUs it does not use",
            f"ask for GPUs (--gpus-per-node 1..{part.gpus_per_node}) or run CPU jobs on a CPU partition",
        )
    account = settings.account
    if profile.account_required and not account:
        example = profile.account_example or "PROJECT"
        raise UsageError(
            f"system '{profile.name}' requires an account (project) to charge",
            f"pass --account {example}, or set it once: MLPFCTL_SUBMIT__ACCOUNT={example} "
            "or [submit] account in mlpfctl.toml",
        )

    launcher = profile.launcher if settings.launcher == "auto" else settings.launcher
    procs = gpus if gpus > 0 else (settings.tasks_per_node or 1)
    if kind == "data":
        procs = 1  # one task per node, which runs a generator process per CPU (--workers)
    job_name = _check_text("job name", settings.job_name or f"mlpf-{kind}")
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    run_dir = _run_dir(out_dir, run_name, job_name, stamp)
    _check_text("run directory", str(run_dir))
    module, prefix = ENTRY[kind]
    rest = list(args)

    hpo: HpoPlan | None = None
    secrets: dict[Path, str] = {}
    # processes sharing one SLURM task: torchrun's ranks, or an HPO driver's local workers
    per_task = 1
    tasks_per_node = procs
    if kind == "hpo":
        hpo, secrets, rest = _hpo_plan(settings, rest, run_dir, gpus, procs, array)
        rest = ["--storage", hpo.storage, "--study", hpo.study]
        tasks_per_node, per_task = 1, hpo.workers_per_node
    elif launcher == "torchrun" and kind in ("train", "check"):
        tasks_per_node, per_task = 1, procs
    # A sub-node job on a shared GPU partition asks for the cores that go with its GPUs: LUMI bills
    # max(cores / 8, GCDs), so all 56 cores for 2 GCDs would cost 3.5 times the GPUs.
    # Elsewhere a sub-node job takes its GPUs' share of the cores (Karolina: 1/8 node = 1 GPU + 16).
    sub_node = 0 < gpus < part.gpus_per_node
    per_gpu = part.cpus_per_gpu or part.cpus_per_node // max(1, part.gpus_per_node)
    node_cpus = per_gpu * gpus if sub_node else part.cpus_per_node
    # --cpus-per-task counts per process (per HPO worker); the job asks for it per SLURM task
    per_proc = settings.cpus_per_task or max(1, node_cpus // (tasks_per_node * per_task))
    cpus = per_proc * per_task
    if cpus * tasks_per_node > part.cpus_per_node:
        raise UsageError(
            f"{tasks_per_node * per_task} processes x {per_proc} CPUs per node exceed the "
            f"{part.cpus_per_node} CPUs of {where}",
            f"use --cpus-per-task {max(1, part.cpus_per_node // (tasks_per_node * per_task))} or less",
        )
    if kind == "train":
        rest = [*rest, "--run-dir", str(run_dir)]
    points: tuple[int, ...] = ()
    if kind == "scale-bench":
        world = settings.nodes * procs
        powers = tuple(p for p in (2**i for i in range(20)) if p < world)
        points = tuple(settings.scale_points) or (*powers, world)
        too_big = [p for p in points if p > world]
        if too_big:
            raise UsageError(
                f"scale points {too_big} exceed the {world} processes of this job",
                "ask for more --nodes or drop those points",
            )

    container = settings.container or profile.software.container
    job_dir = _check_path("working directory", workdir or Path.cwd())
    whole_node = is_whole_node(part, gpus)
    sbatch_args, qos = check_sbatch_args(settings.sbatch_args, profile, part, settings.qos or part.qos)
    python_path = _check_text("python", _python(profile, settings, container, python))
    return JobRequest(
        kind=kind,
        system=profile.name,
        job_name=job_name,
        run_dir=run_dir,
        partition=part,
        account=_check_text("account", account) if account else None,
        qos=qos,
        nodes=settings.nodes,
        time_s=time_s,
        gpus_per_node=gpus,
        tasks_per_node=tasks_per_node,
        procs_per_node=procs,
        cpus_per_task=cpus,
        launcher=launcher,
        python=python_path,
        container=_check_text("container", container) if container else None,
        entry_module=module,
        command=(*prefix, *rest),
        warning_s=settings.warning_seconds,
        max_requeues=settings.max_requeues,
        # the per-GPU CPU masks fit only a node whose every GPU has its task
        cpu_bind=profile.cpu_bind if whole_node and tasks_per_node == part.gpus_per_node else "",
        workdir=job_dir,
        mem_per_gpu=part.mem_per_gpu if sub_node else None,
        whole_node=whole_node,
        array=array,
        after=tuple(parse_after(_check_text("--after", text)) for text in settings.after),
        sbatch_args=tuple(_check_text("--sbatch-arg", arg) for arg in sbatch_args),
        container_binds=_binds(container, settings, job_dir, run_dir, python_path),
        scale_points=points,
        secret_files=secrets,
        hpo=hpo,
    )


def is_whole_node(part: Partition, gpus: int) -> bool:
    """The one definition of a whole-node job: the partition hands out whole nodes, or the job
    takes every GPU of a GPU node (then it gets the node's memory and, with one task per GPU, the
    profile's per-GPU CPU masks). Anything else shares its nodes."""
    return part.exclusive or (part.gpus_per_node > 0 and gpus == part.gpus_per_node)


def _binds(
    container: str | None, settings: SubmitSection, workdir: Path, run_dir: Path, python: str
) -> tuple[str, ...]:
    """Host paths the job needs inside its container: where it runs, where it writes, the venv it
    was told to use, and the user's extra paths; nested paths are covered by their parents."""
    if container is None:
        return ()
    wanted = [workdir, run_dir]
    if Path(python).is_absolute():  # a venv (submit.venv) on a host path: bind its root
        wanted.append(Path(python).parent.parent)
    wanted += [Path(p).expanduser().absolute() for p in settings.container_binds]
    chosen: list[Path] = []
    for path in sorted(set(wanted), key=lambda p: len(p.parts)):
        if not any(path == parent or parent in path.parents for parent in chosen):
            chosen.append(path)
    for path in chosen:
        if "," in str(path) or ":" in str(path):
            raise UsageError(
                f"cannot bind {path} into the container: ',' and ':' separate bind paths",
                "use a path without ',' or ':' (a symbolic link to it works)",
            )
    return tuple(_check_text("bind path", str(path)) for path in chosen)


def _check_data_args(args: Sequence[str], settings: SubmitSection) -> None:
    if settings.array is None and settings.nodes != 1:
        raise UsageError(
            f"a data job runs on one node, not {settings.nodes}",
            f"spread it with --array {settings.nodes} (tasks of one node each) instead of --nodes",
        )
    if not args or args[0] != "generate":
        raise UsageError(
            f"a data job generates a dataset (got: data {' '.join(args)})",
            "write: mlpfctl submit [--array N] [OPTIONS] -- data generate --events N --out DIR ...",
        )
    taken = [a for a in args if a.split("=", 1)[0] in _DATA_TASK_OPTIONS]
    if taken:
        raise UsageError(
            f"a data job sets {', '.join(taken)} itself",
            "drop them: --array N splits the shards over N tasks and writes the manifest after them",
        )


def data_manifest_step(request: JobRequest, array_job_id: str) -> JobRequest:
    """The step after a data array: checks every shard, writes the manifest (``--manifest-only``).

    A job of its own in the same run directory, started once every task ended (``afterany``: it
    reports the shards of failed tasks instead of waiting forever).
    """
    return dataclasses.replace(
        request,
        array=None,
        after=(*request.after, Dependency(array_job_id, "any")),
        script_name="manifest.sh",
        job_name=f"{request.job_name}-manifest",
        command=(*request.command, "--manifest-only"),
    )


def _check_path(what: str, path: Path) -> Path:
    _check_text(what, str(path))
    return path.absolute()
