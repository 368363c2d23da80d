"""Arrays, dependencies and site options: parsing, the checks, what reaches the script and sbatch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from mlpfctl.cli.app import run
from mlpfctl.config import resolve
from mlpfctl.config.loader import Override
from mlpfctl.config.schema import SubmitSection
from mlpfctl.errors import RuntimeFailure, UsageError
from mlpfctl.systems import jobs
from mlpfctl.systems import submit as service
from mlpfctl.systems.chain import ArraySpec, Dependency, dependency_args, parse_after, parse_array
from mlpfctl.systems.profiles import load_profile
from mlpfctl.systems.render import render
from mlpfctl.systems.request import build_request, is_whole_node
from mlpfctl.systems.runner import Result
from tests.unit.systems.fakes import FakeSlurm

ENV = {"XDG_CONFIG_HOME": "/nonexistent-mlpfctl-test"}
OBJECTIVES = Path(__file__).resolve().parents[2] / "integration" / "hpo" / "hpo_fake_objectives.py"
QUADRATIC = ["--space", "quadratic", "--sampler", "random", "--scheduler", "none", "--trials", "6"]
QUADRATIC += ["--objective", f"{OBJECTIVES}:trivial"]


def request_for(system: str, kind: str = "hpo", args: tuple[str, ...] = (), **settings: object):  # type: ignore[no-untyped-def]
    profile = load_profile(system, ENV)
    section = replace(SubmitSection(system=system, account="acct", venv="/v"), **settings)  # type: ignore[arg-type]
    return profile, build_request(profile, section, kind, list(args), out_dir="/scratch/runs", run_name="r")


# ---- parsing


@pytest.mark.parametrize(
    ("text", "spec", "sbatch"),
    [("16", ArraySpec(16), "0-15"), ("16%4", ArraySpec(16, 4), "0-15%4"), ("3%5", ArraySpec(3), "0-2")],
)
def test_array_spec(text: str, spec: ArraySpec, sbatch: str) -> None:
    assert parse_array(text) == spec and spec.sbatch == sbatch


@pytest.mark.parametrize("text", ["", "0", "4%0", "1-4", "x", "4%", "%2"])
def test_bad_array_spec(text: str) -> None:
    with pytest.raises(UsageError, match="--array"):
        parse_array(text)


def test_after() -> None:
    assert parse_after("123") == Dependency("123", "ok")
    assert parse_after("123:any").sbatch == "afterany:123"
    assert parse_after("12_3:ok").sbatch == "afterok:12_3"
    for bad in ("abc", "12:maybe", "12;rm", "12:ok:any"):
        with pytest.raises(UsageError, match="JOB:any"):
            parse_after(bad)
    # all must hold; a parent that can never satisfy it cancels the dependant instead of a pending job
    assert dependency_args([Dependency("1"), Dependency("2", "any")]) == [
        "--dependency=afterok:1,afterany:2",
        "--kill-on-invalid-dep=yes",
    ]
    assert dependency_args([]) == []


# ---- the request


def test_hpo_array_request_and_script() -> None:
    profile, request = request_for("lumi", array="16%4", partition="small-g")
    assert request.array == ArraySpec(16, 4) and request.nodes == 1
    # a task on a shared partition is one GCD with its billing-sized share of cores
    assert request.gpus_per_node == 1 and request.cpus_per_task == 7 and not request.whole_node
    assert request.hpo is not None and request.hpo.workers_per_node == 1
    assert request.hpo.create_command[:2] == ("hpo", "create")
    script = render(profile, request)
    assert "#SBATCH --array=0-15%4" in script
    assert "#SBATCH --output=/scratch/runs/r/slurm-%A_%a.out" in script
    assert "first=$((SLURM_ARRAY_TASK_ID * 1))" in script
    assert "mlpfctl hpo worker --storage journal:///scratch/runs/r/optuna-journal.log" in script
    assert "hpo run" not in script  # no task creates the study: submit did


def test_whole_node_is_one_definition() -> None:
    lumi = load_profile("lumi", ENV)
    assert is_whole_node(lumi.partitions["standard-g"], 1)  # exclusive partition
    assert is_whole_node(lumi.partitions["small-g"], 8)  # every GPU of the node
    assert not is_whole_node(lumi.partitions["small-g"], 2)
    local = load_profile("local", ENV)
    assert not is_whole_node(local.partitions["debug"], 0)  # a CPU job on a shared CPU partition
    _, request = request_for("lumi", kind="train", partition="small-g", gpus_per_node=2)
    assert not request.whole_node and request.cpu_bind == "" and request.mem_per_gpu == "60G"
    profile, request = request_for("lumi", kind="train", partition="small-g")
    assert request.whole_node and request.cpu_bind.startswith("mask_cpu:")
    assert "#SBATCH --mem=480G" in render(profile, request)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"array": "4"}, None),
        ({"array": "4", "nodes": 2}, "runs on one node"),
        ({"array": "4", "hpo_storage": "sqlite:////scratch/s.db"}, "tasks of an array job"),
    ],
)
def test_array_checks(settings: dict[str, object], message: str | None) -> None:
    if message is None:
        request_for("jureca", **settings)
        return
    with pytest.raises(UsageError, match=message):
        request_for("jureca", **settings)


@pytest.mark.parametrize("kind", ["train", "scale-bench", "check"])
def test_array_of_a_kind_that_has_none(kind: str) -> None:
    with pytest.raises(UsageError) as info:
        request_for("lumi", kind=kind, array="4")
    assert f"a {kind} job cannot be an array job" in info.value.message
    assert "hpo" in (info.value.hint or "")


# ---- site options


def test_site_options_pass_through_as_sbatch_lines() -> None:
    args = ["--reservation=maint", "--mail-type END,FAIL", "--comment=x y", "--qos=high"]
    profile, request = request_for("jureca", kind="train", sbatch_args=args)
    assert request.sbatch_args == ("--reservation=maint", "--mail-type=END,FAIL", "--comment=x y")
    assert request.qos == "high"
    script = render(profile, request)
    assert "#SBATCH --reservation=maint\n" in script and "#SBATCH '--comment=x y'\n" in script
    assert script.count("--qos") == 1 and "#SBATCH --qos=high" in script


@pytest.mark.parametrize(
    ("system", "settings", "arg", "reason"),
    [
        ("lumi", {}, "--time=9-00:00:00", "use --time"),
        ("lumi", {}, "--gres=gpu:8", "--gpus-per-node"),
        ("lumi", {}, "--output=/tmp/x", "slurm-%j.out"),
        ("lumi", {}, "--dependency=afterok:1", "--after"),
        ("lumi", {}, "--array=0-3", "--array N[%M]"),
        ("lumi", {}, "--signal=USR1@60", "warning_seconds"),
        ("lumi", {}, "--ti=10", "it abbreviates --time"),
        ("lumi", {}, "--exclusive", "node-exclusive already"),
        ("jureca", {}, "--threads-per-core=2", "jureca profile"),
        ("perlmutter", {}, "--constraint=cpu", "sets --constraint=gpu"),
        ("leonardo", {"partition": "boost_usr_prod-dbg"}, "--qos=normal", "the QOS boost_qos_dbg"),
        ("lumi", {}, "-t 10", "long sbatch option"),
    ],
)
def test_controlled_options_are_refused_with_the_reason(
    system: str, settings: dict[str, object], arg: str, reason: str
) -> None:
    with pytest.raises(UsageError) as info:
        request_for(system, kind="train", sbatch_args=[arg], **settings)
    assert reason in f"{info.value.message} {info.value.hint}"


def test_qos_given_twice_differently() -> None:
    with pytest.raises(UsageError, match=r"contradicts submit\.qos"):
        request_for("karolina", kind="train", qos="a", sbatch_args=["--qos=b"])


# ---- submission: sbatch gets the dependencies, the HPO array's study exists before sbatch


def config(tmp_path: Path, **submit: object):  # type: ignore[no-untyped-def]
    overrides = [
        Override("run.out_dir", str(tmp_path / "runs"), "test"),
        Override("submit.registry", str(tmp_path / "jobs.jsonl"), "test"),
        Override("submit.gpus_per_node", 0, "test"),
        Override("submit.cpus_per_task", 1, "test"),
    ]
    overrides += [Override(f"submit.{k}", v, "test") for k, v in submit.items()]
    return resolve(None, overrides, env={}, cwd=tmp_path).config


def test_dependencies_go_to_sbatch_not_into_the_script(tmp_path: Path) -> None:
    cfg = config(tmp_path, after=["41", "42:any"])
    fake = FakeSlurm()
    plan = service.plan(cfg, "check", [], fake)
    assert "dependency" not in plan.script
    record = service.submit(plan, fake, service.registry_path(cfg))
    assert fake.calls[-1] == [
        "sbatch",
        "--parsable",
        "--dependency=afterok:41,afterany:42",
        "--kill-on-invalid-dep=yes",
        str(plan.request.script_path),
    ]
    assert record["after"] == ["41:ok", "42:any"]


def test_a_follow_up_job_in_the_same_run_directory_after_the_first(tmp_path: Path) -> None:
    """How a kind that needs a second step (an array, then one job after it) submits both: the
    second request is the first's with its own script name and a dependency on the first job."""
    cfg = config(tmp_path)
    fake = FakeSlurm()
    first = service.plan(cfg, "check", [], fake)
    first_record = service.submit(first, fake, service.registry_path(cfg))
    then = replace(first.request, script_name="after.sh", after=(Dependency(first_record["job_id"]),))
    second = service.Plan(first.profile, then, render(first.profile, then))
    second_record = service.submit(second, fake, service.registry_path(cfg))
    assert fake.calls[-1] == [
        "sbatch",
        "--parsable",
        "--dependency=afterok:77",
        "--kill-on-invalid-dep=yes",
        str(first.request.run_dir / "after.sh"),
    ]
    assert (first.request.run_dir / "job.sh").exists() and second_record["after"] == ["77:ok"]
    assert [r["script"] for r in jobs.read_records(service.registry_path(cfg))] == [
        str(first.request.run_dir / "job.sh"),
        str(first.request.run_dir / "after.sh"),
    ]


