"""``mlpfctl hpo run``: create (or resume) the study, queue its configurations, start local workers.

Two levels of parallelism: ``workers`` trials at once, each a ``ranks_per_trial``-rank DDP run.
Worker i gets devices ``[i*K, (i+1)*K)`` of the backend's device pool through its visible-devices
variable (``mlpfctl.backends.partition``); on CPU the ranks are just processes. Workers are separate
OS processes running
``mlpfctl hpo worker`` (what a SLURM job step runs too); the storage URL travels in their
environment (``MLPFCTL_HPO__STORAGE``), never on a command line where ``ps`` would show a password.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlpfctl.console import log, warn
from mlpfctl.errors import EXIT_CHECKPOINTED, Checkpointed, RuntimeFailure, UsageError
from mlpfctl.hpo.asha import ATTR_KIND, ATTR_SLOT
from mlpfctl.hpo.lifetime import DRIVER_PID_ENV, driver_lock, record_workers
from mlpfctl.hpo.settings import SETTINGS_ATTR, StudySettings, load_settings
from mlpfctl.hpo.storage import StorageSpec, check_location, open_storage

if TYPE_CHECKING:
    import optuna


@dataclass
class RunRequest:
    storage: StorageSpec
    study: str
    settings: StudySettings
    workers: int
    resume: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # The storage is mlpfctl's default file under run.out_dir: its directory may be created.
    default_storage: bool = False

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            "study": self.study,
            "storage": self.storage.masked,
            "resume": self.resume,
            "workers": self.workers,
            "ranks_per_trial": s.ranks_per_trial,
            "sampler": s.sampler,
            "scheduler": s.scheduler,
            "trials": s.trials,
            "rungs": s.rungs.budgets,
            "reduction_factor": s.reduction_factor,
            "promotion_rule": s.promotion_rule_in_use,
            "objective": s.objective or "mlpf (training)",
            "space": s.space.get("name"),
            "workdir": s.workdir,
            "devices": device_slices(self.workers, s.ranks_per_trial, self.env, _backend(s)),
        }


@dataclass
class RunResult:
    study: str
    states: dict[str, int]
    worker_exit_codes: list[int]


def device_slices(
    workers: int, ranks_per_trial: int, env: Mapping[str, str], backend: str = "auto"
) -> list[dict[str, str]]:
    """Per-worker environment updates that pin worker i to devices [i*K, (i+1)*K) of the pool.

    The backend's adapter decides the variable (ROCR_VISIBLE_DEVICES on ROCm, HABANA_VISIBLE_MODULES
    on Gaudi, ZE_AFFINITY_MASK on XPU, CUDA_VISIBLE_DEVICES on NVIDIA), narrows what the job
    already set (SLURM's binding) and counts devices with its own probe. ``MLPFCTL_HPO_NO_DEVICE_PROBE``
    pins nothing (host-only tests).
    """
    if env.get("MLPFCTL_HPO_NO_DEVICE_PROBE"):
        return [{} for _ in range(workers)]
    from mlpfctl.backends import select_backend
    from mlpfctl.backends.partition import partition

    return partition(select_backend(backend), workers, ranks_per_trial, env)


def _backend(settings: StudySettings) -> str:
    run = settings.base_config.get("run", {})
    return str(run.get("backend", "auto")) if isinstance(run, dict) else "auto"


def check_inputs(request: RunRequest) -> None:
    """Everything a campaign needs, checked before anything is created or any worker starts:
    the storage location, the dataset of the MLPF objective, the trial directory."""
    from pathlib import Path

    from mlpfctl.paths import check_output_dir

    check_location(request.storage, existing=False, create_parent=request.default_storage)
    s = request.settings
    if s.objective is None:  # the MLPF objective trains on data.path in every trial
        data = str(s.base_config.get("data", {}).get("path", ""))
        if not data or not Path(data).expanduser().exists():
            raise UsageError(
                f"dataset {data or '(empty data.path)'} does not exist (every trial would fail on it)",
                "pass --set data.path=DIR (generate one with 'mlpfctl data generate') "
                "or tune a generic objective with --objective module:function",
            )
    check_output_dir(Path(s.workdir), "hpo.workdir")


def prepare_study(request: RunRequest, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create the study with its settings and queued configurations, or reopen it for --resume.

    ``storage`` replaces the URL's storage (simulated workers share one in-memory storage).
    """
    import optuna

    if storage is None:  # simulated workers share an in-memory storage: nothing on disk to check
        check_inputs(request)
    s = request.settings
    # Plan before touching the storage: a bad space or grid leaves no empty study (or file) behind.
    plans = _plan(s, 0, s.trials)
    storage = storage or open_storage(request.storage, heartbeat_interval=60, grace_period=120, max_retry=0)
    names = {
        summary.study_name for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)
    }
    if request.study in names:
        if not request.resume:
            raise UsageError(
                f"study '{request.study}' already exists in {request.storage.masked}",
                "pass --resume to continue it, or choose another --study name",
            )
        study = optuna.load_study(study_name=request.study, storage=storage)
        stored = load_settings(study)
        if s.trials > stored.trials:
            _queue(study, _plan(stored, stored.trials, s.trials), stored.trials)
            stored.trials = s.trials
            study.set_user_attr(SETTINGS_ATTR, stored.to_dict())
        request.settings = stored
        log(f"resuming study '{request.study}' ({len(study.trials)} trials so far)")
        return study
    directions = [
        optuna.study.StudyDirection.MINIMIZE if d == "minimize" else optuna.study.StudyDirection.MAXIMIZE
        for d in s.directions
    ]
    study = optuna.create_study(study_name=request.study, storage=storage, directions=directions)
    study.set_user_attr(SETTINGS_ATTR, s.to_dict())
    _queue(study, plans, 0)
    return study


