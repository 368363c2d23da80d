"""``mlpfctl hpo worker``: pull jobs from the shared study until there is nothing left to do.

One loop for every scheduler:

    reap stale trials (heartbeat) -> claim the next WAITING job atomically -> run it with heartbeats
    -> tell the result -> repeat; when nothing is claimable: wait while others still run, else stop.

The driver queues one WAITING "new" slot per configuration when it creates the study, so the number
of configurations is exact with any number of workers (no ``MaxTrialsCallback`` overshoot) and a
killed worker's job is re-queued, not lost. Run it anywhere that reaches the storage: a local
process of ``mlpfctl hpo run``, a SLURM job step, an array task.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from mlpfctl.console import log, warn
from mlpfctl.errors import Checkpointed, MlpfctlError, RuntimeFailure, UsageError
from mlpfctl.hpo import optuna_api as api
from mlpfctl.hpo.asha import (
    ATTR_BUDGET,
    ATTR_CHECKPOINT,
    ATTR_CONFIG,
    ATTR_DEDUPE,
    ATTR_DUPLICATE_OF,
    ATTR_JOB,
    ATTR_KIND,
    ATTR_OUTCOME,
    ATTR_PARENT,
    ATTR_RANKS,
    ATTR_RUNG,
    ATTR_SLOT,
    ATTR_START,
    ATTR_TICKET,
    claim_order,
    job_ranks,
    queue_name,
    rung_value,
    ticket_attrs,
    void_tickets,
)
from mlpfctl.hpo.objective import (
    Diverged,
    Reporter,
    TrialCheckpointed,
    TrialContext,
    load_objective,
    mlpf_objective,
)
from mlpfctl.hpo.settings import StudySettings, load_settings
from mlpfctl.hpo.space import SearchSpace, same_config
from mlpfctl.hpo.storage import (
    ATTR_RETRIES,
    ATTR_RETRY_OF,
    Liveness,
    StorageSpec,
    check_location,
    open_storage,
    retry_copy,
)

if TYPE_CHECKING:
    import optuna

MAX_DEDUPE_ATTEMPTS = 20
# Model-based samplers that read an ASHA study through mlpfctl.hpo.rung_sampler (one trial per
# configuration). cmaes keeps its own generation state in the study and reads pruned trials itself.
RUNG_VIEW_SAMPLERS: tuple[str, ...] = ("tpe", "gp")
# a trial given back after checkpointing at a stop request: where and at which step it continues
ATTR_RESUME = "mlpfctl.resume_from"
ATTR_RESUME_STEP = "mlpfctl.resume_step"


@dataclass
class WorkerRequest:
    storage: StorageSpec
    study: str
    worker_index: int = 0
    max_jobs: int | None = None  # stop after this many jobs (tests, array tasks with a quota)


@dataclass
class WorkerResult:
    jobs: int
    completed: int
    pruned: int
    failed: int


class Clock(Protocol):
    """Where a worker reads time and waits: the real clock, or a simulated one (benchmarks)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def idle(self, seconds: float) -> None:
        """Wait for other workers to change the study (nothing claimable, something running)."""


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)


class _Interrupted(Exception):
    pass


# Signals that arrived inside a critical section (None: outside one, raise at once).
_deferred: list[int] | None = None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SLURM and the driver stop workers with SIGTERM: unwind like Ctrl-C so the running trial is
    # failed and re-queued cleanly instead of waiting for its heartbeat to go stale.
    if _deferred is not None:
        _deferred.append(signum)
        return
    raise _Interrupted(f"signal {signum}")


@contextlib.contextmanager
def _critical() -> Iterator[None]:
    """Defer SIGTERM across a few storage writes that must not be torn apart (a promotion)."""
    global _deferred
    _deferred = []
    try:
        yield
    finally:
        pending, _deferred = _deferred, None
    if pending:
        raise _Interrupted(f"signal {pending[0]}")


