"""Data generation speed: events/s per core (Pythia8 + detector + targets + jets + write), bytes/event.

Each process is timed in this process on one core (a warm-up shard first, so imports and the
first Pythia initialisation are not counted), ``--repeats`` times; we quote medians. Then the
whole ``generate_dataset`` for ``--events`` ee->tt events on all cores, wall-clock.

    .venv/bin/python -m benchmarks.data_generation [--events 2000] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.record import median, write_result

PROCESSES = {"ee_ttbar": 1000, "ee_qq": 1000, "pp_ttbar": 50}


def _one_core(process: str, events: int, repeats: int, tmp: Path) -> dict[str, Any]:
    from mlpfctl.data.generate import plan_shards, simulate_shard

    specs = plan_shards(process, events * (repeats + 1), 11, events, 0.0)
    metas = [simulate_shard(spec, str(tmp)) for spec in specs]  # the first is the warm-up
    timed = metas[1:]
    per_stage = {
        k: median([m["seconds"][k] / m["generated_events"] * 1e3 for m in timed]) for k in timed[0]["seconds"]
    }
    total_ms = median([sum(m["seconds"].values()) / m["generated_events"] * 1e3 for m in timed])
    return {
        "process": process,
        "events_per_shard": events,
        "events_per_s_per_core": 1e3 / total_ms,
        "ms_per_event": total_ms,
        "ms_per_event_by_stage": per_stage,
        "elements_per_event": median([m["elements"] / m["events"] for m in timed]),
        "bytes_per_event": median([m["bytes"] / m["events"] for m in timed]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000, help="events for the all-cores run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = parser.parse_args(argv)
    from rich.table import Table

    from mlpfctl.console import out
    from mlpfctl.data.generate import generate_dataset

    scale = 0.2 if args.quick else 1.0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for process, n in PROCESSES.items():
            rows.append(_one_core(process, max(10, int(n * scale)), args.repeats, Path(tmp) / process))
        events = max(100, int(args.events * scale))
        start = time.perf_counter()
        manifest = generate_dataset(Path(tmp) / "all", process="ee_ttbar", events=events, seed=3)
        wall = time.perf_counter() - start
    cores = os.cpu_count() or 1
    parallel: dict[str, Any] = {
        "process": "ee_ttbar",
        "events": events,
        "workers": int(manifest.totals["workers"]),
        "wall_seconds": wall,
        "events_per_s": events / wall,
        "events_per_s_per_core": events / wall / cores,
        "bytes_per_event": float(manifest.totals["bytes_per_event"]),
    }
    table = Table(title="data generation, one core (medians; stage columns in ms/event)")
    for col in (
        "process",
        "events/s/core",
        "ms/event",
        "gen ms",
        "detector ms",
        "jets ms",
        "write ms",
        "elements/ev",
        "kB/event",
    ):
        table.add_column(col, justify="left" if col == "process" else "right")
    for r in rows:
        s = r["ms_per_event_by_stage"]
        cells = [f"{r['events_per_s_per_core']:.0f}", f"{r['ms_per_event']:.2f}"]
        cells += [f"{s[k]:.2f}" for k in ("generation", "detector", "jets", "write")]
        cells += [f"{r['elements_per_event']:.0f}", f"{r['bytes_per_event'] / 1e3:.1f}"]
        table.add_row(r["process"], *cells)
    out.print(table)
    out.print(
        f"all cores: {events} ee_ttbar events in {wall:.1f} s with {parallel['workers']} workers = "
        f"{parallel['events_per_s']:.0f} events/s ({parallel['events_per_s_per_core']:.0f}/s per core), "
        f"{parallel['bytes_per_event'] / 1e3:.1f} kB/event (wall clock incl. start-up)"
    )
    path = write_result(
        "data_generation",
        {"one_core": rows, "all_cores": parallel},
        {"repeats": args.repeats, "quick": args.quick, "events": events},
    )
    out.print(f"wrote {path}")


if __name__ == "__main__":
    main()
