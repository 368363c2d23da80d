"""Site fixes checked against the centres' documentation (each traced in its profile TOML):
JSC's torchrun --local_addr, LUMI's billing-sized sub-node jobs, module purge and container
Python, VEGA's OpenMP threads on cores, Perlmutter's debug QOS limit, pgpass passwords."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mlpfctl.config.schema import SubmitSection
from mlpfctl.errors import UsageError
from mlpfctl.resources import resource_dir
from mlpfctl.systems.profiles import load_profile
from mlpfctl.systems.render import render
from mlpfctl.systems.request import build_request, strip_password

ENV = {"XDG_CONFIG_HOME": "/nonexistent-mlpfctl-test"}


def build(system: str, kind: str = "train", python: str | None = None, **settings: object):  # type: ignore[no-untyped-def]
    profile = load_profile(system, ENV)
    section = replace(SubmitSection(system=system, account="acct"), **settings)  # type: ignore[arg-type]
    request = build_request(profile, section, kind, [], out_dir="/scratch/runs", run_name="r", python=python)
    return profile, request


def script_for(system: str, kind: str = "train", python: str | None = None, **settings: object) -> str:
    profile, request = build(system, kind, python, **settings)
    return render(profile, request)


def lines(text: str) -> list[str]:
    return text.splitlines()


# ---- JSC: torchrun on the rendezvous node advertises the InfiniBand name (PyTorch >= 2.5)


@pytest.mark.parametrize("system", ["jureca", "juwels"])
def test_jsc_torchrun_sets_local_addr_to_the_infiniband_name(system: str) -> None:
    script = script_for(system, python="/v/bin/python")
    assert 'MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)i"' in script
    assert '"${STEP[@]}" --torchrun --local-addr "$MASTER_ADDR" --' in script


def test_other_systems_leave_torchrun_local_addr_alone() -> None:
    script = script_for("vega", python="/v/bin/python")
    assert '"${STEP[@]}" --torchrun --' in script and "--local-addr" not in script


# ---- LUMI


def test_lumi_sub_node_jobs_ask_for_7_cores_and_60_gb_per_gcd() -> None:
    # small-g bills max(ceil(cores / 8), ceil(mem / 64 GB), GCDs): 2 GCDs with 28 cores cost 3.5x
    for partition in ("small-g", "dev-g"):
        _, request = build("lumi", partition=partition, gpus_per_node=2, venv="/p/venv")
        assert (request.tasks_per_node, request.cpus_per_task) == (2, 7)
        text = script_for("lumi", partition=partition, gpus_per_node=2, venv="/p/venv")
        assert "#SBATCH --mem-per-gpu=60G" in lines(text)
        assert not any(line.startswith("#SBATCH --mem=") for line in lines(text))
        cores = request.cpus_per_task * request.tasks_per_node
        assert max(-(-cores // 8), 2) == 2  # billed as 2 GCDs


def test_lumi_torchrun_sub_node_job_gets_the_cores_of_its_gcds() -> None:
    _, request = build("lumi", partition="small-g", gpus_per_node=3, launcher="torchrun", venv="/p/venv")
    assert (request.tasks_per_node, request.cpus_per_task) == (1, 21)


def test_lumi_full_nodes_keep_all_56_cores_and_480g() -> None:
    _, request = build("lumi", partition="small-g", venv="/p/venv")
    assert request.cpus_per_task * request.tasks_per_node == 56 and request.mem_per_gpu is None
    assert "#SBATCH --mem=480G" in lines(script_for("lumi", venv="/p/venv"))


@pytest.mark.parametrize("partition", ["standard-g", "small-g", "dev-g"])
def test_lumi_gpu_partitions_refuse_cpu_only_jobs(partition: str) -> None:
    with pytest.raises(UsageError) as info:
        build("lumi", partition=partition, gpus_per_node=0, venv="/p/venv")
    assert "billed for GPUs" in info.value.message and "--gpus-per-node" in (info.value.hint or "")


def test_lumi_purges_modules_before_module_use() -> None:
    text = lines(script_for("lumi", venv="/p/venv"))
    assert text.index("module --force purge") < text.index("module use /appl/local/laifs/modules")


def test_lumi_container_never_runs_the_login_nodes_venv() -> None:
    # no venv: the site image has no mlpfctl, so the job would die after the queue wait
    with pytest.raises(UsageError) as info:
        build("lumi")
    assert "has no mlpfctl" in info.value.message and "submit.venv" in (info.value.hint or "")
    # a venv built inside the container is what runs there
    _, request = build("lumi", venv="/project/project_1/venv")
    assert request.python == "/project/project_1/venv/bin/python"
    # an image of the user's own runs its own python
    _, request = build("lumi", container="/project/project_1/mlpfctl.sif")
    assert request.python == "python3" and request.container == "/project/project_1/mlpfctl.sif"
    text = script_for("lumi", venv="/p/venv")
    runner = next(line for line in lines(text) if line.startswith("RUNNER=("))
    # the venv built inside the container is bound into it, with the run and working directories
    assert runner.startswith("RUNNER=(singularity run --bind ")
    assert runner.endswith(" /appl/local/laifs/containers/lumi-multitorch-latest.sif)")
    assert "--bind /p/venv " in runner and "--bind /scratch/runs/r " in runner
    assert "MLPFCTL_PY=/p/venv/bin/python" in text


@pytest.mark.parametrize("system", ["lumi", "jureca", "leonardo", "karolina", "vega"])
def test_a_container_job_never_uses_the_host_python_environment(system: str) -> None:
    """With an image of mlpfctl (mlpfctl container recipe) and no submit.venv, the job runs the
    image's python; no host venv path reaches the script, and the host's Python variables are
    unset before the container starts (sbatch passes the login shell's environment on)."""
    image = "/scratch/project/mlpfctl.sif"
    text = script_for(system, container=image, container_binds=["/data/ee_ttbar"])
    assert "MLPFCTL_PY=python3" in text
    assert "/venv" not in text and "/bin/python" not in text
    setup = text.index("unset PYTHONPATH PYTHONHOME VIRTUAL_ENV")
    assert setup < text.index("RUNNER=(") and "export PYTHONNOUSERSITE=1" in text
    runner = next(line for line in lines(text) if line.startswith("RUNNER=("))
    assert runner.endswith(f" {image})") and "--bind /data/ee_ttbar " in runner
    profile = load_profile(system, ENV)
    if profile.software.container_modules is not None:  # the host's Python/PyTorch modules stay out
        loads = [line.split()[2:] for line in lines(text) if line.startswith("module load ")]
        loaded = [word for words in loads for word in words]
        assert loaded == list(profile.software.container_modules)
    if "--nv" in profile.software.container_exec:
        assert runner.startswith("RUNNER=(") and " --nv " in runner


# ---- VEGA and Perlmutter


def test_vega_purges_modules_and_gives_openmp_one_thread_per_core() -> None:
    # 256 SLURM CPUs are 128 cores x 2 threads; 4 ranks per node: 64 CPUs = 32 cores each
    text = lines(script_for("vega", python="/v/bin/python"))
    assert "module --force purge" in text
    assert "export OMP_NUM_THREADS=32" in text


def test_perlmutter_debug_without_time_gets_its_30_minute_limit() -> None:
    _, request = build("perlmutter", partition="debug", python="/v/bin/python")
    assert request.time == "00:30:00"
    _, request = build("perlmutter", python="/v/bin/python")
    assert request.time == "01:00:00"
    with pytest.raises(UsageError, match="00:30:00 limit"):
        build("perlmutter", partition="debug", time="01:00:00", python="/v/bin/python")


# ---- every fix above is traced to a source in the profile


@pytest.mark.parametrize(
    ("system", "key", "source"),
    [
        ("jureca", "rdzv_local_addr = true", "HelmholtzAI-FZJ/torchrun_jsc README"),
        ("juwels", "rdzv_local_addr = true", "HelmholtzAI-FZJ/torchrun_jsc README"),
        ("lumi", "module_purge = true", "docs.lumi-supercomputer.eu/runjobs/lumi_env/Lmod_modules/"),
        ("lumi", "cpus_per_gpu = 7", "docs.lumi-supercomputer.eu/runjobs/lumi_env/billing/"),
        ("lumi", "require_gpus = true", "docs.lumi-supercomputer.eu/runjobs/lumi_env/billing/"),
        ("lumi", 'container_exec = "singularity run"', "LUMI AI guide, 01-quickstart/run.sh"),
        ("vega", "threads_per_core = 2", "doc.vega.izum.si/shares/"),
        ("vega", "module_purge = true", "vega_pre_exec.sh"),
        ("perlmutter", "[partitions.debug]", "docs.nersc.gov/jobs/policy/"),
    ],
)
def test_each_site_fix_names_its_source(system: str, key: str, source: str) -> None:
    text = (resource_dir("templates") / "systems" / f"{system}.toml").read_text()
    assert key in text
    comments = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    assert "source:" in comments and source in comments


# ---- PostgreSQL passwords in the pgpass file


@pytest.mark.parametrize(
    ("url", "line"),
    [
        ("postgresql://mlpf:p%40ss@db:5432/optuna", "db:5432:optuna:mlpf:p@ss"),
        ("postgresql://mlpf:a%3Ab%5Cc@db/optuna", "db:5432:optuna:mlpf:a\\:b\\\\c"),
        ("postgresql://u%40x:pw@db:6543/my%20db", "db:6543:my db:u@x:pw"),
        ("postgresql://u:p%25w@[::1]:5433/d", "\\:\\:1:5433:d:u:p%w"),
    ],
)
def test_pgpass_holds_the_decoded_password_escaped_for_pgpass(url: str, line: str) -> None:
    clean, secrets = strip_password(url, Path("/run/.pgpass"))
    assert secrets == {Path("/run/.pgpass"): line + "\n"}
    assert ":" + url.split(":", 2)[2].split("@", 1)[0] + "@" not in clean  # no password left


def test_the_url_keeps_its_encoded_user_and_ipv6_host() -> None:
    clean, _ = strip_password("postgresql://u%40x:pw@[::1]:5433/d", Path("/p"))
    assert clean == "postgresql://u%40x@[::1]:5433/d"
