"""HPO quality: best-so-far loss versus consumed budget, and time-to-target, per method.

    .venv/bin/python -m benchmarks.hpo_quality [--seeds 5] [--budget 2970]

Methods (all through `mlpfctl hpo` workers on a journal-file study, one worker, so runs are
reproducible): random search; TPE + Optuna's median pruner; TPE + our promotion-type ASHA; TPE +
Optuna's Hyperband. Task: MFHartmann6 (mfhpo-benchmark-api, offline), fidelity z = budget in
"steps", rungs 11/33/99, eta = 3. Budget = fidelity units actually evaluated (a paused ASHA job
resumed from 33 to 99 is charged 66). The incumbent is the best loss seen at full fidelity (z = 99)
so far; time-to-target is the budget at which it first drops below the target (-2.5; the optimum is
about -3.3). The embedded MLPF task runs only when the training package is present (--mlpf).
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
    "random": {"sampler": "random", "scheduler": "none", "trials": 30},
    "tpe+median": {"sampler": "tpe", "scheduler": "median", "trials": 90},
    "tpe+asha": {"sampler": "tpe", "scheduler": "asha", "trials": 150},
    "tpe+hyperband": {"sampler": "tpe", "scheduler": "hyperband", "trials": 90},
}
TARGET = -2.5
R = 99


def run_study(method: str, seed: int, workdir: Path) -> list[tuple[int, float]]:
    """(budget consumed, incumbent) after every finished job, in completion order."""
    import optuna

    from mlpfctl.config import Override, resolve
    from mlpfctl.hpo.driver import RunRequest, prepare_study
    from mlpfctl.hpo.settings import StudySettings
    from mlpfctl.hpo.storage import parse_url
    from mlpfctl.hpo.worker import WorkerRequest, run_worker

    space = workdir / "space.toml"
    space.write_text(SPACE)
    url = f"journal://{workdir / f'{method}-{seed}.log'}"
    spec = METHODS[method]
    values = {
        "storage": url, "study": f"{method}-{seed}", "space": str(space), "sampler": spec["sampler"],
        "scheduler": spec["scheduler"], "trials": spec["trials"], "seed": seed, "min_resource": 11,
        "max_resource": R, "reduction_factor": 3, "objective": "benchmarks.hpo_objectives:mfhartmann6",
        "workdir": str(workdir / f"{method}-{seed}"), "poll_interval": 0.05,
    }  # fmt: skip
    config = resolve(None, [Override(f"hpo.{k}", v, "bench") for k, v in values.items()], env={}).config
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
        if R in trial.intermediate_values:
            best = min(best, trial.intermediate_values[R])
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--budget", type=int, default=30 * R, help="fidelity units per run (30 full evaluations)"
    )
    args = parser.parse_args(argv)
    import optuna
    from rich.console import Console
    from rich.table import Table

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    checkpoints = [args.budget // 4, args.budget // 2, args.budget]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hpo-quality-") as tmp:
        for method in METHODS:
            curves = [run_study(method, seed, Path(tmp)) for seed in range(args.seeds)]
            at = {str(b): [incumbent_at(c, b) for c in curves] for b in checkpoints}
            ttt = [time_to_target(c, TARGET) for c in curves]
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
    table = Table(title=f"HPO quality on MFHartmann6 ({args.seeds} seeds; medians; budget in fidelity units)")
    table.add_column("method")
    for b in checkpoints:
        table.add_column(f"best @ {b}", justify="right")
    table.add_column(f"budget to {TARGET}", justify="right")
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
    path = write_result(
        "hpo_quality",
        results,
        {"seeds": args.seeds, "budget": args.budget, "target": TARGET, "rungs": [11, 33, 99], "eta": 3,
         "methods": METHODS, "task": "MFHartmann6 (mfhpo-benchmark-api)", "workers": 1},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
