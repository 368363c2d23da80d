"""The typed configuration schema: one dataclass per section, a documented field per setting.

Resolution order (lowest to highest precedence; see ``mlpfctl.config.loader``):
    defaults here < TOML file (``--config``, else ``./mlpfctl.toml``)
    < environment ``MLPFCTL_<SECTION>__<KEY>`` < command flags and ``--set section.key=value``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlpfctl.config.fields import setting


@dataclass
class RunSection:
    """Where and how a run executes."""

    backend: str = setting(
        "auto",
        "Device backend: auto, cpu, cuda, rocm, hpu or xpu ('auto' picks by priority).",
        choices=["auto", "cpu", "cuda", "rocm", "hpu", "xpu"],
    )
    seed: int = setting(0, "Global random seed (data order, initialisation, sampling).", ge=0)
    out_dir: str = setting("runs", "Parent directory of run directories.")
    name: str | None = setting(None, "Run name (default: <command>-<timestamp>).")


@dataclass
class DataSection:
    """Dataset location, splits and batching."""

    path: str = setting("data/ee_ttbar", "Dataset directory or file (Parquet shards, .pkl.bz2, ...).")
    format: str = setting(
        "auto",
        "Input format: auto, key4hep (CLIC/CLD Parquet) or delphes (.pkl.bz2).",
        choices=["auto", "key4hep", "delphes"],
    )
    max_elements_per_batch: int = setting(
        8192, "Bucketed batching: upper bound on padded elements (events x longest event) per batch.", ge=1
    )
    num_workers: int = setting(0, "DataLoader worker processes per rank.", ge=0)
    valid_fraction: float = setting(0.1, "Fraction of events held out for validation.", gt=0.0, lt=1.0)
    test_fraction: float = setting(0.1, "Fraction of events held out for the test split.", ge=0.0, lt=1.0)
    cache_mb: int = setting(
        1024, "Decoded shards kept in memory per process (MiB); DataLoader workers each have their own.", ge=1
    )


# Keep in sync with mlpfctl.data.sim.pythia_source.PROCESSES (a test checks it); listed here so
# that resolving the configuration never imports the generator.
GENERATE_PROCESSES = ["ee_ttbar", "ee_qq", "ee_zz", "ee_ww", "pp_ttbar"]


@dataclass
class GenerateSection:
    """Embedded dataset generation (Pythia8 + parametric CLIC-like detector)."""

    process: str = setting("ee_ttbar", "Physics process to generate.", choices=GENERATE_PROCESSES)
    events: int = setting(2000, "Number of events to generate.", ge=1)
    events_per_shard: int = setting(
        1000, "Events per Parquet shard (the unit of parallelism and resume).", ge=1
    )
    workers: int = setting(0, "Worker processes (0 = one per CPU core, at most one per shard).", ge=0)
    pileup_mu: float = setting(
        0.0, "Mean pile-up (Poisson) overlaid on pp processes from a minimum-bias pool.", ge=0.0
    )


@dataclass
class SubmitSection:
    """SLURM submission defaults for ``mlpfctl submit`` (flags override them)."""

    system: str = setting("local", "System profile name (mlpfctl systems lists them).")
    account: str | None = setting(
        None, "SLURM account/project to charge (--account); required on most sites."
    )
    partition: str | None = setting(None, "Partition (or QOS pool) of the profile; default: the profile's.")
    qos: str | None = setting(None, "SLURM QOS (--qos); default: the partition's QOS, if any.")
    nodes: int = setting(1, "Number of nodes.", ge=1)
    time: str = setting("01:00:00", "Wall time (SLURM format: MM, HH:MM:SS, D-HH:MM:SS).")
    gpus_per_node: int | None = setting(
        None, "GPUs per node (default: all GPUs of a partition node; 0 for a CPU job).", ge=0
    )
    cpus_per_task: int | None = setting(
        None, "CPUs per task (default: the node's CPUs divided by its tasks).", ge=1
    )
    tasks_per_node: int | None = setting(
        None, "Processes per node for CPU jobs (GPU jobs: one per GPU).", ge=1
    )
    job_name: str | None = setting(None, "SLURM job name (default: mlpf-<kind>).")
    launcher: str = setting(
        "auto",
        "Training launch: srun (one task per GPU), torchrun (one per node) or auto (the profile's).",
        choices=["auto", "srun", "torchrun"],
    )
    venv: str | None = setting(
        None, "Python environment whose bin/python runs mlpfctl in the job (default: the current one)."
    )
    container: str | None = setting(None, "Container image to run in (default: the profile's, if any).")
    warning_seconds: int = setting(
        300, "Seconds before the time limit at which SLURM signals the job to checkpoint.", ge=60
    )
    max_requeues: int = setting(10, "How often a job may requeue itself after checkpointing.", ge=0)
    hpo_workers: int | None = setting(None, "HPO worker steps (default: one per GPU, or per node).", ge=1)
    hpo_storage: str | None = setting(
        None,
        "Optuna storage URL for HPO jobs (default: a journal file in the run directory).",
        secret=True,
    )
    hpo_study: str = setting("mlpf", "Optuna study name for HPO jobs.")
    scale_points: list[int] = setting(  # noqa: RUF009 (setting() returns a default_factory field)
        [], "World sizes a scale-bench job measures (default: 1, 2, 4, ... up to all GPUs).", ge=1
    )
    registry: str | None = setting(None, "Jobs registry file (default: $XDG_STATE_HOME/mlpfctl/jobs.jsonl).")


@dataclass
class Config:
    """The whole configuration. Each command reads the sections it needs."""

    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    generate: GenerateSection = field(default_factory=GenerateSection)
    submit: SubmitSection = field(default_factory=SubmitSection)
