"""Discrete-event simulation of one HPO campaign: W workers, a scheduler, recorded curves and costs.

No training happens: each configuration is a learning curve known in advance (values at the
scheduler's decision steps, drawn from recorded studies by ``mlpfctl.hpo.sim_curves``), and each
job costs a start-up, a checkpoint load when it resumes, its training steps and a checkpoint when
it pauses (``Costs``, fitted by ``mlpfctl.hpo.sim_costs``). The engine replays what the workers of
``mlpfctl hpo run`` would do, event by event:

* a free worker *claims* work at once; an idle one (nothing was claimable) looks again on its own
  poll tick (``hpo.poll_interval``) after something finished, like ``Worker._loop``;
* ``asha`` / ``rasda``: the claim order of ``mlpfctl.hpo.asha.claim_order``: promotions from the
  highest rung down, each rung by ``asha.rung_promotions`` (the real rule, imported), then new
  configurations by slot; a promoted job resumes its parent's checkpoint (``reuse``), or retrains
  from step 0 in the counterfactual that measures what trial reuse saves;
* ``rasda``: a rung-k job wants ``asha.job_ranks`` ranks; it gets as many of them as free worker
  slots can give when it starts (resources freed by stopped trials go to promising ones);
* ``sha`` / ``hyperband`` / ``none``: stopping type, a trial runs from step 0 and is checked at its
  rung steps by the decision of Optuna's own pruners (imported from optuna, configured by
  ``mlpfctl.hpo.schedulers.make_pruner``, Hyperband brackets by Optuna's trial-number hash).

Trial numbers follow the real study: new configurations are slots 0..N-1, promotion candidates get
the next numbers when their parent pauses; rung ranks break ties by trial number.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlpfctl.errors import UsageError
from mlpfctl.hpo.asha import job_ranks, rung_promotions
from mlpfctl.hpo.schedulers import PROMOTION, Rungs

SCHEDULERS = ("none", "sha", "hyperband", "asha", "rasda")


def check_scheduler(name: str) -> str:
    if name not in SCHEDULERS:
        raise UsageError(
            f"unknown scheduler '{name}' for the simulation", f"available schedulers: {', '.join(SCHEDULERS)}"
        )
    return name


@dataclass(frozen=True)
class SimConfig:
    """One configuration: its loss at every decision step, and the step where it diverges (if so)."""

    values: Mapping[int, float]
    diverges_at: int | None = None

    def at(self, step: int) -> float | None:
        if self.diverges_at is not None and step >= self.diverges_at:
            return None
        return self.values[step]

    def stop(self, start: int, end: int) -> int:
        """The step a job training ``start -> end`` stops at: ``end``, or where it diverges."""
        if self.diverges_at is not None and start < self.diverges_at <= end:
            return self.diverges_at
        return end


@dataclass(frozen=True)
class Costs:
    """Seconds that a job costs, times a factor per job (``ratio``): one draw from ``jitter`` (the
    recorded jobs' measured / fitted times), or with ``load``, the recorded machine load at the job's
    start times one draw from ``residuals`` (the scatter left once the load is divided out)."""

    step_s: float  # one training step at ranks_per_trial ranks (validation amortised)
    startup_s: float = 0.0  # every job: process, data, model, the final checkpoint write
    resume_s: float = 0.0  # extra for a job that loads its parent's checkpoint
    checkpoint_s: float = 0.0  # extra for a job that pauses at a rung (beyond the one in startup_s)
    dispatch_s: float = 0.0  # between two jobs of a worker: claim, sampling, storage round trips
    launch_s: float = 0.0  # once per campaign: driver, study creation, worker start-up
    efficiency: Mapping[int, float] = field(default_factory=dict)  # ranks -> weak-scaling efficiency
    default_efficiency: float = 1.0  # for rank counts without a measured efficiency
    jitter: tuple[float, ...] = ()  # multiplicative job-time noise (measured ratios); () = none
    load: tuple[tuple[float, float], ...] = ()  # (seconds since the first job, slow-down factor)
    residuals: tuple[float, ...] = ()

    def ratio(self, now: float, rng: random.Random) -> float:
        if self.load:
            at = bisect.bisect_right(self.load, (now, math.inf)) - 1
            factor = self.load[max(0, at)][1]
            return factor * (rng.choice(self.residuals) if self.residuals else 1.0)
        return rng.choice(self.jitter) if self.jitter else 1.0

    def step_time(self, ranks: int, base_ranks: int) -> float:
        """The per-rank batch is fixed, so more ranks take as long per step as their efficiency allows."""
        if ranks <= base_ranks:
            return self.step_s
        return self.step_s / self.efficiency.get(ranks, self.default_efficiency)


@dataclass(frozen=True)
class Campaign:
    scheduler: str
    trials: int
    workers: int
    rungs: Rungs
    ranks_per_trial: int = 1
    max_ranks_per_trial: int = 1
    reuse: bool = True  # promotions resume from the parent's checkpoint (False: retrain from 0)
    poll_s: float = 0.5
    promotion_rule: str = "quota"  # asha.rung_promotions: the recorded study's hpo.promotion_rule
    study_name: str = "sim"  # Hyperband hashes it with the trial number into brackets

    def __post_init__(self) -> None:
        check_scheduler(self.scheduler)
        if self.trials < 1 or self.workers < 1:
            raise UsageError(
                f"a campaign needs trials >= 1 and workers >= 1 (got {self.trials}, {self.workers})",
                "example: --trials 64 --workers 1,4,16",
            )

    @property
    def promotion(self) -> bool:
        return self.scheduler in PROMOTION


@dataclass
class SimJob:
    number: int
    config: int
    rung: int | None  # ASHA rung; None for stopping-type trials
    start_step: int  # the step it trains from (0 unless it resumes)
    budget: int  # the step it trains to if nothing stops it
    ranks: int
    slots: tuple[int, ...]
    claimed_s: float
    started_s: float
    ratio: float  # its jitter draw
    ended_s: float = math.nan
    last_step: int = 0
    value: float | None = None
    outcome: str = "running"  # paused | top | complete | pruned | diverged

    @property
    def resumed(self) -> bool:
        return self.start_step > 0

    @property
    def steps(self) -> int:
        return self.last_step - self.start_step


@dataclass
class Replay:
    """What one simulated campaign did."""

    campaign: Campaign
    jobs: list[SimJob]
    makespan_s: float  # first claim to last job end
    launch_s: float
    reused_steps: int  # steps promoted jobs did not retrain thanks to their parent's checkpoint
    reused_s: float  # the training time those steps would have cost

    @property
    def wall_s(self) -> float:
        return self.launch_s + self.makespan_s

    @property
    def busy_s(self) -> float:
        """Worker-seconds inside jobs (what ``scale-bench hpo`` counts as busy)."""
        return sum((j.ended_s - j.started_s) * len(j.slots) for j in self.jobs)

    @property
    def device_s(self) -> float:
        return sum((j.ended_s - j.started_s) * j.ranks for j in self.jobs)

    @property
    def utilisation(self) -> float:
        return self.busy_s / (self.campaign.workers * self.wall_s) if self.wall_s > 0 else 0.0

    @property
    def gpu_hours(self) -> float:
        """The allocation: every worker's devices for the whole campaign."""
        return self.campaign.workers * self.campaign.ranks_per_trial * self.wall_s / 3600

    @property
    def busy_gpu_hours(self) -> float:
        return self.device_s / 3600

    @property
    def steps(self) -> int:
        return sum(j.steps for j in self.jobs)

    @property
    def full_budget(self) -> list[tuple[float, float]]:
        """(seconds since launch, value) of every configuration that finished the top budget."""
        out = [
            (self.launch_s + j.ended_s, j.value)
            for j in self.jobs
            if j.outcome in ("top", "complete") and j.value is not None
        ]
        return sorted(out)

    @property
    def best(self) -> float | None:
        return min((v for _, v in self.full_budget), default=None)

    @property
    def first_top_s(self) -> float | None:
        results = self.full_budget
        return results[0][0] if results else None

    def time_to(self, target: float) -> float | None:
        best = math.inf
        for seconds, value in self.full_budget:
            best = min(best, value)
            if best <= target:
                return seconds
        return None

    def count(self, outcome: str) -> int:
        return sum(1 for j in self.jobs if j.outcome == outcome)


class _Stopper:
    """The decision of Optuna's SuccessiveHalving/Hyperband pruners without a study.

    The pruner objects are the real ones (``make_pruner``); the only storage-bound parts, the
    per-rung value lists and the current trial's rung, live here. Each check records the value in
    its rung and asks Optuna's own promotability rule, exactly like ``SuccessiveHalvingPruner.prune``.
    """

    def __init__(self, campaign: Campaign) -> None:
        from optuna.pruners import _successive_halving as sh
        from optuna.study import StudyDirection

        from mlpfctl.hpo.schedulers import make_pruner

        self._promotable = sh._is_trial_promotable_to_next_rung
        self._minimize = StudyDirection.MINIMIZE
        self.study_name = campaign.study_name
        self.max_step = campaign.rungs.max_resource
        self.values: dict[tuple[int, int], list[float]] = {}
        if campaign.scheduler == "none":
            self.brackets: list[Any] = []
            self.hyperband: Any = None
            return
        pruner: Any = make_pruner(campaign.scheduler, campaign.rungs)
        if campaign.scheduler == "hyperband":
            pruner._try_initialization(None)  # max_resource is an int: touches no study
            self.hyperband = pruner
            self.brackets = list(pruner._pruners)
        else:
            self.hyperband = None
            self.brackets = [pruner]

    def bracket(self, number: int) -> int:
        if self.hyperband is None:
            return 0
        from types import SimpleNamespace

        return int(
            self.hyperband._get_bracket_id(
                SimpleNamespace(study_name=self.study_name), SimpleNamespace(number=number)
            )
        )

    def checks(self, bracket: int) -> list[int]:
        """Steps at which the pruner decides (first report at or past each rung; reports fall on rungs)."""
        if not self.brackets:
            return []
        pruner = self.brackets[bracket]
        out: list[int] = []
        rung = 0
        while True:
            step = pruner._min_resource * pruner._reduction_factor ** (pruner._min_early_stopping_rate + rung)
            if step > self.max_step:
                return out
            out.append(step)
            rung += 1

    def keep(self, bracket: int, rung: int, value: float) -> bool:
        pruner = self.brackets[bracket]
        competing = self.values.setdefault((bracket, rung), [])
        bisect.insort(competing, value)  # kept sorted: Optuna's rule sorts it in place, in O(n) then
        if len(competing) <= pruner._bootstrap_count:
            return False
        return bool(self._promotable(value, competing, pruner._reduction_factor, self._minimize))


_END, _CHECK, _WAKE = 0, 1, 2


class _Engine:
    def __init__(
        self,
        campaign: Campaign,
        configs: Sequence[SimConfig],
        costs: Costs,
        rng: random.Random,
        trace: list[tuple[Any, ...]] | None = None,
    ) -> None:
        if len(configs) < campaign.trials:
            raise ValueError(f"{len(configs)} configurations for {campaign.trials} trials")
        self.c = campaign
        self.configs = configs
        self.costs = costs
        self.rng = rng
        self.budgets = campaign.rungs.budgets
        self.top = len(self.budgets) - 1
        self.events: list[tuple[float, int, int, Any]] = []
        self.seq = itertools.count()
        self.now = 0.0
        self.idle: dict[int, float] = {}  # slot -> idle since
        self.jobs: list[SimJob] = []
        self.next_slot = 0  # next new configuration
        self.next_number = campaign.trials  # promotion candidates are numbered after the slots
        # ASHA: per rung the finished jobs' (value, number) ranked, their numbers in that order, and
        # the paused jobs whose candidate is still WAITING (number -> (config, candidate number)).
        self.ranked: list[list[tuple[float, int]]] = [[] for _ in self.budgets]
        self.ranked_numbers: list[list[int]] = [[] for _ in self.budgets]
        self.open: list[dict[int, tuple[int, int]]] = [{} for _ in self.budgets]
        self.stopper = None if campaign.promotion else _Stopper(campaign)
        self.plans: dict[int, tuple[int, list[int]]] = {}
        self.reused_steps = 0
        self.reused_s = 0.0
        self.trace = trace

    # --- the event loop -----------------------------------------------------------------------

    def run(self) -> Replay:
        for slot in range(self.c.workers):
            self.idle[slot] = 0.0
        for slot in range(self.c.workers):
            if slot in self.idle:
                self._decide(slot)
        while self.events:
            time, _, kind, payload = heapq.heappop(self.events)
            self.now = time
            if kind == _END:
                self._end(payload)
            elif kind == _CHECK:
                self._check(payload)
            elif payload in self.idle:
                self._decide(payload)
        makespan = max((j.ended_s for j in self.jobs), default=0.0)
        return Replay(self.c, self.jobs, makespan, self.costs.launch_s, self.reused_steps, self.reused_s)

    def _push(self, time: float, kind: int, payload: Any) -> None:
        heapq.heappush(self.events, (time, next(self.seq), kind, payload))

    def _decide(self, slot: int) -> bool:
        """The free worker ``slot`` claims the next job, or stays idle; True if it claimed."""
        claim = self._claim_asha() if self.c.promotion else self._claim_new()
        if claim is None:
            return False
        number, config, rung, start, budget = claim
        slots = [slot]
        del self.idle[slot]
        base = ranks = self.c.ranks_per_trial
        if self.c.scheduler == "rasda" and rung:
            wanted = job_ranks(base, rung, self._eta, True, self.c.max_ranks_per_trial)
            # Other idle workers' devices join the job (just freed ones first), as many as it wants.
            for other in sorted(self.idle, key=lambda s: (-self.idle[s], s)):
                if len(slots) * base >= wanted:
                    break
                slots.append(other)
                del self.idle[other]
            ranks = min(wanted, len(slots) * base)
        started = self.now + self.costs.dispatch_s
        ratio = self.costs.ratio(started, self.rng)
        job = SimJob(number, config, rung, start, budget, ranks, tuple(slots), self.now, started, ratio)
        self.jobs.append(job)
        if self.trace is not None:
            self.trace.append(("claim", self.now, number, config, rung))
        if self.c.promotion:
            self._schedule_asha(job)
        else:
            self._schedule_stopping(job, 0)
        return True

    def _free(self, job: SimJob) -> None:
        """Job over: its workers claim at once; idle ones look again on their next poll tick."""
        for slot in job.slots:
            self.idle[slot] = self.now
        for slot in job.slots:
            if slot in self.idle and not self._decide(slot):
                return  # nothing claimable now: the idle workers would find nothing either
        if not self._claimable():
            return
        poll = self.c.poll_s
        for slot, since in self.idle.items():
            if since < self.now:
                tick = since + (math.floor((self.now - since) / poll) + 1) * poll
                self._push(tick, _WAKE, slot)

    def _claimable(self) -> bool:
        if self.next_slot < self.c.trials:
            return True
        return self.c.promotion and any(
            rung_promotions(self.ranked_numbers[rung], self._eta, self.open[rung], rule=self.c.promotion_rule)
            for rung in range(self.top)
        )

    @property
    def _eta(self) -> int:
        return self.c.rungs.reduction_factor

    # --- promotion type (asha, rasda) -------------------------------------------------------------

    def _claim_asha(self) -> tuple[int, int, int, int, int] | None:
        for rung in range(self.top - 1, -1, -1):
            promotable = rung_promotions(
                self.ranked_numbers[rung], self._eta, self.open[rung], rule=self.c.promotion_rule
            )
            if promotable:
                parent = promotable[0]
                config, number = self.open[rung].pop(parent)
                start = self.budgets[rung] if self.c.reuse else 0
                return number, config, rung + 1, start, self.budgets[rung + 1]
        if self.next_slot < self.c.trials:
            slot = self.next_slot
            self.next_slot += 1
            return slot, slot, 0, 0, self.budgets[0]
        return None

    def _schedule_asha(self, job: SimJob) -> None:
        assert job.rung is not None
        config = self.configs[job.config]
        end_step = config.stop(job.start_step, job.budget)
        value = config.at(end_step)
        outcome = "top" if job.rung == self.top else "paused"
        if value is None:
            outcome = "diverged"
        cost = self.costs
        busy = cost.startup_s + (cost.resume_s if job.resumed else 0.0)
        busy += (end_step - job.start_step) * cost.step_time(job.ranks, self.c.ranks_per_trial)
        if outcome == "paused":
            busy += cost.checkpoint_s
        job.last_step, job.value, job.outcome = end_step, value, outcome
        if job.rung > 0 and self.c.reuse:
            self.reused_steps += job.start_step
            self.reused_s += job.start_step * cost.step_time(job.ranks, self.c.ranks_per_trial) * job.ratio
        self._push(job.started_s + busy * job.ratio, _END, job)

    def _end(self, job: SimJob) -> None:
        job.ended_s = self.now
        if self.trace is not None:
            self.trace.append(("end", self.now, job.number, job.config, job.rung, job.value, job.outcome))
        if self.c.promotion and job.outcome in ("paused", "top") and job.value is not None:
            assert job.rung is not None
            key = (job.value, job.number)
            at = bisect.bisect(self.ranked[job.rung], key)
            self.ranked[job.rung].insert(at, key)
            self.ranked_numbers[job.rung].insert(at, job.number)
            if job.outcome == "paused":
                # The worker queues the WAITING candidate before it tells the job finished.
                self.open[job.rung][job.number] = (job.config, self.next_number)
                self.next_number += 1
        self._free(job)

    # --- stopping type (none, sha, hyperband) -----------------------------------------------------

    def _claim_new(self) -> tuple[int, int, int | None, int, int] | None:
        if self.next_slot >= self.c.trials:
            return None
        slot = self.next_slot
        self.next_slot += 1
        return slot, slot, None, 0, self.c.rungs.max_resource

    def _stop_plan(self, job: SimJob) -> tuple[int, list[int]]:
        """(bracket, check steps) of a stopping-type trial."""
        plan = self.plans.get(job.number)
        if plan is None:
            assert self.stopper is not None
            bracket = self.stopper.bracket(job.number)
            plan = self.plans[job.number] = (bracket, self.stopper.checks(bracket))
        return plan

    def _at_step(self, job: SimJob, step: int) -> float:
        busy = self.costs.startup_s + step * self.costs.step_time(job.ranks, self.c.ranks_per_trial)
        return job.started_s + busy * job.ratio

    def _schedule_stopping(self, job: SimJob, index: int) -> None:
        _, checks = self._stop_plan(job)
        config = self.configs[job.config]
        done = checks[index - 1] if index else 0
        until = checks[index] if index < len(checks) else job.budget
        stop = config.stop(done, until)
        if stop < until or index >= len(checks):
            value = config.at(stop)
            job.last_step, job.value = stop, value
            job.outcome = "complete" if value is not None else "diverged"
            self._push(self._at_step(job, stop), _END, job)
            return
        self._push(self._at_step(job, until), _CHECK, (job, index))

    def _check(self, payload: tuple[SimJob, int]) -> None:
        job, index = payload
        assert self.stopper is not None
        bracket, checks = self._stop_plan(job)
        step = checks[index]
        value = self.configs[job.config].at(step)
        assert value is not None  # a diverging trial ends before its check
        job.last_step, job.value = step, value
        kept = self.stopper.keep(bracket, index, value)
        if self.trace is not None:
            self.trace.append(("check", self.now, job.number, step, value, kept))
        if not kept:
            job.outcome = "pruned"
        elif step >= job.budget:
            job.outcome = "complete"
        else:
            self._schedule_stopping(job, index + 1)
            return
        self._end(job)


def simulate(
    campaign: Campaign,
    configs: Sequence[SimConfig],
    costs: Costs,
    seed: int | str | random.Random = 0,
    trace: list[tuple[Any, ...]] | None = None,
) -> Replay:
    """Replay ``campaign`` once; ``configs[i]`` is the curve of the configuration in slot i.

    ``trace`` (tests) receives every claim, rung check and job end in the order they happened.
    """
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    return _Engine(campaign, configs, costs, rng, trace).run()


def decision_steps(rungs: Rungs, schedulers: Sequence[str]) -> list[int]:
    """Every step at which some scheduler of ``schedulers`` reads a configuration's loss."""
    steps = {rungs.max_resource}
    if any(s in PROMOTION for s in schedulers):
        steps.update(rungs.budgets)
    for name in schedulers:
        if name in ("sha", "hyperband"):
            first = 0 if name == "hyperband" else rungs.min_early_stopping_rate
            step = rungs.min_resource * rungs.reduction_factor**first
            while step <= rungs.max_resource:
                steps.add(step)
                step *= rungs.reduction_factor
    return sorted(steps)
