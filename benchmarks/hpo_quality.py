"""HPO quality: every method on the same budget, best-so-far loss and budget to a target, paired seeds.

    .venv/bin/python -m benchmarks.hpo_quality [--seeds 10] [--workers 1,4] [--budget 30]
    .venv/bin/python -m benchmarks.hpo_quality --task mlpf [--seeds 2] [--workers 1]

``mfhartmann6`` (default): MFHartmann6 of mfhpo-benchmark-api (offline, with its observation
noise). Study step s is fidelity z = 10 + s, so a full training (FT) is R = 90 steps (z = 100).
Every method gets the same budget (``--budget`` FT, counting only the steps actually evaluated: a
resumed ASHA piece is charged for its new steps, a pruned trial for the steps before it stopped).
The incumbent is the best full-fidelity loss seen so far (optimum about -3.32). Budget to a target
is the budget at which the incumbent first reaches it; "not reached" if that does not happen
within the budget. Paired wins compare mlpfctl's ASHA with each other method seed by seed.

Rungs: every method uses eta = 3 and the bottom rung r that mlpfctl derives by default
(``hpo.min_resource`` unset, ``train.val_every`` = 1 here: r = 1). Optuna's pruners take r and eta
and build their own ladder r*eta^k (1, 3, 9, 27, 81, then R); mlpfctl's ladder is printed with the
table. Methods, all with the project's TPE settings where they use TPE: random search; TPE +
Optuna's MedianPruner; TPE + Optuna's SuccessiveHalvingPruner; TPE + Optuna's HyperbandPruner;
TPE + mlpfctl's promotion ASHA. All run through the real ``mlpfctl hpo worker`` loop.

Workers: W asynchronous workers are simulated (``benchmarks/hpo_sim.py``): W threads run the real
worker loop on one shared in-memory Optuna study on a virtual clock where one step takes one time
unit. Every decision at time t sees the study that real workers would see at t: the other
workers' trials RUNNING with their parameters (the constant liar reads them) and the intermediate
values reported so far (the pruners read them). Budget is the busy time of all workers together
(W x time while all are busy); sampling and storage overhead take no simulated time.

``--task mlpf``: the embedded MLPF task with real training: generated ee->ttbar events (600), the
tiny model, the ``mlpf-small`` space, 16 events per step, validation every 5 steps on 64 events,
R = 60 steps, the same simulated workers (the training is real; its steps are charged to the
virtual clock at each validation). The target is random search's final best in the same seed; the
goal is to reach it with <= 25% of the budget.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.record import median, write_result

SPACE = "\n".join(f'[params.x{i}]\ntype = "float"\nlow = 0.0\nhigh = 1.0\n' for i in range(6))
METHODS: dict[str, dict[str, str]] = {
    "random": {"sampler": "random", "scheduler": "none"},
    "tpe+median": {"sampler": "tpe", "scheduler": "median"},
    "tpe+optuna-sha": {"sampler": "tpe", "scheduler": "sha"},
    "tpe+optuna-hyperband": {"sampler": "tpe", "scheduler": "hyperband"},
    "tpe+asha": {"sampler": "tpe", "scheduler": "asha"},
    # mlpfctl's ASHA with TPE reading the raw study (one trial per job, running promotions as
    # constant-liar lies): how it sampled before mlpfctl.hpo.rung_sampler; not run by default.
    "tpe+asha-raw": {"sampler": "tpe", "scheduler": "asha"},
}
DEFAULT_METHODS = ("random", "tpe+median", "tpe+optuna-sha", "tpe+optuna-hyperband", "tpe+asha")
OURS = "tpe+asha"
ETA = 3


@dataclass(frozen=True)
class Task:
    full: int  # R in steps
    objective: str
    budget_ft: float
    seeds: int
    targets: tuple[float, ...]  # absolute targets; empty: random search's final best per seed
    settings: dict[str, Any] = field(default_factory=dict)


TASKS = {
    "mfhartmann6": Task(
        full=90, objective="benchmarks.hpo_objectives:mfhartmann6_sim", budget_ft=30.0, seeds=10,
        targets=(-2.5, -3.0), settings={"train.steps": 90, "train.val_every": 1},
    ),
    "mlpf": Task(
        full=60, objective="benchmarks.hpo_objectives:mlpf_sim", budget_ft=6.0, seeds=2, targets=(),
        settings={
            "hpo.space": "mlpf-small", "model.preset": "tiny", "train.steps": 60, "train.val_every": 5,
            "train.batch_events": 16, "train.val_max_events": 64,
            "train.progress": False,
        },
    ),
}  # fmt: skip


@dataclass
class Run:
    method: str
    seed: int
    workers: int
    seen: list[tuple[float, float]]  # (budget used, full-fidelity loss), in time order
    budget: float
    jobs: int
    seconds: float

    def incumbent_at(self, budget: float) -> float:
        best = math.inf
        for used, value in self.seen:
            if used > budget:
                break
            best = min(best, value)
        return best

    def budget_to(self, target: float) -> float:
        best = math.inf
        for used, value in self.seen:
            best = min(best, value)
            if best <= target and used <= self.budget:
                return used
        return math.inf


def _config(task: Task, method: str, seed: int, workdir: Path, trials: int, extra: dict[str, Any]) -> Any:
    from mlpfctl.config import Override, resolve

    space = workdir / "space.toml"
    space.write_text(SPACE)
    spec = METHODS[method]
    values: dict[str, Any] = {
        "hpo.study": f"{method}-{seed}", "hpo.space": str(space), "hpo.sampler": spec["sampler"],
        "hpo.scheduler": spec["scheduler"], "hpo.trials": trials, "hpo.seed": seed,
        "hpo.reduction_factor": ETA, "hpo.objective": task.objective,
        "hpo.workdir": str(workdir / f"{method}-{seed}"), "hpo.heartbeat_interval": 3600.0,
        "hpo.grace_period": 7200.0, "run.seed": seed, "run.out_dir": str(workdir / "runs"),
        **task.settings, **extra,
    }  # fmt: skip
    return resolve(None, [Override(k, v, "bench") for k, v in values.items()], env={}).config


def simulate(task: Task, method: str, seed: int, workers: int, workdir: Path, extra: dict[str, Any]) -> Run:
    """One study of ``method`` with ``workers`` simulated workers until the budget is used."""
    import optuna

    from benchmarks import hpo_objectives
    from benchmarks.hpo_sim import VirtualClock
    from mlpfctl.hpo.driver import RunRequest, prepare_study
    from mlpfctl.hpo.settings import StudySettings
    from mlpfctl.hpo.storage import StorageSpec
    from mlpfctl.hpo.worker import Worker, WorkerRequest

    budget = task.budget_ft * task.full
    probe = StudySettings.from_config(_config(task, method, seed, workdir, 1, extra), "probe")
    bottom = probe.rungs.budgets[0]
    # Enough configurations never to run dry: each costs at least the bottom rung (R without pruning).
    cheapest = task.full if METHODS[method]["scheduler"] == "none" else bottom
    config = _config(task, method, seed, workdir, math.ceil(budget / cheapest) + workers, extra)
    settings = StudySettings.from_config(config, config.hpo.study)
    storage = optuna.storages.InMemoryStorage()
    spec = StorageSpec("memory:", "memory")
    prepare_study(RunRequest(spec, config.hpo.study, settings, workers), storage=storage)
    clock = VirtualClock(budget)
    # Where a stopping-type pruner may act: Optuna's rungs r*eta^k, mlpfctl's rungs, and R.
    report = {bottom * ETA**k for k in range(12) if bottom * ETA**k < task.full}
    report |= set(settings.rungs.budgets)
    hpo_objectives.SIM = hpo_objectives.Simulation(clock, seed, task.full, tuple(sorted(report)))
    raw = method.endswith("-raw")
    with _raw_study_sampling(raw):
        made = [
            Worker(WorkerRequest(spec, config.hpo.study, index), storage=storage, clock=clock)
            for index in range(workers)
        ]
    started = time.perf_counter()
    errors = clock.run([worker.run for worker in made])
    seconds = time.perf_counter() - started
    for error in errors:
        if error is not None:
            raise error
    sim = hpo_objectives.SIM
    hpo_objectives.SIM = None
    finished = [t for t in storage.get_all_trials(0) if t.state.is_finished()]
    failed = [t for t in finished if t.state == optuna.trial.TrialState.FAIL]
    if finished and len(failed) == len(finished):  # a broken set-up, not a bad method
        reason = failed[0].user_attrs.get("mlpfctl.error")
        raise RuntimeError(f"{method}, seed {seed}: all {len(failed)} jobs failed ({reason or 'see log'})")
    jobs = len(finished)
    return Run(method, seed, workers, list(sim.seen), budget, jobs, seconds)


@contextlib.contextmanager
def _raw_study_sampling(raw: bool) -> Iterator[None]:
    """Workers built inside sample from the raw study (no one-trial-per-configuration view)."""
    from mlpfctl.hpo import worker

    saved = worker.RUNG_VIEW_SAMPLERS
    if raw:
        worker.RUNG_VIEW_SAMPLERS = ()
    try:
        yield
    finally:
        worker.RUNG_VIEW_SAMPLERS = saved


def _dataset(workdir: Path) -> Path:
    from mlpfctl.data.generate import generate_dataset

    out = workdir / "ee_ttbar"
    generate_dataset(out, process="ee_ttbar", events=600, seed=1)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="mfhartmann6")
    parser.add_argument("--seeds", type=int, default=None, help="default: 10 (mfhartmann6), 2 (mlpf)")
    parser.add_argument("--workers", default=None, help="worker counts, e.g. 1,4,8 (default 1,4; mlpf 1)")
    parser.add_argument("--budget", type=float, default=None, help="budget in full trainings (FT)")
    parser.add_argument(
        "--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated, from {', '.join(METHODS)}"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config value")
    parser.add_argument("--out", default=None, help="result name under benchmarks/results")
    parser.add_argument(
        "--first-seed", type=int, default=0,
        help="seeds FIRST..FIRST+SEEDS-1 (tune on other seeds than the ones you report)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not TASKS[args.task].targets and "random" not in args.methods.split(","):
        parser.error(f"--task {args.task} needs random in --methods (the target is its final best)")
    import json

    import optuna

    from mlpfctl import console

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    console.err.quiet = True  # one log line per job of every simulated worker otherwise
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    base = TASKS[args.task]
    task = Task(
        base.full, base.objective, args.budget or base.budget_ft, args.seeds or base.seeds, base.targets,
        base.settings,
    )  # fmt: skip
    extra: dict[str, Any] = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        try:
            extra[key] = json.loads(raw)
        except json.JSONDecodeError:
            extra[key] = raw
    workers = [int(w) for w in (args.workers or ("1" if args.task == "mlpf" else "1,4")).split(",")]
    started = time.time()
    load_before = os.getloadavg()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="hpo-quality-") as tmp:
        if args.task == "mlpf":
            extra.setdefault("data.path", str(_dataset(Path(tmp))))
        for count in workers:
            for seed in range(args.first_seed, args.first_seed + task.seeds):
                for method in args.methods.split(","):
                    run = simulate(task, method, seed, count, Path(tmp), extra)
                    runs.append(run)
                    final = run.incumbent_at(run.budget)
                    reach = "".join(
                        f", to {t:g}: {run.budget_to(t) / task.full:.2f} FT" for t in task.targets
                    )
                    print(
                        f"{method:22s} W={count} seed={seed}: final {final:.4f}{reach}, {run.jobs} jobs, "
                        f"{run.seconds:.1f} s",
                        flush=True,
                    )
    _report(task, args, runs, extra, started, load_before)


def _targets(task: Task, runs: list[Run]) -> dict[tuple[int, int], tuple[float, ...]]:
    """Targets per (workers, seed): the task's, or random search's final best in that seed."""
    out: dict[tuple[int, int], tuple[float, ...]] = {}
    for run in runs:
        if task.targets:
            out[(run.workers, run.seed)] = task.targets
        elif run.method == "random":
            out[(run.workers, run.seed)] = (run.incumbent_at(run.budget),)
    return out


def _report(
    task: Task, args: argparse.Namespace, runs: list[Run], extra: dict[str, Any], started: float, load: Any
) -> None:
    from rich.console import Console
    from rich.table import Table

    from mlpfctl.config import Config
    from mlpfctl.hpo.schedulers import Rungs, derive_min_resource

    budget = task.budget_ft * task.full
    targets = _targets(task, runs)
    names = [str(t) for t in task.targets] or ["random's final"]
    # Incumbents at 5, 10 and 20 FT (the targets are about 10-12 FT) and at the end.
    marks = [ft for ft in (5.0, 10.0, 20.0) if ft < task.budget_ft] if task.targets else []
    checkpoints = [ft * task.full for ft in marks or (task.budget_ft / 4, task.budget_ft / 2)] + [budget]
    groups: dict[tuple[str, int], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.method, run.workers), []).append(run)
    bottom = extra.get("hpo.min_resource") or derive_min_resource(
        task.full, ETA, int(task.settings.get("train.val_every", 1))
    )
    defaults = Config().hpo
    spacing = extra.get("hpo.rung_spacing", defaults.rung_spacing)
    rule = extra.get("hpo.promotion_rule", defaults.promotion_rule)
    ladder = Rungs(bottom, task.full, ETA, spacing=spacing).budgets
    table = Table(
        title=f"HPO quality on {args.task}: budget {task.budget_ft:g} FT (FT = {task.full} steps), "
        f"{task.seeds} seeds, medians; mlpfctl rungs {ladder} ({rule} promotions), Optuna's from "
        f"r = {bottom}, eta = {ETA}"
    )
    table.add_column("method")
    table.add_column("W", justify="right")
    for b in checkpoints:
        table.add_column(f"best @ {b / task.full:g} FT", justify="right")
    for name in names:
        table.add_column(f"FT to {name} (reached)", justify="right")
    table.add_column(f"{OURS} wins/ties/losses", justify="right")
    results: dict[str, Any] = {}
    for (method, workers), group in groups.items():
        group.sort(key=lambda r: r.seed)
        ours = {r.seed: r for r in groups.get((OURS, workers), [])}
        score = [0, 0, 0]
        cells = [f"{median([r.incumbent_at(b) for r in group]):.3f}" for b in checkpoints]
        to: dict[str, Any] = {}
        for index, name in enumerate(names):
            values = [r.budget_to(targets[(workers, r.seed)][index]) / task.full for r in group]
            reached = sum(math.isfinite(v) for v in values)
            mid = median(values)
            to[name] = {
                "median_ft": mid if math.isfinite(mid) else None,
                "reached": reached,
                "per_seed_ft": [v if math.isfinite(v) else None for v in values],
            }
            cells.append(
                f"{mid:.2f} ({reached})" if math.isfinite(mid) else f"> {task.budget_ft:g} ({reached})"
            )
        last = len(names) - 1
        for run in group:
            mine = ours.get(run.seed)
            if mine is None or method == OURS:
                continue
            target = targets[(workers, run.seed)][last]
            a, b = mine.budget_to(target), run.budget_to(target)
            if a == b:  # both never: the final incumbent decides
                a, b = mine.incumbent_at(budget), run.incumbent_at(budget)
            score[0 if a < b else 1 if a == b else 2] += 1
        cells.append("-" if method == OURS else "/".join(map(str, score)))
        table.add_row(method, str(workers), *cells)
        results[f"{method}|{workers}"] = {
            "method": method, "workers": workers,
            "incumbent_median": {f"{b / task.full:g}": median([r.incumbent_at(b) for r in group])
                                 for b in checkpoints},
            "budget_to_target_ft": to, f"paired_{OURS}_wins_ties_losses": score,
            "final_per_seed": [r.incumbent_at(budget) for r in group],
            "jobs_median": median([r.jobs for r in group]), "seconds_total": sum(r.seconds for r in group),
        }  # fmt: skip
    Console(width=220).print(table)
    print(
        f"paired: {OURS} against each method, seed by seed, on the budget to the last target "
        "(both never: final incumbent)"
    )
    path = write_result(
        args.out or ("hpo_quality" if args.task == "mfhartmann6" else "hpo_quality_mlpf"),
        results,
        {"task": args.task, "seeds": task.seeds, "first_seed": args.first_seed,
         "budget_ft": task.budget_ft, "full_steps": task.full,
         "eta": ETA, "rungs_mlpfctl": ladder, "promotion_rule": rule, "optuna_min_resource": bottom,
         "methods": METHODS,
         "workers": sorted({r.workers for r in runs}), "extra": extra, "task_settings": task.settings,
         "targets": {f"{w}|{s}": t for (w, s), t in targets.items()},
         "wall_seconds": time.time() - started, "load_average_start": load,
         "load_average_end": os.getloadavg()},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