@pytest.mark.slow
def test_hpo_array_creates_its_study_before_sbatch(tmp_path: Path) -> None:
    import optuna

    from mlpfctl.hpo.storage import open_storage, parse_url

    cfg = config(tmp_path, array="4%2")
    created: list[int] = []

    class Recording(FakeSlurm):
        def __call__(self, argv):  # type: ignore[no-untyped-def,override]
            if argv[0] == "sbatch":  # the study is in the journal when sbatch runs
                storage = open_storage(
                    parse_url(f"journal:///{journal}"), heartbeat_interval=60, grace_period=120, max_retry=0
                )
                created.append(len(optuna.load_study(study_name="mlpf", storage=storage).trials))
            return super().__call__(argv)

    fake = Recording()
    plan = service.plan(cfg, "hpo", QUADRATIC, fake)
    journal = (plan.request.run_dir / "optuna-journal.log").as_posix().lstrip("/")
    record = service.submit(plan, fake, service.registry_path(cfg))
    assert created == [6]  # six queued configurations, before any task could start
    assert record["array"] == "0-3%2" and record["array_size"] == 4


def test_a_study_that_cannot_be_created_queues_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path, array="2", hpo_storage="postgresql://u@127.0.0.1:1/none")
    fake = FakeSlurm()
    plan = service.plan(cfg, "hpo", QUADRATIC, fake)
    with pytest.raises(RuntimeFailure, match="could not create study 'mlpf'"):
        service.submit(plan, fake, service.registry_path(cfg))
    assert not [c for c in fake.calls if c[0] == "sbatch"] and not plan.request.run_dir.exists()


