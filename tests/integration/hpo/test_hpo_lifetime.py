"""Workers live no longer than their driver; a resumed driver never runs next to the old workers.

Real processes throughout: ``mlpfctl hpo run`` with two worker processes on a real SQLite study,
killed with SIGKILL (no chance to clean up), then ``--resume``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import psutil
import pytest

from mlpfctl.hpo.asha import ATTR_SLOT
from mlpfctl.hpo.storage import open_storage, parse_url

from .hpo_helpers import FAKE, RUNGS, argv

S = optuna.trial.TrialState


def _command(tmp_path: Path, study: str, *extra: str) -> list[str]:
    return [
        *argv(
            f"{sys.executable} -m mlpfctl hpo run --study {study} --objective {FAKE}:curve --space quadratic"
        ),
        *argv("--sampler random --scheduler none --trials 4 --workers 2"),
        *RUNGS,
        *argv("--set hpo.heartbeat_interval=0.5 --set hpo.grace_period=30 --set hpo.poll_interval=0.1"),
        *argv(f"--storage sqlite:///{tmp_path / 's.db'} --set hpo.workdir={tmp_path / 'work'}"),
        *extra,
    ]


def _env(sleep: float) -> dict[str, str]:
    return {**os.environ, "HPO_FAKE_SLEEP": str(sleep), "MLPFCTL_HPO_NO_DEVICE_PROBE": "1"}


def _workers(study: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "worker" in cmdline and study in cmdline and "hpo" in cmdline:
            found.append(proc)
    return found


class _Census(threading.Thread):
    """Counts the study's live worker processes every 50 ms; ``peak`` is the most at once."""

    def __init__(self, study: str) -> None:
        super().__init__(daemon=True)
        self.study, self.peak, self.done = study, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            found = _workers(self.study)
            pids = {p.pid for p in found}
            with contextlib.suppress(psutil.Error):  # a process may end while it is looked at
                alive = [
                    p
                    for p in found
                    if p.status() != psutil.STATUS_ZOMBIE and p.ppid() not in pids  # not a fork of one
                ]
                self.peak = max(self.peak, len(alive))


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_workers_die_with_a_killed_driver_and_resume_never_doubles_them(tmp_path: Path) -> None:
    study = f"life{os.getpid()}"
    census = _Census(study)
    census.start()
    log = (tmp_path / "first-driver.log").open("w")  # the workers write here too, after the kill
    driver = subprocess.Popen(_command(tmp_path, study), env=_env(0.3), stdout=subprocess.DEVNULL, stderr=log)
    try:
        _wait(lambda: len(list((tmp_path / "work").glob("trial-*/calls.jsonl"))) >= 2, 120)
        workers = _workers(study)
        assert len(workers) == 2
        driver.kill()  # SIGKILL: the driver cannot stop its workers itself
        driver.wait()
        # Resume at once, while the old workers are still shutting down: it must wait for them.
        resumed = subprocess.run(
            _command(tmp_path, study, "--resume"), env=_env(0.0), capture_output=True, text=True, timeout=300
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        _gone, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive, "workers outlived their driver"
    finally:
        census.done.set()
        census.join()
        if driver.poll() is None:
            driver.kill()
        for proc in _workers(study):
            proc.kill()
    assert census.peak == 2, f"{census.peak} workers of one study ran at once"
    storage = open_storage(
        parse_url(f"sqlite:///{tmp_path / 's.db'}"), heartbeat_interval=60, grace_period=120, max_retry=0
    )
    trials = optuna.load_study(study_name=study, storage=storage).get_trials()
    complete = sorted(int(t.user_attrs[ATTR_SLOT]) for t in trials if t.state == S.COMPLETE)
    summary = "; ".join(
        f"{t.number} {t.state.name} "
        + " ".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(t.user_attrs.items()))
        for t in trials
    )
    log.close()
    assert complete == [0, 1, 2, 3], summary + "\n" + (tmp_path / "first-driver.log").read_text()[-3000:]
    assert not [t for t in trials if t.state in (S.RUNNING, S.WAITING)]


@pytest.mark.slow
def test_a_second_driver_of_a_running_study_is_refused(tmp_path: Path) -> None:
    study = f"twice{os.getpid()}"
    driver = subprocess.Popen(
        _command(tmp_path, study), env=_env(0.5), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(lambda: len(_workers(study)) == 2, 120)
        second = subprocess.run(
            _command(tmp_path, study, "--resume"), env=_env(0.0), capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2, second.stderr
        assert f"pid {driver.pid}" in second.stderr and "Traceback" not in second.stderr
        assert len(_workers(study)) == 2
    finally:
        driver.send_signal(signal.SIGTERM)
        try:
            driver.wait(timeout=60)
        except subprocess.TimeoutExpired:
            driver.kill()
    assert not _workers(study)
