"""Loader throughput and padding: bucketed batches vs plain pad-to-the-largest batches, side by side.

The same events are loaded with ``BucketBatchSampler(max_elements)`` and with
``FixedBatchSampler(batch_size)``, where ``batch_size`` is the mean number of events per bucketed
batch (so both make about as many batches). For each we report events/s, real elements/s and
the padding fraction (padded slots / all slots), with 0 and ``--workers`` DataLoader workers;
medians over ``--epochs`` epochs.

    .venv/bin/python -m benchmarks.loader [--data DIR] [--events 2000] [--max-elements 8192]

``--scale``: streaming against everything in memory on 10^5 events (``benchmarks.loader_scale``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.record import median, write_result


def _epoch(loader: Any) -> tuple[float, int, int, int]:
    start = time.perf_counter()
    events = real = slots = 0
    for batch in loader:
        events += batch.num_events
        real += batch.num_elements
        slots += batch.padded_elements
    return time.perf_counter() - start, events, real, slots


def _side_by_side(ds: Any, samplers: dict[str, Any], workers: int, epochs: int) -> list[dict[str, Any]]:
    """Alternate the samplers epoch by epoch so that load changes on the machine hit both alike."""
    from mlpfctl.data.collate import make_loader

    loaders = {name: make_loader(ds, s, num_workers=workers) for name, s in samplers.items()}
    samples: dict[str, list[tuple[float, int, int, int]]] = {name: [] for name in samplers}
    for epoch in range(epochs + 1):  # epoch 0 warms caches and starts the workers
        for name, loader in loaders.items():
            samplers[name].set_epoch(epoch)
            result = _epoch(loader)
            if epoch:
                samples[name].append(result)
    return [
        {
            "sampler": name,
            "workers": workers,
            "batches": len(samplers[name]),
            "events_per_s": median([e / dt for dt, e, _, _ in runs]),
            "elements_per_s": median([r / dt for dt, _, r, _ in runs]),
            "padding_fraction": median([1 - r / s for _, _, r, s in runs]),
        }
        for name, runs in samples.items()
    ]


def main(argv: list[str] | None = None) -> None:
    args_in = sys.argv[1:] if argv is None else argv
    if "--scale" in args_in:
        from benchmarks.loader_scale import main as scale_main

        scale_main(args_in)
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="dataset to load (default: generate ee_ttbar events)")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--max-elements", type=int, default=8192)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    from rich.table import Table

    from mlpfctl.console import out
    from mlpfctl.data.batching import BucketBatchSampler, FixedBatchSampler
    from mlpfctl.data.dataset import open_dataset

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from mlpfctl.data.generate import generate_dataset

            data = Path(tmp) / "ee_ttbar"
            generate_dataset(data, process="ee_ttbar", events=args.events, seed=5)
        ds = open_dataset(data)
        bucket = BucketBatchSampler(ds.lengths, args.max_elements, seed=0)
        batch_size = max(1, round(len(ds) / len(bucket)))
        fixed = FixedBatchSampler(ds.lengths, batch_size, seed=0)
        results = []
        for workers in sorted({0, args.workers}):
            samplers = {"bucketed": bucket, "fixed (pad to largest)": fixed}
            results += _side_by_side(ds, samplers, workers, args.epochs)
    table = Table(
        title=f"loader: {len(ds)} events, max_elements {args.max_elements}, fixed batch {batch_size}"
    )
    for col in ("sampler", "workers", "batches", "events/s", "elements/s", "padding"):
        table.add_column(col, justify="left" if col == "sampler" else "right")
    for r in results:
        table.add_row(
            r["sampler"], str(r["workers"]), f"{r['batches']:.0f}", f"{r['events_per_s']:.0f}",
            f"{r['elements_per_s']:.0f}", f"{r['padding_fraction']:.1%}",
        )  # fmt: skip
    out.print(table)
    path = write_result(
        "loader",
        results,
        {
            "events": len(ds),
            "max_elements": args.max_elements,
            "fixed_batch_size": batch_size,
            "epochs": args.epochs,
        },
    )
    out.print(f"wrote {path}")


if __name__ == "__main__":
    main()
