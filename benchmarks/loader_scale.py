"""Data at scale: streaming with a small window against everything in memory, and opening a
directory of 1000 files without a manifest; extrapolated to 10^7 events.

Every measurement runs in a fresh child process (its own peak RSS), memory and stream
alternately, ``--repeats`` times; the table shows medians.

- loader: events/s over ``--batches`` bucketed batches of the training split (in memory: after
  one pass that decodes every shard), padding fraction, peak RSS, and the bytes per event that the
  open dataset and the epoch's plan cost (what grows with the dataset).
- training: ``mlpfctl train`` (``--preset``, ``--steps``) events/s, the median of the logged
  windows after the first ``--skip-windows`` (in memory: after the shards are decoded), and the
  peak RSS of the rank.
- opening 1000 files without a manifest: the first open (reads the X columns, writes the index),
  a later open (reads the index), and what opening cost before (every file decoded).

The dataset is generated once (``--events``, into ``--data``, default under /tmp) and reused.

    nice .venv/bin/python -m benchmarks.loader --scale [--data DIR] [--window-mb 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.record import median, write_result

DEFAULT_DATA = Path(tempfile.gettempdir()) / "mlpfctl-bench" / "ee_ttbar_100k"
MEMORY_MB = 1 << 20  # "everything in memory": a budget no dataset here reaches
TARGET_EVENTS = 10**7


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))


# -- children (one measurement each, JSON on stdout) -------------------------------------------


def child_loader(data: Path, cache_mb: int, loader: str, workers: int, batches: int) -> dict[str, Any]:
    import pyarrow.parquet  # noqa: F401  (libraries in the baseline: only the data counts)
    import torch  # noqa: F401

    from mlpfctl.data.batching import sampler_for
    from mlpfctl.data.collate import make_loader
    from mlpfctl.data.dataset import open_dataset, split_dataset

    before = _status("VmRSS:")
    start = time.perf_counter()
    ds = open_dataset(data, cache_bytes=cache_mb << 20)
    train, _valid, _test = split_dataset(ds, 0.1, 0.1, 0)
    open_s = time.perf_counter() - start
    start = time.perf_counter()
    sampler = sampler_for(train, max_elements=8192, batch_events=None, loader=loader, workers=workers)
    plan = sampler.plan()
    plan_s = time.perf_counter() - start
    metadata = _status("VmRSS:") - before
    first_pass_s = None
    if loader == "random":  # in memory: one pass decodes every shard, then measure
        start = time.perf_counter()
        for _ in make_loader(train, plan, num_workers=workers):
            pass
        first_pass_s = time.perf_counter() - start
        sampler.set_epoch(1)
        plan = sampler.plan()
    events = real = slots = 0
    start = time.perf_counter()
    for batch in make_loader(train, plan[:batches], num_workers=workers):
        events += batch.num_events
        real += batch.num_elements
        slots += batch.padded_elements
    elapsed = time.perf_counter() - start
    return {
        "events_per_s": events / elapsed,
        "padding_fraction": 1 - real / slots,
        "events": events,
        "train_events": len(train),
        "decoded_bytes": train.decoded_bytes(),
        "open_s": open_s,
        "plan_s": plan_s,
        "first_pass_s": first_pass_s,
        "metadata_bytes_per_event": metadata / max(len(ds), 1),
        "peak_rss_bytes": _status("VmHWM:"),
        "baseline_rss_bytes": before,
        "windows": getattr(sampler, "window_count", lambda: None)(),
    }


def child_train(
    data: Path, cache_mb: int, loader: str, workers: int, steps: int, preset: str, skip: int
) -> dict[str, Any]:
    from mlpfctl.config.loader import parse_set, resolve
    from mlpfctl.train.api import TrainRequest, train
    from mlpfctl.train.runlog import read_metrics

    sets = [
        f"data.path={data}",
        f"data.cache_mb={cache_mb}",
        f"data.loader={loader}",
        f"data.num_workers={workers}",
        f"model.preset={preset}",
        f"train.steps={steps}",
        "train.log_every=10",
        f"train.val_every={steps}",
        "train.val_max_events=2000",
        "train.progress=false",
    ]
    cfg = resolve(None, parse_set(sets), env={}).config
    with tempfile.TemporaryDirectory() as tmp:
        result = train(TrainRequest(cfg, Path(tmp) / "run", quiet=True))
        windows = [r for r in read_metrics(result.run_dir) if r["kind"] == "train" and "events_per_s" in r]
    rates = [float(r["events_per_s"]) for r in windows[skip:]]
    return {"events_per_s": median(rates), "windows": len(rates), "peak_rss_bytes": _status("VmHWM:")}


def child_open(directory: Path, decode_all: bool) -> dict[str, Any]:
    from mlpfctl.data.dataset import open_dataset
    from mlpfctl.data.index import index_paths
    from mlpfctl.data.readers.key4hep import read_key4hep

    for path in index_paths(directory):
        path.unlink(missing_ok=True)
    out: dict[str, Any] = {}
    start = time.perf_counter()
    ds = open_dataset(directory)
    out["first_open_s"] = time.perf_counter() - start
    out["first_open_peak_rss_bytes"] = _status("VmHWM:")
    start = time.perf_counter()
    again = open_dataset(directory)
    out["indexed_open_s"] = time.perf_counter() - start
    assert len(again) == len(ds)
    out["files"] = len(ds.sources)
    out["events"] = len(ds)
    if decode_all:  # what every open cost before the index: a full decode of every file
        start = time.perf_counter()
        for src in ds.sources:
            read_key4hep(src.path)
        out["decode_every_file_s"] = time.perf_counter() - start
    return out


def _child(argv: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.loader_scale", "--child", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- data preparation ------------------------------------------------------------------------------


def ensure_dataset(data: Path, events: int) -> None:
    if (data / "manifest.json").is_file():
        return
    from mlpfctl.data.generate import generate_dataset

    print(f"generating {events} events into {data} (once; reused afterwards)", file=sys.stderr)
    generate_dataset(data, process="ee_ttbar", events=events, seed=7, progress=True)


def ensure_many_files(data: Path, directory: Path, files: int) -> None:
    """The dataset re-cut into ``files`` Parquet files without a manifest (the CLIC/CMS layout)."""
    if directory.is_dir() and len(list(directory.glob("*.parquet"))) == files:
        return
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    shards = sorted(data.glob("*.parquet"))
    per_shard = files // len(shards)
    k = 0
    for shard in shards:
        table = pq.read_table(shard)
        columns = {name: table.column(name).combine_chunks().flatten() for name in table.column_names}
        n = len(columns["genmet"])
        for part in np.array_split(np.arange(n), per_shard):
            a, length = int(part[0]), len(part)
            one_row = {
                name: pa.ListArray.from_arrays(pa.array([0, length], pa.int32()), col.slice(a, length))
                for name, col in columns.items()
            }
            pq.write_table(pa.table(one_row), directory / f"reco_ee_tt_{k:05d}.parquet", compression="zstd")
            k += 1


# -- the report -------------------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", action="store_true", help="(implied)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--window-mb", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--skip-windows", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--no-decode-baseline", action="store_true", help="skip timing the full decode")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, rest = args.child[0], args.child[1:]
        if kind == "loader":
            result = child_loader(Path(rest[0]), int(rest[1]), rest[2], int(rest[3]), int(rest[4]))
        elif kind == "train":
            result = child_train(
                Path(rest[0]), int(rest[1]), rest[2], int(rest[3]), int(rest[4]), rest[5], int(rest[6])
            )
        else:
            result = child_open(Path(rest[0]), rest[1] == "1")
        print(json.dumps(result))
        return

    from rich.table import Table

    from mlpfctl.console import out

    ensure_dataset(args.data, args.events)
    many = args.data.parent / f"{args.data.name}_{args.files}files"
    ensure_many_files(args.data, many, args.files)
    load = [os.getloadavg()[0]]
    modes = {"in memory": (MEMORY_MB, "random"), f"stream, {args.window_mb} MB": (args.window_mb, "stream")}
    loader_runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    train_runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for r in range(args.repeats):
        for name, (mb, loader) in modes.items():  # alternate: load changes hit both alike
            print(f"[{r + 1}/{args.repeats}] loader, {name}", file=sys.stderr)
            loader_runs[name].append(
                _child(["loader", str(args.data), str(mb), loader, str(args.workers), str(args.batches)])
            )
            load.append(os.getloadavg()[0])
        for name, (mb, loader) in modes.items():
            print(f"[{r + 1}/{args.repeats}] training, {name}", file=sys.stderr)
            train_runs[name].append(
                _child(
                    [
                        *("train", str(args.data), str(mb), loader, str(args.workers), str(args.steps)),
                        *(args.preset, str(args.skip_windows)),
                    ]
                )
            )
            load.append(os.getloadavg()[0])
    print(f"opening {args.files} files without a manifest", file=sys.stderr)
    opened = _child(["open", str(many), "0" if args.no_decode_baseline else "1"])
    load.append(os.getloadavg()[0])

    def med(runs: list[dict[str, Any]], key: str) -> float:
        return median([float(x[key]) for x in runs])

    rows = []
    memory_name, stream_name = list(modes)
    for name in modes:
        lr, tr = loader_runs[name], train_runs[name]
        rows.append(
            {
                "mode": name,
                "loader_events_per_s": med(lr, "events_per_s"),
                "padding_fraction": med(lr, "padding_fraction"),
                "loader_peak_rss_bytes": med(lr, "peak_rss_bytes"),
                "baseline_rss_bytes": med(lr, "baseline_rss_bytes"),
                "train_events_per_s": med(tr, "events_per_s"),
                "train_peak_rss_bytes": med(tr, "peak_rss_bytes"),
                "open_s": med(lr, "open_s"),
                "plan_s": med(lr, "plan_s"),
                "metadata_bytes_per_event": med(lr, "metadata_bytes_per_event"),
                "first_pass_s": lr[0]["first_pass_s"],
                "windows": lr[0]["windows"],
                "train_events": lr[0]["train_events"],
                "decoded_bytes": lr[0]["decoded_bytes"],
            }
        )
    mem, stream = rows
    ratios = {
        "loader": stream["loader_events_per_s"] / mem["loader_events_per_s"],
        "training": stream["train_events_per_s"] / mem["train_events_per_s"],
    }
    n = args.events
    scale = TARGET_EVENTS / n
    train_share = stream["train_events"] / n
    extrapolated = {
        "events": TARGET_EVENTS,
        "stream_peak_rss_bytes": stream["train_peak_rss_bytes"]
        + (TARGET_EVENTS - n) * stream["metadata_bytes_per_event"],
        "memory_decoded_bytes": mem["decoded_bytes"] * scale,
        "open_s": stream["open_s"] * scale,
        "plan_s_per_epoch": stream["plan_s"] * scale,
        "stream_epoch_s": TARGET_EVENTS * train_share / stream["train_events_per_s"],
        "memory_first_pass_s": (mem["first_pass_s"] or 0.0) * scale,
        # the same files of ~100 events each (the CLIC layout): 10^5 files
        "first_open_s_no_manifest": opened["first_open_s"] * TARGET_EVENTS / opened["events"],
        "indexed_open_s": opened["indexed_open_s"] * TARGET_EVENTS / opened["events"],
    }

    table = Table(title=f"data at scale: {n} ee_ttbar events, {stream['train_events']} for training")
    for col in ("", memory_name, stream_name, "ratio"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row(
        "loader events/s",
        f"{mem['loader_events_per_s']:.0f}",
        f"{stream['loader_events_per_s']:.0f}",
        f"{ratios['loader']:.2f}",
    )
    table.add_row(
        "training events/s",
        f"{mem['train_events_per_s']:.0f}",
        f"{stream['train_events_per_s']:.0f}",
        f"{ratios['training']:.2f}",
    )
    table.add_row("padding", f"{mem['padding_fraction']:.1%}", f"{stream['padding_fraction']:.1%}", "")
    table.add_row(
        "peak RSS per rank (training)",
        _mb(mem["train_peak_rss_bytes"]),
        _mb(stream["train_peak_rss_bytes"]),
        "",
    )
    table.add_row(
        "peak RSS (loader only)", _mb(mem["loader_peak_rss_bytes"]), _mb(stream["loader_peak_rss_bytes"]), ""
    )
    out.print(table)
    files = Table(title=f"opening {opened['files']} files ({opened['events']} events) without a manifest")
    for col in ("", "seconds"):
        files.add_column(col, justify="left" if not col else "right")
    files.add_row("first open (X columns read, index written)", f"{opened['first_open_s']:.1f}")
    files.add_row("later opens (index)", f"{opened['indexed_open_s']:.2f}")
    if "decode_every_file_s" in opened:
        files.add_row("before: every file decoded at every open", f"{opened['decode_every_file_s']:.1f}")
    out.print(files)
    ext = Table(title=f"extrapolated to {TARGET_EVENTS:.0e} events (linear in events)")
    for col in ("", "value"):
        ext.add_column(col, justify="left" if not col else "right")
    ext.add_row("stream: peak RSS per rank", _mb(extrapolated["stream_peak_rss_bytes"]))
    ext.add_row("in memory: decoded training split", _mb(extrapolated["memory_decoded_bytes"]))
    ext.add_row("open (manifest)", f"{extrapolated['open_s']:.0f} s")
    ext.add_row("plan per epoch", f"{extrapolated['plan_s_per_epoch']:.0f} s")
    ext.add_row("stream: epoch", f"{extrapolated['stream_epoch_s'] / 3600:.1f} h")
    per_file = opened["events"] // opened["files"]
    ext.add_row(
        f"first open without manifest ({per_file} events/file)",
        f"{extrapolated['first_open_s_no_manifest']:.0f} s",
    )
    ext.add_row("later opens (index)", f"{extrapolated['indexed_open_s']:.0f} s")
    out.print(ext)
    path = write_result(
        "loader_scale",
        {"modes": rows, "ratios": ratios, "open": opened, "extrapolated": extrapolated},
        {
            "events": n,
            "window_mb": args.window_mb,
            "workers": args.workers,
            "batches": args.batches,
            "steps": args.steps,
            "preset": args.preset,
            "repeats": args.repeats,
            "files": args.files,
            "load_average": {"min": min(load), "median": median(load), "max": max(load)},
        },
    )
    out.print(f"wrote {path}")


if __name__ == "__main__":
    main()
