"""HPO machinery overhead: trials per second and per-trial storage latency vs concurrent workers.

    .venv/bin/python -m benchmarks.hpo_overhead [--workers 1,2,4,8,16,32] \
        [--storages sqlite,journal,postgresql]

A trivial objective (returns x**2 at once) through the real `mlpfctl hpo run` driver: W worker
processes pull trials from one study. Reported per (storage, W):
* trials/s: finished trials / (last finish - first start), i.e. steady state, worker start-up
  (Python + Optuna import, ~1 s each) excluded;
* trial latency: median and p90 of (finish - start) of single trials = the storage round trips of
  one trial (claim, parameter writes, attrs, tell) plus sampling (TPE) under contention.
PostgreSQL runs only as root (scripts/postgres-test-server.sh starts a private server). On this
2-core machine 32 workers are 16x oversubscribed: read the high-W rows as contention tests.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.record import median, quantile, write_result

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres-test-server.sh"


def measure(url: str, study: str, workers: int, trials: int, workdir: Path) -> dict[str, Any]:
    import optuna

    from mlpfctl.config import Override, resolve
    from mlpfctl.hpo.driver import RunRequest, run_driver
    from mlpfctl.hpo.settings import StudySettings
    from mlpfctl.hpo.storage import open_storage, parse_url

    values = {
        "storage": url, "study": study, "space": "quadratic", "sampler": "tpe", "scheduler": "none",
        "trials": trials, "workers": workers, "objective": "benchmarks.hpo_objectives:trivial",
        "workdir": str(workdir / study), "poll_interval": 0.05, "min_resource": 1, "max_resource": 1,
    }  # fmt: skip
    config = resolve(None, [Override(f"hpo.{k}", v, "bench") for k, v in values.items()], env={}).config
    env = {**os.environ, "MLPFCTL_HPO_NO_DEVICE_PROBE": "1"}
    request = RunRequest(parse_url(url), study, StudySettings.from_config(config, study), workers, env=env)
    start = time.perf_counter()
    run_driver(request)
    wall = time.perf_counter() - start
    storage = open_storage(parse_url(url), heartbeat_interval=60, grace_period=120, max_retry=0)
    done = [
        t for t in optuna.load_study(study_name=study, storage=storage).get_trials() if t.state.is_finished()
    ]
    first = min(t.datetime_start for t in done if t.datetime_start)
    last = max(t.datetime_complete for t in done if t.datetime_complete)
    latencies = [
        (t.datetime_complete - t.datetime_start).total_seconds() * 1000
        for t in done
        if t.datetime_start and t.datetime_complete
    ]
    span = max((last - first).total_seconds(), 1e-6)
    return {
        "workers": workers,
        "trials": len(done),
        "wall_s": wall,
        "trials_per_s": len(done) / span,
        "latency_ms_median": median(latencies),
        "latency_ms_p90": quantile(latencies, 0.9),
    }


def postgres_url(directory: Path) -> str | None:
    if os.geteuid() != 0:
        return None
    proc = subprocess.run(
        ["bash", str(SCRIPT), "start", str(directory)], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8,16,32")
    parser.add_argument("--storages", default="sqlite,journal,postgresql")
    parser.add_argument("--trials-per-worker", type=int, default=4)
    parser.add_argument("--min-trials", type=int, default=32)
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    counts = [int(w) for w in args.workers.split(",")]
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="hpo-overhead-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        pg_dir = root / "pg"
        try:
            for storage in args.storages.split(","):
                if storage == "sqlite":
                    url = f"sqlite:///{root / 'bench.db'}"
                elif storage == "journal":
                    url = f"journal://{root / 'bench.log'}"
                else:
                    maybe = postgres_url(pg_dir)
                    if maybe is None:
                        print("postgresql skipped (needs root and the postgresql package)")
                        continue
                    url = maybe
                rows = []
                for w in counts:
                    trials = max(args.min_trials, args.trials_per_worker * w)
                    rows.append(measure(url, f"{storage}-w{w}", w, trials, root))
                results[storage] = rows
        finally:
            if pg_dir.exists():
                subprocess.run(["bash", str(SCRIPT), "stop", str(pg_dir)], check=False)
    table = Table(title="HPO overhead: trivial objective, TPE, worker processes on one study")
    for column in (
        "storage",
        "workers",
        "trials",
        "trials/s",
        "trial latency median [ms]",
        "p90 [ms]",
        "wall [s]",
    ):
        table.add_column(column, justify="left" if column == "storage" else "right")
    for storage, rows in results.items():
        for r in rows:
            table.add_row(
                storage, str(r["workers"]), str(r["trials"]), f"{r['trials_per_s']:.1f}",
                f"{r['latency_ms_median']:.0f}", f"{r['latency_ms_p90']:.0f}", f"{r['wall_s']:.1f}",
            )  # fmt: skip
    Console(width=150).print(table)
    path = write_result(
        "hpo_overhead", results, {"workers": counts, "sampler": "tpe", "objective": "trivial"}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
