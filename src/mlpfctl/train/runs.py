"""Open a finished (or interrupted) run: its config, model spec and trained weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from mlpfctl.config.loader import resolve
from mlpfctl.config.schema import Config
from mlpfctl.errors import UsageError
from mlpfctl.models.registry import build_model
from mlpfctl.models.spec import ModelSpec
from mlpfctl.train import checkpoint as ckpt

RUN_CONFIG = "config.toml"


@dataclass
class LoadedRun:
    run_dir: Path
    config: Config
    spec: ModelSpec
    model: nn.Module
    checkpoint: Path
    step: int


def load_run(run_dir: Path, checkpoint: Path | None = None, overrides: Any = ()) -> LoadedRun:
    """The run's resolved config (plus ``overrides``) and the model from its newest valid checkpoint."""
    if not run_dir.is_dir():
        raise UsageError(
            f"run directory {run_dir} does not exist", "pass a directory written by 'mlpfctl train'"
        )
    config_path = run_dir / RUN_CONFIG
    if not config_path.is_file():
        raise UsageError(f"{run_dir} has no {RUN_CONFIG}", "pass a directory written by 'mlpfctl train'")
    config = resolve(config_path, overrides, env={}).config
    path, state = ckpt.load_latest(checkpoint or run_dir)
    spec = ModelSpec(**state["spec"])
    model = build_model(spec)
    model.load_state_dict(state["model"])
    model.eval()
    return LoadedRun(run_dir, config, spec, model, path, int(state["step"]))


def test_split(config: Config) -> Any:
    """The test split of the run's dataset (the same deterministic split training used)."""
    from mlpfctl.data.dataset import open_dataset, split_dataset
    from mlpfctl.errors import DataError

    dataset = open_dataset(
        config.data.path, format=config.data.format, cache_bytes=config.data.cache_mb * 2**20
    )
    _train, _valid, test = split_dataset(
        dataset, config.data.valid_fraction, config.data.test_fraction, config.run.seed
    )
    if len(test) == 0:
        raise DataError(
            f"the test split of {config.data.path} is empty",
            "train with data.test_fraction > 0 or use more events",
        )
    return test


def iter_batches(dataset: Any, batch_events: int, limit: int | None = None) -> Any:
    """Deterministic batches of ``dataset`` (events in order, at most ``limit`` events)."""
    from mlpfctl.data.collate import make_loader

    n = len(dataset) if limit is None else min(limit, len(dataset))
    batches = [list(range(i, min(i + batch_events, n))) for i in range(0, n, batch_events)]
    return make_loader(dataset, batches, 0)