def test_trial_ranks_must_fit_the_gpus_of_a_worker(tmp_path: Path) -> None:
    cfg = resolve(
        None,
        [
            Override("run.out_dir", str(tmp_path / "runs"), "t"),
            Override("submit.system", "karolina", "t"),
            Override("submit.account", "a", "t"),
            Override("submit.array", "8", "t"),
        ],
        env={},
        cwd=tmp_path,
    ).config
    with pytest.raises(UsageError, match="2-rank trials, but each HPO worker gets 1 GPU") as info:
        service.plan(cfg, "hpo", [*QUADRATIC, "--ranks-per-trial", "2"], FakeSlurm())
    assert "--gpus-per-node 2" in (info.value.hint or "")


# ---- jobs: one call, remembered, accounting and the log's last line


def record(tmp_path: Path, job_id: str, **extra: object) -> dict[str, object]:
    run_dir = tmp_path / f"run-{job_id}"
    run_dir.mkdir(exist_ok=True)
    return {"job_id": job_id, "run_dir": str(run_dir), "kind": "hpo", **extra}


def test_one_controller_call_for_every_job_and_final_states_are_remembered(tmp_path: Path) -> None:
    registry = tmp_path / "jobs.jsonl"
    for job_id in ("5", "6", "7"):
        jobs.append_record(registry, record(tmp_path, job_id))
    fake = FakeSlurm()
    fake.states = {"5": "RUNNING", "6": "FAILED", "7": "COMPLETED"}
    fake.exit_codes = {"6": "3:0"}
    rows = list(jobs.status(jobs.read_records(registry), fake, registry))
    assert [c[:3] for c in fake.calls] == [["scontrol", "show", "job"]] and len(fake.calls[0]) == 4
    assert [(r["state"], r["exit_code"]) for r in rows] == [
        ("RUNNING", "0:0"),
        ("FAILED", "3:0"),
        ("COMPLETED", "0:0"),
    ]
    # SLURM forgets the ended jobs (MinJobAge); the registry still knows how they ended
    fake.states = {"5": "COMPLETED"}
    fake.calls.clear()
    rows = list(jobs.status(jobs.read_records(registry), fake, registry))
    assert [(r["state"], r["exit_code"], r["source"]) for r in rows] == [
        ("COMPLETED", "0:0", "scontrol"),
        ("FAILED", "3:0", "registry"),
        ("COMPLETED", "0:0", "registry"),
    ]
    assert len(fake.calls) == 1
    fake.states = {}
    fake.calls.clear()
    rows = list(jobs.status(jobs.read_records(registry), fake, registry))
    assert [r["state"] for r in rows] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert fake.calls == []  # everything is final: SLURM is not asked at all


