"""Shared fixtures for the whole suite."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_mlpfctl_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Tests never see the developer's MLPFCTL_* variables, launcher variables or ./mlpfctl.toml."""
    for var in list(os.environ):
        if (
            var.startswith("MLPFCTL_")
            or var.startswith("SLURM_")
            or var
            in (
                "RANK",
                "LOCAL_RANK",
                "WORLD_SIZE",
                "LOCAL_WORLD_SIZE",
                "MASTER_ADDR",
                "MASTER_PORT",
                "GROUP_RANK",
            )
        ):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def cli_python() -> str:
    return sys.executable
