"""Run rendered scripts under bash with fake srun/scontrol (the SLURM process boundary).

Checks what golden files cannot: hostile values stay data, the warning signal reaches the
job step, a checkpointed step (exit 3) requeues the job, and a restarted job resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from mlpfctl.config.schema import SubmitSection
from mlpfctl.systems.profiles import SystemProfile, load_profile
from mlpfctl.systems.render import render
from mlpfctl.systems.request import build_request, path_safe

ENV = {"XDG_CONFIG_HOME": "/nonexistent-mlpfctl-test"}
HOSTILE = "a b 'q' \"dq\" $(touch PWNED1) ; touch PWNED2 `touch PWNED3` %j #x"

FAKE_SRUN = r"""#!/bin/bash
printf '%s\0' "$@" > "$FAKE_DIR/srun.argv.$$"
echo $$ > "$FAKE_DIR/srun.pid.$$"
case "$FAKE_SRUN" in
    ok) exit 0 ;;
    checkpoint)
        trap 'echo "$1" > "$FAKE_DIR/checkpointed"; exit 3' USR1
        trap 'echo "$1" > "$FAKE_DIR/terminated"; exit 143' TERM
        touch "$FAKE_DIR/started"
        for _ in $(seq 300); do sleep 0.1; done
        exit 0 ;;
