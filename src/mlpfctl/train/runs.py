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
from mlpfctl.paths import check_input_dir
from mlpfctl.train import checkpoint as ckpt
from mlpfctl.train.rundir import CONFIG_FILE, absolute, locate_data


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
    check_input_dir(run_dir, "run directory", "pass a directory written by 'mlpfctl train'")
    run_dir = Path(absolute(run_dir))
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise UsageError(f"{run_dir} has no {CONFIG_FILE}", "pass a directory written by 'mlpfctl train'")
    resolved = resolve(config_path, overrides, env={})
    config = resolved.config
    if resolved.sources["data.path"].startswith("file "):  # not overridden: follow a moved run
        config.data.path = locate_data(run_dir, config.data.path)
    if checkpoint is not None and not checkpoint.is_file():
        raise UsageError(f"--checkpoint {checkpoint} is not a file", "pass a checkpoint file of this run")
    path, state = ckpt.load_latest(checkpoint or run_dir)
    with ckpt.restoring(path):
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