def test_forgotten_jobs_come_from_accounting_or_the_logs_last_line(tmp_path: Path) -> None:
    records = [
        record(tmp_path, "8"),
        record(tmp_path, "9"),
        record(tmp_path, "10", array="0-2", array_size=3),
    ]
    (tmp_path / "run-9" / "slurm-9.out").write_text("training...\nmlpfctl: job 9 ended with exit code 2\n")
    fake = FakeSlurm()
    states = jobs.job_states(records, fake)
    assert (states["9"].state, states["9"].exit_code, states["9"].source) == ("FAILED", "2:0", "log")
    assert states["8"].state == jobs.ENDED and states["10"].state == jobs.ENDED
    assert fake.calls[-1][0] == "sacct" and "8,9,10" in fake.calls[-1]
    # where accounting exists it answers for all of them in that one call
    fake.sacct = Result(
        0,
        "8|CANCELLED by 0|0:15|00:01:00\n10_0|COMPLETED|0:0|00:00:09\n10_1|FAILED|3:0|00:00:09\n"
        "10_2|COMPLETED|0:0|00:00:08\n",
        "",
    )
    states = jobs.job_states(records, fake)
    assert (states["8"].state, jobs.job_exit_status(states["8"])) == ("CANCELLED", 143)
    assert states["10"].state == "FAILED" and jobs.job_exit_status(states["10"]) == 3
    assert states["10"].reason == "completed 2, failed 1"


