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


@dataclass
class Config:
    """The whole configuration. Each command reads the sections it needs."""

    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