esac
"""
FAKE_SCONTROL = r"""#!/bin/bash
if [ "$1 $2" = "show hostnames" ]; then echo node001; exit 0; fi
echo "$*" >> "$FAKE_DIR/scontrol.log"
"""
# scancel --signal=USR1 JOB: SLURM signals every process of every step of the job (not the batch
# script); here the steps are the fake sruns
FAKE_SCANCEL = r"""#!/bin/bash
echo "$*" >> "$FAKE_DIR/scancel.log"
for f in "$FAKE_DIR"/srun.pid.*; do kill -s USR1 "$(cat "$f")" 2>/dev/null; done
exit 0
"""


def local_profile() -> SystemProfile:
    # the shipped 'local' profile without discovery: one CPU-only partition
    return load_profile("local", ENV)


def write_script(
    tmp_path: Path, profile: SystemProfile, settings: SubmitSection, kind: str, args: list[str]
) -> Path:
    request = build_request(
        profile, settings, kind, args, out_dir=str(tmp_path / "runs"), python="/v/bin/python"
    )
    request.run_dir.mkdir(parents=True)
    request.script_path.write_text(render(profile, request))
    return request.script_path


def fake_env(tmp_path: Path, mode: str, **extra: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL), ("scancel", FAKE_SCANCEL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "FAKE_DIR": str(tmp_path),
        "FAKE_SRUN": mode,
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "node001",
        "SLURM_CPUS_PER_TASK": "1",
        "SLURM_NNODES": "1",
        **extra,
    }


def warn_once_started(proc: subprocess.Popen[Any], tmp_path: Path) -> None:
    """What --signal=B:USR1@T does, once the (fake) job step runs."""
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline, "the job step never started"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGUSR1)


def srun_calls(tmp_path: Path) -> list[list[str]]:
    calls = sorted(tmp_path.glob("srun.argv.*"), key=lambda p: p.stat().st_mtime_ns)
    return [p.read_bytes().decode().split("\0")[:-1] for p in calls]


def test_hostile_values_stay_data(tmp_path: Path) -> None:
    settings = SubmitSection(job_name=HOSTILE, gpus_per_node=0, tasks_per_node=2)
    script = write_script(tmp_path, local_profile(), settings, "train", ["--note", HOSTILE, "--x=$(id)"])
    hostile_dir = script.parent
    # the run directory is named after the job, made safe as one directory name under runs/
    assert hostile_dir.parent == tmp_path / "runs"
    assert hostile_dir.name.startswith(path_safe(HOSTILE)) and "/" not in path_safe(HOSTILE)
    result = subprocess.run(
        ["bash", str(script)],
        env=fake_env(tmp_path, "ok"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.rglob("PWNED*")), "a value was executed as a command"
    (argv,) = srun_calls(tmp_path)
    assert argv[-6:] == ["train", "--note", HOSTILE, "--x=$(id)", "--run-dir", str(hostile_dir)]


def test_warning_signal_checkpoints_and_requeues(tmp_path: Path) -> None:
    script = write_script(tmp_path, local_profile(), SubmitSection(gpus_per_node=0), "train", [])
    proc = subprocess.Popen(["bash", str(script)], env=fake_env(tmp_path, "checkpoint"), cwd=tmp_path)
    try:
        warn_once_started(proc, tmp_path)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert (tmp_path / "checkpointed").exists()
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]


def test_torchrun_steps_get_the_warning_from_scancel_not_from_srun(tmp_path: Path) -> None:
    # signalling the srun client with SIGTERM makes it force job termination; the job signals
    # the steps themselves, with the same SIGUSR1 for torchrun as for srun
    jureca = load_profile("jureca", ENV)
    script = write_script(tmp_path, jureca, SubmitSection(system="jureca", account="a"), "train", [])
    proc = subprocess.Popen(["bash", str(script)], env=fake_env(tmp_path, "checkpoint"), cwd=tmp_path)
    try:
        warn_once_started(proc, tmp_path)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert (tmp_path / "scancel.log").read_text().split() == ["--signal=USR1", "4242"]
    assert (tmp_path / "checkpointed").exists() and not (tmp_path / "terminated").exists()
    assert "requeue 4242" in (tmp_path / "scontrol.log").read_text()


def test_a_restarted_job_resumes_from_the_run_dir(tmp_path: Path) -> None:
    script = write_script(
        tmp_path, local_profile(), SubmitSection(gpus_per_node=0), "train", ["--steps", "9"]
    )
    env = fake_env(tmp_path, "ok", SLURM_RESTART_COUNT="1")
    assert subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, timeout=60).returncode == 0
    (argv,) = srun_calls(tmp_path)
    assert argv[-2:] == ["--resume", str(script.parent)]


def test_requeues_stop_at_the_limit(tmp_path: Path) -> None:
    settings = SubmitSection(gpus_per_node=0, max_requeues=2)
    script = write_script(tmp_path, local_profile(), settings, "train", [])
    env = fake_env(tmp_path, "checkpoint", SLURM_RESTART_COUNT="2")
    proc = subprocess.Popen(["bash", str(script)], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    warn_once_started(proc, tmp_path)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert "giving up" in stderr
    assert not (tmp_path / "scontrol.log").exists()


@pytest.mark.parametrize(("nodes", "calls"), [(1, 1), (2, 2)])
def test_hpo_runs_the_driver_then_joins_workers(tmp_path: Path, nodes: int, calls: int) -> None:
    settings = SubmitSection(gpus_per_node=0, tasks_per_node=1, cpus_per_task=1, nodes=nodes)
    script = write_script(tmp_path, local_profile(), settings, "hpo", ["--trials", "4"])
    env = fake_env(tmp_path, "ok", SLURM_NNODES=str(nodes))
    # `mlpfctl hpo status` (the wait for the study) runs outside srun: a fake python answers it
    fake_python = tmp_path / "bin" / "python"
    fake_python.write_text('#!/bin/bash\necho "$*" >> "$FAKE_DIR/python.log"\n')
    fake_python.chmod(0o755)
    text = script.read_text().replace("MLPFCTL_PY=/v/bin/python", f"MLPFCTL_PY={fake_python}")
    script.write_text(text)
    assert subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, timeout=60).returncode == 0
    argvs = srun_calls(tmp_path)
    assert len(argvs) == calls
    journal = f"journal:///{(script.parent / 'optuna-journal.log').as_posix().lstrip('/')}"
    driver = next(a for a in argvs if "run" in a)
    assert driver[driver.index("run") :] == [
        "run",
        "--trials",
        "4",
        "--workers",
        "1",
        "--storage",
        journal,
        "--study",
        "mlpf",
    ]
    for argv in argvs:
        if "worker" in argv:
            assert argv[-6:] == ["--storage", journal, "--study", "mlpf", "--worker-index", "1"]
            assert "--relative=1" in argv
    if nodes > 1:
        assert "hpo status --storage" in (tmp_path / "python.log").read_text()


def test_scale_bench_starts_no_point_after_the_warning_and_says_what_it_left_out(tmp_path: Path) -> None:
    settings = SubmitSection(gpus_per_node=0, tasks_per_node=2, scale_points=[1, 2])
    script = write_script(tmp_path, local_profile(), settings, "scale-bench", ["train"])
    proc = subprocess.Popen(
        ["bash", str(script)],
        env=fake_env(tmp_path, "checkpoint"),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    warn_once_started(proc, tmp_path)
    _, stderr = proc.communicate(timeout=30)
    # the point's step exited 3 (fake srun); a real one may also finish: either way no requeue
    assert proc.returncode == 3, stderr
    assert len(srun_calls(tmp_path)) == 1
    assert "not measured after the time-limit warning: 1(stopped) 2" in stderr
    assert not (tmp_path / "scontrol.log").exists()


def test_scale_bench_that_finished_every_point_exits_0_despite_a_late_warning(tmp_path: Path) -> None:
    settings = SubmitSection(gpus_per_node=0, tasks_per_node=2, scale_points=[1])
    script = write_script(tmp_path, local_profile(), settings, "scale-bench", ["train"])
    text = script.read_text().replace(
        "wait_steps || finish $?\n", "wait_steps || finish $?\n    on_warning\n"
    )
    script.write_text(text)  # the warning comes right after the last point
    proc = subprocess.run(["bash", str(script)], env=fake_env(tmp_path, "ok"), cwd=tmp_path, timeout=60)
    assert proc.returncode == 0


def test_hpo_after_the_warning_requeues_on_the_drivers_exit_3(tmp_path: Path) -> None:
    settings = SubmitSection(gpus_per_node=0, tasks_per_node=1, cpus_per_task=1)
    script = write_script(tmp_path, local_profile(), settings, "hpo", ["--trials", "4"])
    proc = subprocess.Popen(["bash", str(script)], env=fake_env(tmp_path, "checkpoint"), cwd=tmp_path)
    try:
        warn_once_started(proc, tmp_path)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert (tmp_path / "scancel.log").read_text().split() == ["--signal=USR1", "4242"]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]


def test_every_step_starts_through_the_step_wrapper(tmp_path: Path) -> None:
    script = write_script(tmp_path, local_profile(), SubmitSection(gpus_per_node=0), "train", [])
    assert (
        subprocess.run(
            ["bash", str(script)], env=fake_env(tmp_path, "ok"), cwd=tmp_path, timeout=60
        ).returncode
        == 0
    )
    (argv,) = srun_calls(tmp_path)
    wrapper = argv.index("mlpfctl.systems.step")
    assert argv[wrapper - 2 : wrapper + 5] == [
        "/v/bin/python",
        "-m",
        "mlpfctl.systems.step",
        "--",
        "/v/bin/python",
        "-m",
        "mlpfctl",
    ]