class Worker:
    def __init__(
        self,
        request: WorkerRequest,
        *,
        storage: optuna.storages.BaseStorage | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``storage`` and ``clock`` replace the URL's storage and real time (simulated workers)."""
        import optuna

        from mlpfctl.hpo.samplers import make_sampler
        from mlpfctl.hpo.schedulers import make_pruner

        self.request = request
        self.clock: Clock = clock or RealClock()
        if storage is None:
            # A worker joins a study: opening a missing journal or SQLite file would create it.
            check_location(request.storage, existing=True)
        # A first connection without heartbeat settings only to read the stored settings.
        try:
            probe = optuna.load_study(
                study_name=request.study,
                storage=storage
                or open_storage(request.storage, heartbeat_interval=60, grace_period=120, max_retry=0),
            )
        except KeyError:
            raise UsageError(
                f"no study '{request.study}' in {request.storage.masked}",
                "create it first: mlpfctl hpo create (or hpo run) with the same --storage and --study",
            ) from None
        self.settings: StudySettings = load_settings(probe)
        s = self.settings
        self.liveness = Liveness(request.storage, s.heartbeat_interval, s.grace_period, s.max_retry)
        storage = storage or open_storage(
            request.storage,
            heartbeat_interval=s.heartbeat_interval,
            grace_period=s.grace_period,
            max_retry=s.max_retry,
        )
        sampler = make_sampler(
            s.sampler, seed=s.seed, worker_index=request.worker_index, n_objectives=len(s.directions)
        )
        self.space = SearchSpace.from_dict(s.space)
        if s.promotion and s.sampler in RUNG_VIEW_SAMPLERS:
            from mlpfctl.hpo.rung_sampler import RungSampler

            # BOHB's rule: a rung models the space once it holds d + 2 results (d parameters).
            sampler = RungSampler(sampler, s.rungs.budgets, len(self.space.params) + 2)
        self.study = optuna.load_study(
            study_name=request.study,
            storage=storage,
            sampler=sampler,
            pruner=make_pruner(s.scheduler, s.rungs),
        )
        # ASHA's promotion tickets live in a companion study (asha.py explains why).
        self.queue: optuna.Study | None = None
        if s.promotion:
            self.queue = optuna.create_study(
                study_name=queue_name(request.study),
                storage=storage,
                load_if_exists=True,
                sampler=optuna.samplers.RandomSampler(),
            )
        self.objective = load_objective(s.objective) if s.objective else mlpf_objective
        self.budgets = s.rungs.budgets
        self.workdir = Path(s.workdir)

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> WorkerResult:
        result = WorkerResult(0, 0, 0, 0)
        started = self.clock.monotonic()
        previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
        try:
            stopped = self._loop(result, started)
        except _Interrupted:
            raise KeyboardInterrupt from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if stopped:
            raise Checkpointed(
                f"worker {self.request.worker_index} stopped on a stop request (time-limit warning) after "
                f"{result.jobs} job(s); running trials were checkpointed and given back to the study",
                "continue the study: mlpfctl hpo run --resume (a requeued SLURM job does it itself)",
            )
        return result

    def _loop(self, result: WorkerResult, started: float) -> bool:
        """Work until done; True when it stopped on a stop request (see mlpfctl.train.signals)."""
        from mlpfctl.train.signals import stop_requested

        while self.request.max_jobs is None or result.jobs < self.request.max_jobs:
            if stop_requested():
                log(f"worker {self.request.worker_index}: stop requested; claiming no more trials")
                return True
            self._reap()
            if self.settings.timeout is not None and self.clock.monotonic() - started > self.settings.timeout:
                log(f"worker {self.request.worker_index}: timeout reached, stopping")
                break
            trial_id = self._claim()
            if trial_id is None:
                if self._anything_running():
                    self.clock.idle(self.settings.poll_interval)
                    continue
                break
            outcome = self._run_job(trial_id)
            result.jobs += 1
            if outcome == "checkpointed":
                return True
            if outcome in ("complete", "top", "paused"):
                result.completed += 1
            elif outcome in ("pruned", "diverged"):
                result.pruned += 1
            elif outcome != "duplicate":
                result.failed += 1
        return False

    def _reap(self) -> None:
        import optuna

        try:
            self.liveness.reap(self.study)
            if self.queue is not None:
                self._reap_tickets(self.queue)
        except optuna.exceptions.StorageInternalError as exc:  # SQLite lock contention: try later
            warn(f"stale-trial check skipped: {exc}")

    def _reap_tickets(self, queue: optuna.Study) -> None:
        """Finish tickets whose claimer died between claiming and finishing them (asha.py)."""
        import datetime

        import optuna

        running = queue.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        now = datetime.datetime.now()
        stale = [
            t
            for t in running
            if t.datetime_start is not None
            and (now - t.datetime_start).total_seconds() > self.settings.grace_period
        ]
        if not stale:
            return
        jobs = {
            int(t.user_attrs[ATTR_TICKET]): t
            for t in self.study.get_trials(deepcopy=False)
            if ATTR_TICKET in t.user_attrs
        }
        for ticket in stale:
            ident = api.trial_id(ticket)
            if ident in jobs:
                api.finish(queue, ident, optuna.trial.TrialState.COMPLETE, [0.0])
            elif api.finish(queue, ident, optuna.trial.TrialState.FAIL):
                queue.add_trial(retry_copy(ticket))
                warn(f"promotion ticket {ticket.number} lost its worker: queued again")

    def _anything_running(self) -> bool:
        import optuna

        return bool(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))

    def _claim(self) -> int | None:
        """Atomically move the first claimable WAITING trial to RUNNING; its id, or None."""
        import optuna

        for _ in range(10):
            try:
                return self._claim_once()
            except optuna.exceptions.StorageInternalError as exc:
                # A storage hiccup (lock timeout, dropped connection): the claim did not happen.
                # Re-read and retry rather than mistake it for "no work left".
                warn(f"claim failed ({exc}); retrying")
                self.clock.sleep(self.settings.poll_interval)
        raise RuntimeFailure("the study storage kept failing", "check the storage (server, file system)")

    def _claim_once(self) -> int | None:
        import optuna

        s = self.settings
        trials = self.study.get_trials(deepcopy=False)
        tickets = self.queue.get_trials(deepcopy=False) if self.queue is not None else []
        if self.queue is not None:
            for void in void_tickets(trials, tickets):
                api.finish(self.queue, void, optuna.trial.TrialState.FAIL)
        order = claim_order(
            trials,
            tickets,
            promotion=s.promotion,
            eta=s.reduction_factor,
            top_rung=len(self.budgets) - 1,
            maximize=s.maximize,
            rule=s.promotion_rule,
        )
        for kind, ident in order:
            if kind == "job":
                if api.claim(self.study, ident):
                    return ident
            elif self.queue is not None and api.claim(self.queue, ident):
                job = self._promote(self.queue, ident, trials)
                if job is not None:
                    return job
        return None

    def _promote(
        self, queue: optuna.Study, ticket_id: int, trials: list[optuna.trial.FrozenTrial]
    ) -> int | None:
        """Turn a claimed ticket into a RUNNING promotion job; None if a reaper voided the ticket."""
        import optuna

        running = optuna.trial.TrialState.RUNNING
        with _critical():
            ticket = api.get(queue, ticket_id)
            attrs = {k: v for k, v in ticket.user_attrs.items() if k not in (ATTR_RETRIES, ATTR_RETRY_OF)}
            attrs[ATTR_TICKET] = ticket_id
            job = api.create(
                self.study,
                optuna.trial.create_trial(
                    state=running, params=ticket.params, distributions=ticket.distributions, user_attrs=attrs
                ),
            )
            self.liveness.beat(api.storage(self.study), job)
            api.set_user_attr(queue, ticket_id, ATTR_JOB, api.get(self.study, job).number)
            parent = next((t for t in trials if t.number == attrs.get(ATTR_PARENT)), None)
            value = rung_value(parent) if parent is not None else None
            done = api.finish(queue, ticket_id, optuna.trial.TrialState.COMPLETE, [value or 0.0])
            if not done and api.get(queue, ticket_id).state != optuna.trial.TrialState.COMPLETE:
                # A reaper took us for dead and queued the ticket again: that copy will run.
                api.set_user_attr(self.study, job, ATTR_OUTCOME, "superseded")
                api.finish(self.study, job, optuna.trial.TrialState.FAIL)
                self.liveness.forget(job)
                return None
        return job

    # --- one job --------------------------------------------------------------------------------

    def _run_job(self, trial_id: int) -> str:
        import optuna

        storage = api.storage(self.study)
        with self.liveness.beating(storage, trial_id):
            trial = optuna.trial.Trial(self.study, trial_id)
            frozen = api.get(self.study, trial_id)
            attrs = dict(frozen.user_attrs)
            try:
                return self._execute(trial, frozen, attrs)
            except optuna.exceptions.UpdateFinishedTrialError:
                # Another worker found our heartbeat stale (an overloaded node) and re-queued the
                # trial: drop this run, the retry carries on.
                warn(f"trial {frozen.number} was failed as stale by another worker meanwhile: dropped here")
                return "failed"
            except _Interrupted:
                self._finish(trial, optuna.trial.TrialState.FAIL, None, "interrupted")
                # Re-queue now rather than after the grace period: a resumed study continues it.
                self.liveness.retry(self.study, api.get(self.study, trial_id))
                raise KeyboardInterrupt from None

    def _execute(self, trial: optuna.Trial, frozen: optuna.trial.FrozenTrial, attrs: dict[str, Any]) -> str:
        import optuna

        s = self.settings
        number = frozen.number
        kind = attrs.get(ATTR_KIND, "new")
        if kind == "new":
            # Each key on its own: a worker killed between two of these writes leaves a retry
            # that carries only some of them.
            defaults: dict[str, Any] = {ATTR_CONFIG: number}
            if s.promotion:
                defaults.update({ATTR_RUNG: 0, ATTR_START: 0, ATTR_BUDGET: self.budgets[0]})
            for key, value in defaults.items():
                if key not in attrs:
                    attrs[key] = value
                    trial.set_user_attr(key, value)
        params = self.space.suggest(trial)
        if kind == "new" and ATTR_RETRY_OF not in attrs:
            duplicate = self._duplicate_of(frozen, params)
            if duplicate is not None:
                return self._reject_duplicate(trial, attrs, duplicate)
        if s.promotion:
            rung = int(attrs[ATTR_RUNG])
            budget, start = int(attrs[ATTR_BUDGET]), int(attrs[ATTR_START])
            resume = attrs.get(ATTR_CHECKPOINT + ".parent")
            ranks = job_ranks(
                s.ranks_per_trial, rung, s.reduction_factor, s.scheduler == "rasda", s.max_ranks_per_trial
            )
            self._copy_parent_curve(trial, attrs)
        else:
            rung, budget, start, resume, ranks = None, s.max_resource, 0, None, s.ranks_per_trial
        if ATTR_RESUME in attrs:  # given back at a stop request: continue from its own checkpoint
            resume = attrs[ATTR_RESUME]
            step = attrs.get(ATTR_RESUME_STEP)
            log(f"trial {number} continues from its checkpoint at step {step} ({resume})")
        trial.set_user_attr(ATTR_RANKS, ranks)
        run_dir = self.workdir / f"trial-{number:05d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        reporter = Reporter(
            self.request.storage.url,
            self.request.study,
            api.trial_id(trial),
            s.scheduler,
            s.rung_tuple,
            s.on_divergence,
        ).bind(self.study)
        ctx = TrialContext(
            number=number,
            params=params,
            budget=budget,
            start_step=start,
            resume_from=Path(resume) if resume else None,
            checkpoint_dir=run_dir / "checkpoint",
            run_dir=run_dir,
            ranks=ranks,
            rung=rung,
            reporter=reporter,
            settings=s.to_dict(),
            trial=trial,
        )
        ctx.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        what = f"trial {number}" + (
            f" (config {attrs[ATTR_CONFIG]}, rung {rung}, steps {start}->{budget})"
            if rung is not None
            else ""
        )
        log(f"worker {self.request.worker_index}: {what} {params}")
        try:
            raw = self.objective(ctx)
        except optuna.TrialPruned:
            return self._finish(trial, optuna.trial.TrialState.PRUNED, None, "pruned")
        except TrialCheckpointed as exc:
            return self._give_back(trial, exc)
        except Diverged as exc:
            trial.set_user_attr("mlpfctl.error", exc.message)
            state = (
                optuna.trial.TrialState.PRUNED if s.on_divergence == "prune" else optuna.trial.TrialState.FAIL
            )
            warn(f"trial {number} diverged ({exc.message}): {state.name.lower()}; the study continues")
            return self._finish(trial, state, None, "diverged")
        except (KeyboardInterrupt, _Interrupted):
            raise _Interrupted("interrupted") from None
        except Exception as exc:
            message = exc.message if isinstance(exc, MlpfctlError) else f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("mlpfctl.error", message[:2000])
            warn(f"trial {number} failed: {message}")
            return self._finish(trial, optuna.trial.TrialState.FAIL, None, "failed")
        values = [float(v) for v in raw] if isinstance(raw, list | tuple) else [float(raw)]  # type: ignore[arg-type]
        if any(v != v or v in (float("inf"), float("-inf")) for v in values):
            trial.set_user_attr("mlpfctl.error", f"objective returned {values}")
            state = (
                optuna.trial.TrialState.PRUNED if s.on_divergence == "prune" else optuna.trial.TrialState.FAIL
            )
            return self._finish(trial, state, None, "diverged")
        if not s.promotion:
            return self._finish(trial, optuna.trial.TrialState.COMPLETE, values, "complete")
        checkpoint = str(ctx.checkpoint_dir)
        trial.set_user_attr(ATTR_CHECKPOINT, checkpoint)
        ident = api.trial_id(trial)
        if budget not in api.get(self.study, ident).intermediate_values:
            api.set_intermediate(self.study, ident, budget, values[0])
        assert rung is not None and self.queue is not None
        if rung >= len(self.budgets) - 1:
            return self._finish(trial, optuna.trial.TrialState.COMPLETE, values, "top")
        # Queue the ticket BEFORE telling: a crash in between re-runs this job (its retry queues a
        # fresh ticket, and this one is voided as its parent failed), never loses the ticket.
        parent = api.get(self.study, ident)
        self.queue.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.WAITING,
                params=parent.params,
                distributions=parent.distributions,
                user_attrs=ticket_attrs(parent, self.budgets, checkpoint),
            )
        )
        return self._finish(trial, optuna.trial.TrialState.PRUNED, None, "paused")

    def _finish(self, trial: optuna.Trial, state: Any, values: list[float] | None, outcome: str) -> str:
        import optuna

        try:
            trial.set_user_attr(ATTR_OUTCOME, outcome)
            self.study.tell(trial, values if state == optuna.trial.TrialState.COMPLETE else None, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker declared this trial stale (we missed heartbeats) and re-queued it.
            warn(f"trial {trial.number} was already failed as stale by another worker: result dropped")
            return "failed"
        return outcome

    def _give_back(self, trial: optuna.Trial, stop: TrialCheckpointed) -> str:
        """A trial that checkpointed at a stop request goes back to WAITING, not FAIL: it keeps its
        number, run directory and reported values, and is claimed first (as a retry of itself, which
        costs no retry) by the next worker, which continues from ``stop.step``."""

        trial.set_user_attr(ATTR_RESUME, str(stop.checkpoint_dir))
        trial.set_user_attr(ATTR_RESUME_STEP, stop.step)
        trial.set_user_attr(ATTR_RETRY_OF, trial.number)
        trial.set_user_attr(ATTR_OUTCOME, "checkpointed")
        api.give_back(self.study, api.trial_id(trial))
        log(
            f"worker {self.request.worker_index}: trial {trial.number} checkpointed at step {stop.step} "
            f"({stop.checkpoint_dir}): given back to the study"
        )
        return "checkpointed"

    def _copy_parent_curve(self, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
        parent_number = attrs.get(ATTR_PARENT)
        if parent_number is None:
            return
        parent = self.study.get_trials(deepcopy=False)[int(parent_number)]
        ident = api.trial_id(trial)
        existing = api.get(self.study, ident).intermediate_values
        for step, value in parent.intermediate_values.items():
            if step not in existing:
                api.set_intermediate(self.study, ident, step, value)

    def _duplicate_of(self, frozen: optuna.trial.FrozenTrial, params: dict[str, Any]) -> int | None:
        """Number of an earlier configuration with the same parameters (parallel proposals race)."""
        import optuna

        for other in self.study.get_trials(deepcopy=False):
            if other.number >= frozen.number or other.state in (
                optuna.trial.TrialState.FAIL,
                optuna.trial.TrialState.WAITING,
            ):
                continue
            if other.user_attrs.get(ATTR_KIND, "new") != "new":
                continue
            if same_config(other.params, params):
                return other.number
        return None

    def _reject_duplicate(self, trial: optuna.Trial, attrs: dict[str, Any], duplicate: int) -> str:
        import optuna

        attempts = int(attrs.get(ATTR_DEDUPE, 0)) + 1
        trial.set_user_attr(ATTR_DUPLICATE_OF, duplicate)
        self._finish(trial, optuna.trial.TrialState.FAIL, None, "duplicate")
        if attempts > MAX_DEDUPE_ATTEMPTS:
            warn(
                f"slot {attrs.get(ATTR_SLOT)}: {attempts} duplicate proposals in a row; "
                "the space looks exhausted"
            )
            return "duplicate"
        # Re-queue the slot: the next proposal sees this one as a FAIL and the original as a lie.
        self.study.enqueue_trial(
            {}, user_attrs={ATTR_KIND: "new", ATTR_SLOT: attrs.get(ATTR_SLOT, 0), ATTR_DEDUPE: attempts}
        )
        return "duplicate"


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def run_worker(request: WorkerRequest) -> WorkerResult:
    worker = Worker(request)
    log(
        f"worker {request.worker_index} (pid {os.getpid()}) joined study '{request.study}' on "
        f"{request.storage.masked}"
    )
    return worker.run()
