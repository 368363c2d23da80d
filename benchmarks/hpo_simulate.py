"""The HPO campaign simulator against measured campaigns, and its speed.

    .venv/bin/python -m benchmarks.hpo_simulate [--bench DIR] [--repeats 50]

Speed: simulated trials per second for large campaigns (ASHA, 1000 configurations, 1-256 workers)
on synthetic recorded curves and job times.

Validation (``--bench DIR``, the output of ``mlpfctl scale-bench hpo --workers 1,2 ...``, which
holds each point's record and its study ``hpo-wW.db``, or ``hpo-wW.db.gz``, as in
``benchmarks/results/hpo-simulate-validation``): every measured campaign is predicted from
every other one (worker count W_s -> W_t) with ``mlpfctl hpo simulate``'s machinery:

* **cross**: curves and job costs of W_s's study, job times scattered as recorded there, the
  campaign start-up measured there (record wall-clock minus the span of its jobs);
* **load-matched**: curves of W_s's study, but the job costs and the machine load over time of
  W_t's own run (``--timing load``): on a shared machine the load differs between two runs, and
  this separates the scheduling prediction from the load that nobody can predict.

Reported: predicted vs measured campaign wall-clock and best full-budget loss, relative errors.
When DIR has ``load.log`` (lines "ISO-time 1-min 5-min 15-min ..." from /proc/loadavg), the mean
1-minute load average over each campaign is reported too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.record import RESULTS, write_result


def speed(repeats: int = 3) -> list[dict[str, Any]]:
    from mlpfctl.hpo.schedulers import Rungs
    from mlpfctl.hpo.sim_curves import CurvePool
    from mlpfctl.hpo.sim_source import RecordedConfig
    from mlpfctl.hpo.simulate import Campaign, Costs, simulate

    rng = random.Random(0)
    ladder = Rungs(20, 540, 3).budgets
    recorded = []
    for i in range(200):
        value = rng.uniform(3.0, 4.0)
        curve = {}
        for step in ladder:
            value -= rng.uniform(0.0, 0.2)
            curve[step] = value
        recorded.append(RecordedConfig(f"synthetic#{i}", curve, None, (i + 0.5) / 200))
    pool = CurvePool(recorded, ladder)
    costs = Costs(step_s=0.5, startup_s=20.0, resume_s=5.0, dispatch_s=0.1, jitter=(0.8, 1.0, 1.3))
    rows = []
    for scheduler in ("asha", "sha", "none"):
        # Untimed: the first stopping-type replay imports Optuna's pruners.
        simulate(Campaign(scheduler, 20, 1, Rungs(20, 540, 3)), pool.draw(20, random.Random(0)), costs)
        for workers in (1, 16, 256):
            trials = 1000
            started = time.perf_counter()
            for repeat in range(repeats):
                configs = pool.draw(trials, random.Random(repeat))
                simulate(Campaign(scheduler, trials, workers, Rungs(20, 540, 3)), configs, costs, repeat)
            elapsed = time.perf_counter() - started
            rows.append(
                {
                    "scheduler": scheduler,
                    "workers": workers,
                    "trials": trials,
                    "replays": repeats,
                    "seconds_per_replay": elapsed / repeats,
                    "trials_per_s": trials * repeats / elapsed,
                }
            )
    return rows


def _load_means(directory: Path, windows: dict[int, tuple[dt.datetime, dt.datetime]]) -> dict[int, float]:
    path = directory / "load.log"
    if not path.is_file():
        return {}
    samples = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            when = dt.datetime.fromisoformat(parts[0]).replace(tzinfo=None)
            samples.append((when, float(parts[1])))
    out = {}
    for workers, (start, end) in windows.items():
        inside = [load for when, load in samples if start <= when <= end]
        if inside:
            out[workers] = statistics.fmean(inside)
    return out


def _study_file(directory: Path, workers: int, unpacked: Path) -> Path:
    """The point's study: ``hpo-wW.db``, or the gzipped copy kept in benchmarks/results."""
    plain = directory / f"hpo-w{workers}.db"
    if plain.is_file():
        return plain
    target = unpacked / plain.name
    with gzip.open(directory / f"{plain.name}.gz", "rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def validate(directory: Path, repeats: int) -> dict[str, Any]:
    from dataclasses import replace

    import optuna

    from mlpfctl.hpo import sim_plan
    from mlpfctl.hpo.sim_costs import fit_costs
    from mlpfctl.hpo.sim_source import load_recorded

    measured: dict[int, dict[str, Any]] = {}
    windows = {}
    unpacked = Path(tempfile.mkdtemp(prefix="hpo-simulate-"))
    for path in sorted(directory.glob("hpo-workers*.json")):
        record = json.loads(path.read_text())
        workers = int(record["point"]["workers"])
        url = f"sqlite:///{_study_file(directory, workers, unpacked).resolve()}"
        study = f"scale-w{workers}"
        recorded = load_recorded(url, study)
        trials = optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)
        first = min(t.datetime_start for t in trials if t.datetime_start)
        last = max(t.datetime_complete for t in trials if t.datetime_complete)
        windows[workers] = (first, last)
        metrics = record["metrics"]
        measured[workers] = {
            "source": sim_plan.Source(url, study),
            "wall_s": metrics["wall_s"],
            "span_s": recorded.span_s,
            "launch_s": metrics["wall_s"] - recorded.span_s,
            "best": metrics["best_value"],
            "trials": metrics["trials"],
            "fit": fit_costs(recorded.jobs, recorded.settings.ranks_per_trial),
            "date": record["date"],
        }
    loads = _load_means(directory, windows)
    rows = []
    for source, src in measured.items():
        for target, tgt in measured.items():
            request = sim_plan.SimRequest(
                sources=(src["source"],), workers=(target,), trials=tgt["trials"], repeats=repeats
            )
            prepared = sim_plan.prepare(request)
            cross = sim_plan.with_overrides(prepared, launch_s=src["launch_s"])
            fit = tgt["fit"]
            matched = replace(
                prepared,
                request=replace(request, timing="load"),
                costs=replace(
                    prepared.costs,
                    step_s=fit.step_s,
                    startup_s=fit.startup_s,
                    resume_s=fit.resume_s,
                    dispatch_s=fit.dispatch_s,
                    launch_s=tgt["launch_s"],
                    jitter=(),
                    load=fit.load,
                    residuals=fit.residuals,
                ),
            )
            for kind, plan in (("cross", cross), ("load-matched", matched)):
                result = sim_plan.run(plan)
                row = next(r for r in result.rows if r["workers"] == target)
                rows.append(
                    {
                        "from_workers": source,
                        "to_workers": target,
                        "prediction": kind,
                        "measured_wall_s": tgt["wall_s"],
                        "predicted_wall_s": row["wall_s"],
                        "predicted_wall_s_std": row["wall_s_std"],
                        "wall_error": row["wall_s"] / tgt["wall_s"] - 1,
                        "measured_best": tgt["best"],
                        "predicted_best": row["best"],
                        "predicted_best_std": row["best_std"],
                        "best_error": row["best"] / tgt["best"] - 1 if row["best"] else None,
                    }
                )
    return {
        "directory": str(directory),
        "measured": {
            str(w): {k: v for k, v in m.items() if k not in ("source", "fit")}
            | {"fit": m["fit"].as_dict(), "mean_load_1min": loads.get(w)}
            for w, m in measured.items()
        },
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bench",
        type=Path,
        default=RESULTS / "hpo-simulate-validation",
        help="scale-bench hpo output directory (records + studies); default: the measured one kept in "
        "benchmarks/results",
    )
    parser.add_argument("--repeats", type=int, default=50, help="replays per prediction")
    opts = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    console = Console()
    fast = speed()
    table = Table(title="hpo simulate: speed (1000 configurations, rungs 20..540, eta 3)")
    for column in ("scheduler", "workers", "s per replay", "simulated trials/s"):
        table.add_column(column, justify="right")
    for row in fast:
        table.add_row(
            row["scheduler"],
            str(row["workers"]),
            f"{row['seconds_per_replay']:.3f}",
            f"{row['trials_per_s']:,.0f}",
        )
    console.print(table)
    results: dict[str, Any] = {"speed": fast}
    if opts.bench.is_dir():
        checked = validate(opts.bench, opts.repeats)
        results["validation"] = checked
        table = Table(title=f"hpo simulate vs measured campaigns ({opts.bench}, {opts.repeats} replays)")
        for column in (
            "from W",
            "to W",
            "prediction",
            "wall measured",
            "wall predicted",
            "error",
            "best measured",
            "best predicted",
            "error",
        ):
            table.add_column(column, justify="right")
        for row in checked["rows"]:
            table.add_row(
                str(row["from_workers"]),
                str(row["to_workers"]),
                row["prediction"],
                f"{row['measured_wall_s']:.0f} s",
                f"{row['predicted_wall_s']:.0f} ± {row['predicted_wall_s_std']:.0f} s",
                f"{row['wall_error']:+.1%}",
                f"{row['measured_best']:.4f}",
                f"{row['predicted_best']:.4f} ± {row['predicted_best_std']:.4f}",
                f"{row['best_error']:+.1%}" if row["best_error"] is not None else "–",
            )
        console.print(table)
        for workers, info in checked["measured"].items():
            load = info.get("mean_load_1min")
            console.print(
                f"W={workers}: measured {info['wall_s']:.0f} s (jobs span {info['span_s']:.0f} s, start-up "
                f"{info['launch_s']:.1f} s), fitted {info['fit']['step_s']:.3f} s/step, load factor range "
                f"{info['fit']['load_range']}" + (f", mean 1-min load average {load:.1f}" if load else "")
            )
    path = write_result("hpo_simulate", results, {"repeats": opts.repeats, "bench": str(opts.bench)})
    console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
