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
class Config:
    """The whole configuration. Each command reads the sections it needs."""

    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    generate: GenerateSection = field(default_factory=GenerateSection)
