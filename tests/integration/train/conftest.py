"""A real generated dataset (Pythia8 + detector simulation) shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ttbar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    generate = pytest.importorskip(
        "mlpfctl.data.generate", reason="needs the data layer's event generator (mlpfctl.data.generate)"
    )
    pytest.importorskip("pythia8mc", reason="event generation needs the physics extra (pythia8mc)")
    out = tmp_path_factory.mktemp("ee_ttbar")
    generate.generate_dataset(out, process="ee_ttbar", events=240, seed=7)
    return out


def tiny_sets(data: Path, *extra: str) -> list[str]:
    """--set items for a tiny, fast model on ``data``."""
    return [
        f"data.path={data}",
        "model.preset=tiny",
        "train.progress=false",
        "train.log_every=5",
        "data.valid_fraction=0.15",
        "data.test_fraction=0.15",
        *extra,
    ]