def _plan(s: StudySettings, start: int, stop: int) -> list[dict[str, Any]]:
    """Parameters of the queued configurations ``start..stop-1`` (empty dicts: sampled later)."""
    from mlpfctl.hpo.samplers import PLANNED, plan_configs
    from mlpfctl.hpo.space import SearchSpace

    if s.sampler not in PLANNED:
        return [{} for _ in range(stop - start)]
    plans = plan_configs(SearchSpace.from_dict(s.space), s.sampler, stop, s.seed)[start:]
    if len(plans) < stop - start:
        warn(f"the search space has only {start + len(plans)} distinct configurations for --trials {stop}")
    return plans


def _queue(study: optuna.Study, plans: list[dict[str, Any]], start: int) -> None:
    for offset, params in enumerate(plans):
        study.enqueue_trial(params, user_attrs={ATTR_KIND: "new", ATTR_SLOT: start + offset})


def worker_command(study: str, index: int) -> list[str]:
    return [sys.executable, "-m", "mlpfctl", "hpo", "worker", "--study", study, "--worker-index", str(index)]


def run_driver(request: RunRequest) -> RunResult:
    """Prepare the study, run the workers to completion, return the final state counts."""
    from pathlib import Path

    prepare_study(request)  # on --resume this loads the stored settings the devices are split by
    slices = device_slices(
        request.workers, request.settings.ranks_per_trial, request.env, _backend(request.settings)
    )
    procs: list[subprocess.Popen[bytes]] = []
    base_env = dict(request.env)
    base_env["MLPFCTL_HPO__STORAGE"] = request.storage.url
    base_env[DRIVER_PID_ENV] = str(os.getpid())  # the workers die with this process
    base_env.setdefault("OMP_NUM_THREADS", "1")  # many small processes on shared cores
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with driver_lock(Path(request.settings.workdir), request.study) as lock:
            for index in range(request.workers):
                env = {**base_env, **slices[index]}
                procs.append(
                    subprocess.Popen(worker_command(request.study, index), env=env, pass_fds=(lock,))
                )
            record_workers(lock, [proc.pid for proc in procs])
            codes = [proc.wait() for proc in procs]
    except KeyboardInterrupt:
        warn("interrupted: stopping the workers (their running trials are re-queued; continue with --resume)")
        _stop(procs)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    states = study_states(request)
    if states.get("FAIL", 0) and not states.get("COMPLETE", 0) and not states.get("PRUNED", 0):
        raise RuntimeFailure(
            f"every trial of study '{request.study}' failed; first error: {_first_error(request)}",
            "fix the objective (see the warnings above), then run again with --resume or a new --study",
        )
    stopped = bool(codes) and EXIT_CHECKPOINTED in codes and all(c in (0, EXIT_CHECKPOINTED) for c in codes)
    if stopped and (states.get("RUNNING", 0) or _unfinished_slots(request)):
        # The workers stopped on a stop request (SLURM's time-limit warning reaches every process
        # of the job step) and gave their checkpointed trials back: the study continues on --resume.
        raise Checkpointed(
            f"the workers stopped on a stop request; study '{request.study}' is checkpointed "
            f"({_counts(states)})",
            "continue it: mlpfctl hpo run --resume with the same --storage and --study "
            "(a requeued SLURM job does it itself)",
        )
    if any(codes) and not stopped:
        if states.get("RUNNING", 0) or _unfinished_slots(request):
            raise RuntimeFailure(
                f"workers exited with codes {codes} and the study is unfinished",
                "see the worker logs above; continue the study with --resume",
            )
        # A worker died (killed, node lost) but the others re-ran its trial: the study is whole.
        warn(f"worker exit codes {codes}: the surviving workers completed the study")
    return RunResult(request.study, states, codes)


def _counts(states: Mapping[str, int]) -> str:
    return ", ".join(f"{name.lower()} {count}" for name, count in sorted(states.items())) or "no trials"


def _first_error(request: RunRequest) -> str:
    import optuna

    storage = open_storage(request.storage, heartbeat_interval=60, grace_period=120, max_retry=0)
    for trial in optuna.load_study(study_name=request.study, storage=storage).get_trials(deepcopy=False):
        if "mlpfctl.error" in trial.user_attrs:
            return str(trial.user_attrs["mlpfctl.error"])
    return "unknown (killed workers?)"


def _unfinished_slots(request: RunRequest) -> int:
    """Queued new configurations or retries nobody ran (a worker-less study)."""
    import optuna

    from mlpfctl.hpo.storage import ATTR_RETRY_OF

    storage = open_storage(request.storage, heartbeat_interval=60, grace_period=120, max_retry=0)
    study = optuna.load_study(study_name=request.study, storage=storage)
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    return sum(1 for t in waiting if t.user_attrs.get(ATTR_KIND) == "new" or ATTR_RETRY_OF in t.user_attrs)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


def study_states(request: RunRequest) -> dict[str, int]:
    import optuna

    storage = open_storage(request.storage, heartbeat_interval=60, grace_period=120, max_retry=0)
    study = optuna.load_study(study_name=request.study, storage=storage)
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts
