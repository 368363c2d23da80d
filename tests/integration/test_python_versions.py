"""The oldest Python that pyproject.toml declares (requires-python) runs the CLI.

torch is not installed there (this machine has a CPU wheel of torch for its own Python only, and
nothing may pull a CUDA build): the test compiles every module with that Python and runs the
commands that need no torch (start-up, profiles, configuration, a submit dry run, which load TOML
through the tomli fallback). mypy checks the whole code as that version (pyproject: python_version).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

LIGHT_DEPS = ["typer>=0.29", "rich>=13", "jinja2>=3.1", "tomli-w>=1.0", "tomli>=1.1", "psutil>=5.9"]


def lowest_python() -> tuple[str, Path | None]:
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'requires-python = ">=(\d+\.\d+)"', text)
    assert match, "pyproject.toml declares no requires-python lower bound"
    version = match.group(1)
    candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
    found = shutil.which(f"python{version}")
    candidates += [found] if found else []
    for candidate in candidates:  # a pyenv shim may exist without that version being active
        if subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            return version, Path(candidate)
    return version, None


def test_tools_check_the_declared_lowest_version() -> None:
    version, _ = lowest_python()
    text = (REPO / "pyproject.toml").read_text()
    assert f'python_version = "{version}"' in text  # mypy
    assert f'target-version = "py{version.replace(".", "")}"' in text  # ruff


@pytest.mark.slow
def test_cli_runs_on_the_lowest_declared_python(tmp_path: Path) -> None:
    version, python = lowest_python()
    if python is None:
        pytest.skip(f"no Python {version} interpreter here (PATH, ~/.pyenv)")
    env_dir = tmp_path / "venv"
    subprocess.run([str(python), "-m", "venv", str(env_dir)], check=True, timeout=300)
    py = str(env_dir / "bin" / "python")
    install = subprocess.run(
        [py, "-m", "pip", "install", "-q", *LIGHT_DEPS], capture_output=True, text=True, timeout=900
    )
    if install.returncode != 0:
        pytest.skip(f"cannot install the light dependencies for Python {version}: {install.stderr[-300:]}")
    compiled = subprocess.run(
        [py, "-m", "compileall", "-q", str(REPO / "src" / "mlpfctl")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache")},  # not into the checkout
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLPFCTL_", "VIRTUAL_ENV"))},
        "PYTHONPATH": str(REPO / "src"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }

    def cli(*args: str) -> str:
        proc = subprocess.run(
            [py, "-m", "mlpfctl", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
        )
        assert proc.returncode == 0, f"mlpfctl {' '.join(args)} on Python {version}: {proc.stderr}"
        return proc.stdout

    assert cli("--version").startswith("mlpfctl ")
    assert "submit" in cli("--help")
    assert "lumi" in cli("systems", "--json")
    assert "submit.system" in cli("config", "show")
    script = cli("submit", "-s", "lumi", "-A", "p", "--set", "submit.venv=/v", "--dry-run", "--", "check")
    assert script.startswith("#!/bin/bash") and "#SBATCH --account=p" in script
    probe = subprocess.run(
        [py, "-c", "import sys, mlpfctl.compat as c; print(sys.version_info[:2], c.tomllib.__name__)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "tomli" in probe.stdout, probe.stdout
