from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlpfctl import __version__
from tests.helpers import assert_user_error, run_cli


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"mlpfctl {__version__}"


@pytest.mark.parametrize("args", [["--help"], ["devices", "--help"], ["config", "show", "--help"]])
def test_help_does_not_import_torch_or_optuna(args: list[str]) -> None:
    code = (
        "import sys\nfrom mlpfctl.cli.app import run\n"
        f"rc = run({args!r})\n"
        "heavy = sorted(m for m in ('torch', 'optuna', 'pyarrow', 'scipy', 'matplotlib')\n"
        "               if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\nsys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout or proc.stdout.rstrip().endswith("HEAVY="), proc.stdout[-300:]


def test_help_lists_commands() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("devices", "config"):
        assert command in proc.stdout


def test_unknown_option_is_usage_error() -> None:
    assert_user_error(run_cli("devices", "--jsn"), "--jsn", "mlpfctl devices --help")


def test_unknown_command_is_usage_error() -> None:
    assert_user_error(run_cli("devicez"), "devicez")


def test_bad_backend_lists_available() -> None:
    assert_user_error(
        run_cli("devices", "--backend", "nonsense"), "nonsense", "cuda", "rocm", "hpu", "xpu", "cpu"
    )


def test_devices_json_here() -> None:
    proc = run_cli("devices", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["auto"] == "cpu"
    assert data["backends"]["cpu"]["available"] is True
    for name in ("cuda", "rocm", "hpu", "xpu"):
        assert data["backends"][name]["available"] is False
        assert data["backends"][name]["reason"]
    assert data["host"]["logical_cores"] >= 1 and data["host"]["memory_bytes"] > 0
    assert data["torch"]


def test_devices_table_goes_to_stdout() -> None:
    proc = run_cli("devices")
    assert proc.returncode == 0 and "cpu" in proc.stdout and "auto" in proc.stdout


def test_config_show_json_and_sources(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "mlpfctl.toml").write_text("[run]\nseed = 3\n")
    proc = run_cli(
        "config",
        "show",
        "--json",
        "--sources",
        "--set",
        "data.num_workers=2",
        cwd=tmp_path,
        env={"MLPFCTL_RUN__OUT_DIR": "elsewhere"},
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["run"]["seed"] == {"value": 3, "source": f"file {tmp_path / 'mlpfctl.toml'}"}
    assert data["run"]["out_dir"]["source"] == "env MLPFCTL_RUN__OUT_DIR"
    assert data["data"]["num_workers"] == {"value": 2, "source": "--set data.num_workers"}


def test_config_errors_exit_2() -> None:
    assert_user_error(run_cli("config", "show", "--set", "run.sed=1"), "run.sed", "run.seed")
    assert_user_error(run_cli("config", "show", "--config", "missing.toml"), "missing.toml")
