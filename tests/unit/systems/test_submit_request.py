"""Requests are checked against the profile before anything is written or submitted."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mlpfctl.config.schema import SubmitSection
from mlpfctl.errors import UsageError
from mlpfctl.systems.profiles import load_profile
from mlpfctl.systems.request import build_request, strip_password

ENV = {"XDG_CONFIG_HOME": "/nonexistent-mlpfctl-test"}
LUMI = load_profile("lumi", ENV)
OK = SubmitSection(system="lumi", account="project_465000001", nodes=2, time="04:00:00")


def build(settings: SubmitSection = OK, kind: str = "train", args: tuple[str, ...] = (), profile=LUMI):  # type: ignore[no-untyped-def]
    return build_request(
        profile, settings, kind, list(args), out_dir="/scratch/runs", run_name="r", python="/v/bin/python"
    )


def test_a_good_lumi_request_fills_the_node() -> None:
    request = build()
    assert (request.gpus_per_node, request.tasks_per_node, request.cpus_per_task) == (8, 8, 7)
    assert request.launcher == "srun" and request.cpu_bind.startswith("mask_cpu:")
    assert request.command == ("train", "--run-dir", "/scratch/runs/r")
    assert request.run_dir == Path("/scratch/runs/r")


def test_time_over_the_limit_names_limit_and_fix() -> None:
    with pytest.raises(UsageError) as info:
        build(replace(OK, time="2-01:00:00"))
    assert "2-00:00:00 limit of partition 'standard-g'" in info.value.message
    assert "--time 2-00:00:00" in (info.value.hint or "")
    assert "small-g (3-00:00:00)" in (info.value.hint or "")


def test_too_many_gpus_per_node() -> None:
    with pytest.raises(UsageError) as info:
        build(replace(OK, gpus_per_node=9))
    assert "has 8" in info.value.message and "--gpus-per-node 8" in (info.value.hint or "")


def test_missing_account_says_how_to_set_it() -> None:
    with pytest.raises(UsageError) as info:
        build(replace(OK, account=None))
    assert "requires an account" in info.value.message
    assert "--account project_465000000" in (info.value.hint or "")
    assert "MLPFCTL_SUBMIT__ACCOUNT" in (info.value.hint or "")


def test_unknown_partition_and_node_limit() -> None:
    with pytest.raises(UsageError, match="no partition 'gpu'"):
        build(replace(OK, partition="gpu"))
    with pytest.raises(UsageError) as info:
        build(replace(OK, partition="small-g", nodes=5))
    assert "4-node limit" in info.value.message


def test_cpus_beyond_the_node() -> None:
    with pytest.raises(UsageError) as info:
        build(replace(OK, cpus_per_task=8))
    assert "56 CPUs" in info.value.message and "--cpus-per-task 7" in (info.value.hint or "")


def test_warning_must_fit_in_the_time() -> None:
    with pytest.raises(UsageError, match="warning"):
        build(replace(OK, time="5"))


def test_unknown_kind_lists_kinds() -> None:
    with pytest.raises(UsageError) as info:
        build(kind="trian")
    assert "train|hpo|scale-bench|check" in (info.value.hint or "")


@pytest.mark.parametrize("field", ["job_name", "account"])
def test_control_characters_are_refused(field: str) -> None:
    # a newline would end an #SBATCH comment line and start a shell command
    with pytest.raises(UsageError, match="control character"):
        build(replace(OK, **{field: "x\nrm -rf ~"}))
    with pytest.raises(UsageError, match="control character"):
        build(args=("--note", "a\nb"))


def test_torchrun_runs_one_task_per_node() -> None:
    jureca = load_profile("jureca", ENV)
    request = build(replace(OK, system="jureca"), profile=jureca)
    assert (request.launcher, request.tasks_per_node, request.procs_per_node, request.cpus_per_task) == (
        "torchrun",
        1,
        4,
        128,
    )
    assert build(replace(OK, system="jureca", launcher="srun"), profile=jureca).tasks_per_node == 4


def test_hpo_defaults_one_worker_per_gpu_with_a_journal_in_the_run_dir() -> None:
    request = build(kind="hpo", args=("--trials", "64"))
    hpo = request.hpo
    assert hpo is not None
    assert (hpo.workers, hpo.workers_per_node, hpo.gpus_per_worker) == (16, 8, 1)
    # one SLURM task per node holds the node's workers: 8 workers x 7 cores
    assert (request.tasks_per_node, request.cpus_per_task) == (1, 56)
    assert hpo.storage == "journal:///scratch/runs/r/optuna-journal.log"
    # the first node's driver creates the study and runs 8 local workers; the rest join it
    assert hpo.driver_command == (
        "hpo",
        "run",
        "--trials",
        "64",
        "--workers",
        "8",
        "--storage",
        hpo.storage,
        "--study",
        "mlpf",
    )
    assert request.command == ("hpo", "worker", "--storage", hpo.storage, "--study", "mlpf")


def test_hpo_sqlite_across_nodes_is_refused() -> None:
    with pytest.raises(UsageError) as info:
        build(kind="hpo", args=("--storage", "sqlite:////scratch/study.db"))
    assert "SQLite" in info.value.message and "postgresql" in (info.value.hint or "")
    single = build(replace(OK, nodes=1), kind="hpo", args=("--storage=sqlite:////tmp/s.db",))
    assert single.hpo is not None and single.hpo.storage == "sqlite:////tmp/s.db"


def test_hpo_workers_must_spread_evenly() -> None:
    with pytest.raises(UsageError, match="evenly over 2 nodes"):
        build(replace(OK, hpo_workers=3), kind="hpo")
    with pytest.raises(UsageError, match="cannot share 8 GPUs"):
        build(replace(OK, hpo_workers=6), kind="hpo")
    four = build(kind="hpo", args=("--workers", "4"))
    assert four.hpo is not None and (four.hpo.workers_per_node, four.hpo.gpus_per_worker) == (2, 4)
    assert "--workers" not in four.hpo.driver_command[:-6]


def test_storage_password_moves_to_a_pgpass_file() -> None:
    url = "postgresql+psycopg://mlpf:s3cr:et@db.example.org:5433/optuna"
    request = build(kind="hpo", args=("--storage", url, "--study", "s1"))
    hpo = request.hpo
    assert hpo is not None
    assert "s3cr" not in hpo.storage and "s3cr" not in " ".join(request.command + hpo.driver_command)
    assert hpo.storage == "postgresql+psycopg://mlpf@db.example.org:5433/optuna"
    assert hpo.pgpass_file == Path("/scratch/runs/r/.pgpass")
    assert request.secret_files == {hpo.pgpass_file: "db.example.org:5433:optuna:mlpf:s3cr\\:et\n"}
    assert "s3cr" not in repr(request)


def test_password_in_another_scheme_is_refused() -> None:
    with pytest.raises(UsageError, match="password"):
        strip_password("mysql://u:pw@h/db", Path("/x"))


def test_scale_points_default_to_powers_of_two() -> None:
    assert build(kind="scale-bench").scale_points == (1, 2, 4, 8, 16)
    assert build(replace(OK, nodes=3), kind="scale-bench").scale_points == (1, 2, 4, 8, 16, 24)
    with pytest.raises(UsageError, match="exceed"):
        build(replace(OK, scale_points=[32]), kind="scale-bench")


def test_generated_run_names_within_one_second_get_distinct_directories(tmp_path: Path) -> None:
    """A parent and its --after dependant are submitted in the same second: the second job must
    not be refused because the first one owns ``<job>-<stamp>``."""
    from datetime import datetime

    now = datetime(2026, 12, 1, 9, 0, 48)

    def request():  # type: ignore[no-untyped-def]
        return build_request(LUMI, OK, "train", [], out_dir=str(tmp_path), now=now, python="/v/bin/python")

    first = request()
    assert first.run_dir == tmp_path / "mlpf-train-20261201-090048"
    first.run_dir.mkdir()
    second = request()
    assert second.run_dir == tmp_path / "mlpf-train-20261201-090048-2"
    second.run_dir.mkdir()
    assert request().run_dir.name.endswith("-3")
