"""Training throughput of the reference CLIC preset: bucketed + masked batches against
pad-to-max batches without a mask (the reference's way), side by side.

Run:  .venv/bin/python -m benchmarks.train_throughput [--data DIR] [--steps 8] [--device cpu|cuda]
      (without --data, the embedded dataset, 2000 ee -> ttbar events, is generated into a temp dir)

Modes, interleaved step by step so machine noise hits all alike:
  bucketed+masked   BucketBatchSampler (events of similar length share a batch, at most
                    --max-elements padded elements), padding masked out of attention
  pad-to-max        FixedBatchSampler with the same mean events per batch, every batch padded to
                    its longest event (reference HEAD), no attention mask
  pad-to-dataset    the same, padded to the longest event of the dataset (fixed-shape padding)
Throughput counts real events and elements only. FLOPs are analytic (mlpfctl.models.flops);
MFU = achieved / peak FLOP/s where the backend knows the peak (CPUs: unknown, so reported null).
Warm-up steps are excluded; medians of per-step rates are quoted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.record import write_result

TARGET_RATIO = 1.5


def _batches(sampler: Any, count: int) -> list[list[int]]:
    out: list[list[int]] = []
    epoch = 0
    while len(out) < count:
        sampler.set_epoch(epoch)
        out += [list(b) for b in sampler]
        epoch += 1
    return out[:count]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--events", type=int, default=2000, help="events to generate without --data")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-elements", type=int, default=8192)
    parser.add_argument("--preset", default="clic")
    parser.add_argument("--device", default="auto", help="backend: auto, cpu, cuda, ...")
    parser.add_argument("--name", default="train_throughput")
    opts = parser.parse_args()

    import numpy as np
    import torch

    from mlpfctl.backends import select_backend
    from mlpfctl.config.schema import ModelSection
    from mlpfctl.data.batching import BucketBatchSampler, FixedBatchSampler
    from mlpfctl.data.collate import make_loader
    from mlpfctl.data.dataset import open_dataset
    from mlpfctl.models.flops import train_flops
    from mlpfctl.models.loss import LossWeights, loss_sums, reduce_loss
    from mlpfctl.models.registry import build_model, count_parameters, spec_for

    data = opts.data
    tmp = None
    if data is None:
        from mlpfctl.data.generate import generate_dataset

        tmp = tempfile.TemporaryDirectory(prefix="mlpfctl-bench-")
        data = Path(tmp.name)
        generate_dataset(data, process="ee_ttbar", events=opts.events, seed=1)
    dataset = open_dataset(data)
    lengths = np.asarray(dataset.lengths)

    backend = select_backend(opts.device)
    device = backend.setup_process(0)
    dtype = backend.autocast_dtype(device)
    dtype_name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32") if dtype else "fp32"
    peak = backend.device_peak_flops(device, dtype_name)

    total = opts.warmup + opts.steps
    bucket = _batches(BucketBatchSampler(lengths, opts.max_elements, shuffle=True, seed=0), total)
    mean_events = max(1, round(statistics.fmean(len(b) for b in bucket)))
    fixed = _batches(FixedBatchSampler(lengths, mean_events, shuffle=True, seed=0), total)
    longest = int(lengths.max())
    modes: dict[str, dict[str, Any]] = {
        "bucketed+masked": {"batches": bucket, "mask": True, "pad_to": None},
        "pad-to-max": {"batches": fixed, "mask": False, "pad_to": None},
        "pad-to-dataset": {"batches": fixed, "mask": False, "pad_to": longest},
    }
    weights = LossWeights()
    for mode in modes.values():
        torch.manual_seed(0)
        spec = spec_for(ModelSection(preset=opts.preset, attention_mask=mode["mask"]), dataset.schema)
        model = build_model(spec).to(device)
        mode.update(
            spec=spec,
            model=model,
            opt=torch.optim.AdamW(model.parameters(), lr=1e-4),
            loader=iter(make_loader(dataset, mode["batches"], 0, pad_to=mode["pad_to"])),
            rates=[],
            seconds=0.0,
            events=0,
            elem_rates=[],
            flops=[],
            padded=[],
        )
    params = count_parameters(modes["bucketed+masked"]["model"])

    def step(mode: dict[str, Any]) -> tuple[float, Any]:
        batch = next(mode["loader"]).to(device)
        backend.synchronize(device)
        start = time.perf_counter()
        mode["opt"].zero_grad(set_to_none=True)
        ctx = (
            torch.autocast(device.type, dtype=dtype) if dtype else torch.autocast(device.type, enabled=False)
        )
        with ctx:
            outputs = mode["model"](batch.X, batch.mask)
        loss = reduce_loss(
            loss_sums(outputs, batch.X, batch.mask, batch.target_cls, batch.target_p4, weights)
        )
        loss["Total"].backward()
        mode["opt"].step()
        backend.synchronize(device)
        return time.perf_counter() - start, batch

    for i in range(total):
        for mode in modes.values():
            seconds, batch = step(mode)
            if i < opts.warmup:
                continue
            real = batch.mask.sum(dim=1).tolist()
            mode["seconds"] += seconds
            mode["events"] += batch.num_events
            mode["rates"].append(batch.num_events / seconds)
            mode["elem_rates"].append(sum(real) / seconds)
            mode["flops"].append(train_flops(mode["model"], mode["spec"], real) / seconds)
            mode["padded"].append(batch.num_elements / batch.padded_elements)

    results: dict[str, Any] = {}
    for name, mode in modes.items():
        flops = statistics.median(mode["flops"])
        results[name] = {
            "events_per_s": statistics.median(mode["rates"]),
            "events_per_s_total": mode["events"] / mode["seconds"],
            "elements_per_s": statistics.median(mode["elem_rates"]),
            "tflops": flops / 1e12,
            "mfu": flops / peak if peak else None,
            "real_fraction_of_padded": statistics.fmean(mode["padded"]),
            "mean_events_per_batch": statistics.fmean(len(b) for b in mode["batches"][opts.warmup :]),
        }
    base = results["bucketed+masked"]["events_per_s"]
    for name in ("pad-to-max", "pad-to-dataset"):
        results[f"speedup_vs_{name}"] = base / results[name]["events_per_s"]
        results[f"speedup_total_vs_{name}"] = (
            results["bucketed+masked"]["events_per_s_total"] / results[name]["events_per_s_total"]
        )

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"MLPF {opts.preset} training throughput ({params:,} params, {device}, {dtype_name})")
    for col in ("mode", "events/s", "elements/s", "TFLOP/s", "MFU", "real/padded", "events/batch"):
        table.add_column(col, justify="right")
    for name in modes:
        r = results[name]
        table.add_row(
            name,
            f"{r['events_per_s']:.1f}",
            f"{r['elements_per_s']:.0f}",
            f"{r['tflops']:.4f}",
            f"{r['mfu']:.3f}" if r["mfu"] is not None else "n/a",
            f"{r['real_fraction_of_padded']:.2f}",
            f"{r['mean_events_per_batch']:.1f}",
        )
    console = Console()
    console.print(table)
    for name in ("pad-to-max", "pad-to-dataset"):
        ratio = results[f"speedup_vs_{name}"]
        verdict = "meets" if ratio >= TARGET_RATIO else "misses"
        total = results[f"speedup_total_vs_{name}"]
        console.print(
            f"bucketed+masked vs {name}: {ratio:.2f}x median per step, {total:.2f}x total "
            f"({verdict} the {TARGET_RATIO}x target)"
        )
    settings = {
        "preset": opts.preset,
        "params": params,
        "device": str(device),
        "device_name": backend.device_name(device),
        "dtype": dtype_name,
        "peak_flops": peak,
        "steps": opts.steps,
        "warmup": opts.warmup,
        "max_elements": opts.max_elements,
        "events": len(dataset),
        "longest_event": longest,
        "median_event": float(np.median(lengths)),
        "data": str(opts.data) if opts.data else "generated ee_ttbar",
    }
    path = write_result(opts.name, results, settings)
    console.print(f"wrote {path}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
