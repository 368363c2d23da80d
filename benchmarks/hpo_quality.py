"""HPO quality: best-so-far loss versus consumed budget, and time-to-target, per method.

    .venv/bin/python -m benchmarks.hpo_quality [--seeds 10] [--task mfhartmann6|mlpf]

Methods (all through `mlpfctl hpo` workers on a journal-file study, one worker, so runs are
reproducible): random search; TPE + Optuna's median pruner; TPE + our promotion-type ASHA; TPE +
Optuna's Hyperband. Task: MFHartmann6 (mfhpo-benchmark-api, offline), fidelity z = budget in
"steps", rungs 11/33/99, eta = 3. Budget = fidelity units actually evaluated (a paused ASHA job
resumed from 33 to 99 is charged 66). The incumbent is the best loss seen at full fidelity (z = 99)
so far; time-to-target is the budget at which it first drops below the target (-2.5; the optimum is
about -3.3).

``--task mlpf``: the same four methods tune the embedded MLPF task (generated ee->ttbar events, the
tiny model, the ``mlpf-small`` space, rungs 20/60/180 training steps, budget in training steps,
incumbent = validation loss after 180 steps). Its target is the median final incumbent of random
search, so time-to-target reads "how much sooner than random search does a method get as good".
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.record import median, quantile, write_result

SPACE = "\n".join(f'[params.x{i}]\ntype = "float"\nlow = 0.0\nhigh = 1.0\n' for i in range(6))
METHODS = {
    "random": {"sampler": "random", "scheduler": "none"},
    "tpe+median": {"sampler": "tpe", "scheduler": "median"},
    "tpe+asha": {"sampler": "tpe", "scheduler": "asha"},
    "tpe+hyperband": {"sampler": "tpe", "scheduler": "hyperband"},
}
TASKS: dict[str, dict[str, Any]] = {
    # trials per method: random search gets the budget of `budget` full runs, the others more
    # configurations because they stop or pause most of them early.
    "mfhartmann6": {
        "rungs": (11, 99, 3), "target": -2.5, "budget": 30 * 99,
        "trials": {"random": 30, "tpe+median": 90, "tpe+asha": 150, "tpe+hyperband": 90},
    },
    "mlpf": {
        "rungs": (20, 180, 3), "target": None, "budget": 4 * 180,
        "trials": {"random": 4, "tpe+median": 8, "tpe+asha": 12, "tpe+hyperband": 8},
    },
}  # fmt: skip


def run_study(method: str, seed: int, workdir: Path, task: str, data: Path | None) -> list[tuple[int, float]]:
    """(budget consumed, incumbent) after every finished job, in completion order."""
    import optuna

    from mlpfctl.config import Override, resolve
    from mlpfctl.hpo.driver import RunRequest, prepare_study
    from mlpfctl.hpo.settings import StudySettings
    from mlpfctl.hpo.storage import parse_url
    from mlpfctl.hpo.worker import WorkerRequest, run_worker

    space = workdir / "space.toml"
    space.write_text(SPACE)
    url = f"journal://{workdir / f'{task}-{method}-{seed}.log'}"
    spec = METHODS[method]
    r, big_r, eta = TASKS[task]["rungs"]
    values = {
        "storage": url, "study": f"{method}-{seed}", "space": str(space), "sampler": spec["sampler"],
        "scheduler": spec["scheduler"], "trials": TASKS[task]["trials"][method], "seed": seed,
        "min_resource": r, "max_resource": big_r, "reduction_factor": eta,
        "objective": "benchmarks.hpo_objectives:mfhartmann6",
        "workdir": str(workdir / f"{task}-{method}-{seed}"), "poll_interval": 0.05,
    }  # fmt: skip
    overrides = [Override(f"hpo.{k}", v, "bench") for k, v in values.items()]
    if task == "mlpf":
        overrides += [
            Override("hpo.space", "mlpf-small", "bench"), Override("hpo.objective", None, "bench"),
            Override("data.path", str(data), "bench"), Override("model.preset", "tiny", "bench"),
            Override("train.val_every", 20, "bench"), Override("train.progress", False, "bench"),
            Override("run.seed", seed, "bench"),
        ]  # fmt: skip
    config = resolve(None, overrides, env={}).config
    request = RunRequest(
        parse_url(url), config.hpo.study, StudySettings.from_config(config, config.hpo.study), 1
    )
    prepare_study(request)
    os.environ["HPO_BENCH_SEED"] = str(seed)
    run_worker(WorkerRequest(parse_url(url), config.hpo.study, 0))
    study = optuna.load_study(study_name=config.hpo.study, storage=_storage(url))
    trials = sorted(
        (t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.datetime_complete),
        key=lambda t: (t.datetime_complete, t.number),
    )
    consumed, best, curve = 0, math.inf, []
    for trial in trials:
        start = int(trial.user_attrs.get("mlpfctl.start", 0))
        end = trial.last_step or start
        consumed += max(0, end - start)
        if big_r in trial.intermediate_values:
            best = min(best, trial.intermediate_values[big_r])
        curve.append((consumed, best))
    return curve


def _storage(url: str) -> Any:
    from mlpfctl.hpo.storage import open_storage, parse_url

    return open_storage(parse_url(url), heartbeat_interval=60, grace_period=120, max_retry=0)


def incumbent_at(curve: list[tuple[int, float]], budget: int) -> float:
    best = math.inf
    for consumed, value in curve:
        if consumed > budget:
            break
        best = value
    return best


def time_to_target(curve: list[tuple[int, float]], target: float) -> float:
    for consumed, value in curve:
        if value <= target:
            return float(consumed)
    return math.inf


def _dataset(workdir: Path) -> Path:
    from mlpfctl.data.generate import generate_dataset

    out = workdir / "ee_ttbar"
    generate_dataset(out, process="ee_ttbar", events=1000, seed=1)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="mfhartmann6")
    parser.add_argument("--seeds", type=int, default=None, help="default: 10 (mfhartmann6), 2 (mlpf)")
    args = parser.parse_args(argv)
    import optuna
    from rich.console import Console
    from rich.table import Table

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    task = TASKS[args.task]
    seeds = args.seeds or (10 if args.task == "mfhartmann6" else 2)
    budget = int(task["budget"])
    checkpoints = [budget // 4, budget // 2, budget]
    results: dict[str, Any] = {}
    curves_by_method: dict[str, list[list[tuple[int, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="hpo-quality-") as tmp:
        data = _dataset(Path(tmp)) if args.task == "mlpf" else None
        for method in METHODS:
            curves_by_method[method] = [
                run_study(method, seed, Path(tmp), args.task, data) for seed in range(seeds)
            ]
    target = task["target"]
    if target is None:  # as good as random search ends up (median over seeds)
        target = median([c[-1][1] for c in curves_by_method["random"]])
    for method, curves in curves_by_method.items():
        at = {str(b): [incumbent_at(c, b) for c in curves] for b in checkpoints}
        ttt = [time_to_target(c, target) for c in curves]
        reached = [t for t in ttt if math.isfinite(t)]
        results[method] = {
            "incumbent_median": {b: median(v) for b, v in at.items()},
            "incumbent_q25_q75": {b: [quantile(v, 0.25), quantile(v, 0.75)] for b, v in at.items()},
            "time_to_target_median": median(ttt) if len(reached) * 2 > len(ttt) else None,
            "reached_target": f"{len(reached)}/{len(ttt)}",
            "budget_used_median": median([c[-1][0] for c in curves]),
            "curves": curves,
        }
    base = results["random"]["time_to_target_median"]
    unit = "fidelity units" if args.task == "mfhartmann6" else "training steps"
    table = Table(title=f"HPO quality on {args.task} ({seeds} seeds; medians; budget in {unit})")
    table.add_column("method")
    for b in checkpoints:
        table.add_column(f"best @ {b}", justify="right")
    table.add_column(f"budget to {target:.3g}", justify="right")
    table.add_column("reached", justify="right")
    table.add_column("speed-up vs random", justify="right")
    for method, r in results.items():
        t = r["time_to_target_median"]
        if t and base:
            speed = f"{base / t:.2f}x"
        elif t:  # random search did not reach the target within its whole run: a lower bound
            speed = f"> {results['random']['budget_used_median'] / t:.2f}x"
        else:
            speed = "-"
        table.add_row(
            method, *(f"{r['incumbent_median'][str(b)]:.3f}" for b in checkpoints),
            f"{t:.0f}" if t else "not reached (median)", r["reached_target"], speed,
        )  # fmt: skip
    Console(width=150).print(table)
    name = "hpo_quality" if args.task == "mfhartmann6" else "hpo_quality_mlpf"
    path = write_result(
        name,
        results,
        {"seeds": seeds, "budget": budget, "target": target, "rungs": task["rungs"], "trials": task["trials"],
         "methods": METHODS, "task": args.task, "workers": 1},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