def test_array_tasks_from_the_controller(tmp_path: Path) -> None:
    # what scontrol prints for an array with 2 tasks started and 2 held back by the throttle
    lines = [
        "JobId=21 ArrayJobId=20 ArrayTaskId=1 JobName=x JobState=RUNNING Restarts=0 ExitCode=0:0",
        "JobId=20 ArrayJobId=20 ArrayTaskId=2-3%2 JobName=x JobState=PENDING Reason=JobArrayTaskLimit",
        "JobId=22 ArrayJobId=20 ArrayTaskId=0 JobName=x JobState=COMPLETED Restarts=1 ExitCode=0:0",
    ]

    def scontrol(argv: Sequence[str]) -> Result:
        assert list(argv) == ["scontrol", "show", "job", "-o", "20"]
        return Result(0, "\n".join(lines) + "\n", "")

    states = jobs.job_states([record(tmp_path, "20", array="0-3%2", array_size=4)], scontrol)
    job = states["20"]
    assert job.state == "RUNNING" and sorted(job.tasks) == ["0", "1", "2", "3"]
    assert job.reason == "completed 1, pending 2, running 1" and job.restarts == 1


@pytest.mark.parametrize(
    ("code", "state", "status"),
    [
        ("0:0", "COMPLETED", 0),
        ("3:0", "FAILED", 3),
        ("0:15", "CANCELLED", 143),
        ("0:0", "CANCELLED", 1),
        ("", "TIMEOUT", 1),
    ],
)
def test_exit_status(code: str, state: str, status: int) -> None:
    assert jobs.exit_status(code, state) == status


def test_wait_streams_the_log_and_returns_the_final_state(tmp_path: Path) -> None:
    registry = tmp_path / "jobs.jsonl"
    rec = record(tmp_path, "31")
    jobs.append_record(registry, rec)
    log = tmp_path / "run-31" / "slurm-31.out"
    fake = FakeSlurm()
    fake.states["31"] = "PENDING"
    steps = iter(
        [
            ("RUNNING", "step 1\n", "0:0"),
            ("RUNNING", "step 2\n", "0:0"),
            ("FAILED", "mlpfctl: job 31 ended with exit code 4\n", "4:0"),
        ]
    )

    def advance(_: float) -> None:
        state, line, code = next(steps)
        with log.open("a") as handle:
            handle.write(line)
        fake.states["31"], fake.exit_codes["31"] = state, code

    written: list[str] = []
    job = jobs.wait(rec, fake, registry, written.append, interval=0, sleep=advance)
    assert job.state == "FAILED" and jobs.job_exit_status(job) == 4
    assert "".join(written) == "step 1\nstep 2\nmlpfctl: job 31 ended with exit code 4\n"
    # one targeted scontrol call per poll, never all jobs
    assert all(c == ["scontrol", "show", "job", "-o", "31"] for c in fake.calls)
    assert jobs.read_records(registry)[0]["final"]["state"] == "FAILED"


def test_cli_wait_exits_with_the_jobs_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_env: FakeSlurm, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_env.states["77"] = "FAILED"
    cli_env.exit_codes["77"] = "5:0"
    monkeypatch.setattr(jobs, "wait", _no_sleep_wait(jobs.wait))
    code = run(["submit", "--gpus-per-node", "0", "--wait", "--", "check"])
    captured = capsys.readouterr()
    assert code == 5 and captured.out.strip() == "77"
    assert "job 77 ended: FAILED, exit code 5" in captured.err


def _no_sleep_wait(real):  # type: ignore[no-untyped-def]
    def wait(*args, **kwargs):  # type: ignore[no-untyped-def]
        return real(*args, **{**kwargs, "interval": 0, "sleep": lambda _: None})

    return wait


def test_cli_refused_site_option_is_one_error_and_hint(
    cli_env: FakeSlurm, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["submit", "--sbatch-arg=--time=5", "--", "check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --sbatch-arg '--time=5' is refused") and "\nhint: use --time" in err
    assert [c for c in cli_env.calls if c[0] == "sbatch"] == []


def test_cli_dry_run_shows_the_sbatch_call(cli_env: FakeSlurm, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(["submit", "--gpus-per-node", "0", "--after", "12:any", "--dry-run", "--json", "--", "check"])
        == 0
    )
    plan = json.loads(capsys.readouterr().out)
    assert plan["sbatch"][:4] == [
        "sbatch",
        "--parsable",
        "--dependency=afterany:12",
        "--kill-on-invalid-dep=yes",
    ]
    assert [c for c in cli_env.calls if c[0] == "sbatch"] == []
