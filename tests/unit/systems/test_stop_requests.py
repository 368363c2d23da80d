"""The stop request of a SLURM job step (the time-limit warning): ``mlpfctl.systems.step`` blocks
SIGUSR1 for everything a step starts; processes that do not ask for it keep it pending instead of
dying; the training's ``catch_stop_signals`` receives one that arrived while it was still starting.

Each case runs in a fresh interpreter: signal masks and handlers are process state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlpfctl.systems.step import parse, torchrun_env

STEP = [sys.executable, "-m", "mlpfctl.systems.step"]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_a_step_command_starts_with_the_warning_blocked() -> None:
    probe = "import signal; print(signal.SIGUSR1 in signal.pthread_sigmask(signal.SIG_BLOCK, set()))"
    plain = subprocess.run(python(probe), capture_output=True, text=True, check=True)
    stepped = subprocess.run([*STEP, "--", *python(probe)], capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == "False"
    assert stepped.stdout.strip() == "True"


def test_a_helper_process_survives_the_warning_and_keeps_it_pending() -> None:
    # what torchrun's agent, an HPO driver or a DataLoader worker is: no handler of its own
    code = """
        import os, signal
        os.kill(os.getpid(), signal.SIGUSR1)
        from mlpfctl.train.signals import stop_requested
        print("alive", stop_requested())
    """
    proc = subprocess.run([*STEP, "--", *python(code)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["alive", "True"]


def test_the_training_receives_a_warning_that_came_while_it_was_starting() -> None:
    code = """
        import os, signal
        os.kill(os.getpid(), signal.SIGUSR1)  # before the loop: imports, data loading
        from mlpfctl.train.signals import catch_stop_signals, stop_requested
        with catch_stop_signals() as stop:
            print("in loop", stop.set, stop.signum == signal.SIGUSR1)
        # after the loop a late warning is recorded, never the default action (termination)
        os.kill(os.getpid(), signal.SIGUSR1)
        print("after", stop_requested())
    """
    proc = subprocess.run([*STEP, "--", *python(code)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["in loop True True", "after True"]


def test_outside_a_job_step_the_handlers_are_restored() -> None:
    code = """
        import signal
        from mlpfctl.train.signals import catch_stop_signals, stop_requested
        with catch_stop_signals() as stop:
            signal.raise_signal(signal.SIGTERM)
            print(stop.set, stop_requested())
        print(*(signal.getsignal(sig) is signal.SIG_DFL for sig in (signal.SIGUSR1, signal.SIGTERM)))
    """
    proc = subprocess.run(python(code), capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines() == ["True True", "True True"], proc.stderr


def test_children_of_a_step_inherit_the_blocked_warning(tmp_path: Path) -> None:
    # the HPO driver's workers, multiprocessing-spawned ranks and forked DataLoader workers
    code = """
        import multiprocessing as mp, os, signal, subprocess, sys
        def child(q):
            q.put(signal.SIGUSR1 in signal.pthread_sigmask(signal.SIG_BLOCK, set()))
        if __name__ == "__main__":
            q = mp.get_context("spawn").Queue()
            p = mp.get_context("spawn").Process(target=child, args=(q,))
            p.start(); print("spawn", q.get()); p.join()
            probe = "import signal; print(signal.SIGUSR1 in signal.pthread_sigmask(signal.SIG_BLOCK, set()))"
            out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
            print("popen", out.strip())
    """
    script = tmp_path / "children.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run(
        [*STEP, "--", sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.splitlines() == ["spawn True", "popen True"], proc.stderr


@pytest.mark.parametrize(
    ("env", "local_addr", "expected"),
    [
        (
            {"SLURM_NODEID": "0"},
            "jrc0001i",
            {"PET_NODE_RANK": "0", "PET_RDZV_CONF": "is_host=1", "PET_LOCAL_ADDR": "jrc0001i"},
        ),
        ({"SLURM_NODEID": "3"}, "jrc0001i", {"PET_NODE_RANK": "3", "PET_RDZV_CONF": "is_host=0"}),
        ({"SLURM_NODEID": "0"}, None, {"PET_NODE_RANK": "0", "PET_RDZV_CONF": "is_host=1"}),
    ],
)
def test_torchrun_node_settings(
    env: dict[str, str], local_addr: str | None, expected: dict[str, str]
) -> None:
    # only the rendezvous host advertises the given address (torchrun_jsc's --local_addr fix)
    assert torchrun_env(env, local_addr) == expected


def test_the_step_wrapper_passes_torchrun_settings_to_the_command() -> None:
    probe = (
        "import os; print(*(os.environ.get(k) for k in ('PET_NODE_RANK', 'PET_RDZV_CONF', 'PET_LOCAL_ADDR')))"
    )
    env = {**os.environ, "SLURM_NODEID": "0"}
    proc = subprocess.run(
        [*STEP, "--torchrun", "--local-addr", "host0i", "--", *python(probe)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert proc.stdout.split() == ["0", "is_host=1", "host0i"]


@pytest.mark.parametrize("argv", [[], ["--"], ["--bogus", "--", "true"], ["--local-addr", "h", "--", "true"]])
def test_bad_step_usage(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        parse(argv)
    proc = subprocess.run([*STEP, *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "\nhint: " in proc.stderr


def test_a_missing_program_is_a_clear_error() -> None:
    proc = subprocess.run([*STEP, "--", "/nonexistent/python", "-V"], capture_output=True, text=True)
    assert proc.returncode == 127
    assert "cannot start '/nonexistent/python'" in proc.stderr and "hint: " in proc.stderr
    assert signal.SIGUSR1 not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # this process untouched
