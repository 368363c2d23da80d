"""The CLI with the fake SLURM runner, a private registry and run directory (submit tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpfctl.systems import runner as runner_mod
from tests.unit.systems.fakes import FakeSlurm


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    fake = FakeSlurm()
    monkeypatch.setattr(runner_mod, "default_runner", lambda: fake)
    monkeypatch.setenv("MLPFCTL_RUN__OUT_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MLPFCTL_SUBMIT__REGISTRY", str(tmp_path / "jobs.jsonl"))
    monkeypatch.setenv("MLPFCTL_SUBMIT__VENV", "/project/venv")  # LUMI's container needs its own venv
    monkeypatch.chdir(tmp_path)
    return fake
