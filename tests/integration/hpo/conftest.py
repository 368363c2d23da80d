"""Storage URL fixtures for the HPO integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def journal_url(tmp_path: Path) -> str:
    return f"journal://{tmp_path / 'study.log'}"


REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server in a private temp cluster (scripts/postgres-test-server.sh)."""
    import os
    import subprocess
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("PostgreSQL tests need root (they install and start a private server as 'postgres')")
    directory = Path(tempfile.mkdtemp(prefix="mlpfctl-pg-"))
    directory.chmod(0o755)  # the server runs as 'postgres' and must traverse it
    script = REPO / "scripts" / "postgres-test-server.sh"
    proc = subprocess.run(
        ["bash", str(script), "start", str(directory / "cluster")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        subprocess.run(["bash", str(script), "stop", str(directory / "cluster")], check=False)
        pytest.skip(f"could not start a PostgreSQL server: {(proc.stderr + proc.stdout).strip()[-300:]}")
    try:
        yield proc.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(script), "stop", str(directory / "cluster")], check=False, timeout=120)
        directory.rmdir()
