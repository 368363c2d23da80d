"""Training and inference throughput of mlpfctl's CLIC model, against the reference model.

Run:  .venv/bin/python -m benchmarks.train_throughput --reference PATH  [--data DIR] [--events 560]
          [--rounds 2] [--threads 1] [--variants fp32,compile,...]
      PATH: a jpata/particleflow checkout (benchmarks/reference_mlpf.py says what it needs);
      without --data, 2000 ee -> ttbar events are generated into a temporary directory.

Every contender trains on the same ``--events`` events per round (a fixed random subset of the
dataset), in the same number of steps, so with the same mean events per step; contenders take
turns step by step (machine noise hits all alike), each in its own model and optimiser. A step is
forward + loss + backward + optimiser (AdamW); inference is the forward pass alone, on the same
batches. Batches are collated before the clock starts (data loading is not timed).

Contenders with --reference:
  reference                   jpata/particleflow MLPF pyg-clic-v1 and its mlpf_loss, as its
                              train_step runs on a CPU (fp32); batches padded to their longest
                              event, no padding mask (its way)
  mlpfctl                     the clic preset (the same architecture, 2,719,506 parameters) with
                              mlpfctl's execution defaults (the backend's autocast dtype, ...),
                              its loss and the loop's gradient clipping; length-bucketed batches
                              (--max-elements padded elements at most), padding masked
  mlpfctl, reference batches  the same, on the reference's batches
Without --reference, the mlpfctl modes only: bucketed + mask, batch-max padding + mask, and
batch-max padding without the mask (the reference's attention semantics, mlpfctl's model).
--variants adds mlpfctl contenders (bucketed) with one execution setting changed, for ablations:
  fp32          no autocast
  bf16-attention  attention in the autocast dtype instead of fp32
  compile       torch.compile(dynamic=True) (its compile time is reported apart: warm-up)
  reference-bf16  the reference under CPU bf16 autocast (not what it does; for comparison)

Headline: events and real (unpadded) elements over the total time of all timed steps; medians of
the per-step rates beside them. Threads are pinned (OMP_NUM_THREADS and torch.set_num_threads);
the load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.record import write_result

TRAIN_TARGET = 2.5  # x the reference's train step, same events (issue #13)
SAME_BATCHES_TARGET = 1.0
VARIANTS = ("fp32", "bf16-attention", "compile", "reference-bf16")


@dataclass
class Tally:
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    events: int = 0
    elements: int = 0
    padded: int = 0
    steps: int = 0
    rates: list[float] = field(default_factory=list)
    element_rates: list[float] = field(default_factory=list)

    def add(self, seconds: float, cpu_seconds: float, events: int, elements: int, padded: int) -> None:
        self.seconds += seconds
        self.cpu_seconds += cpu_seconds
        self.events += events
        self.elements += elements
        self.padded += padded
        self.steps += 1
        self.rates.append(events / seconds)
        self.element_rates.append(elements / seconds)

    def summary(self) -> dict[str, Any]:
        return {
            "events_per_s": self.events / self.seconds,
            "elements_per_s": self.elements / self.seconds,
            "median_events_per_s": statistics.median(self.rates),
            "median_elements_per_s": statistics.median(self.element_rates),
            "events_per_cpu_s": self.events / self.cpu_seconds,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "events": self.events,
            "elements": self.elements,
            "steps": self.steps,
            "events_per_step": self.events / self.steps,
            "real_fraction_of_padded": self.elements / self.padded,
        }


@dataclass
class Contender:
    name: str
    batching: str  # "bucketed" or "batch-max"
    dtype: str
    train: Callable[[Any], None]
    infer: Callable[[Any], None]
    prepare: Callable[[Any], Any] = lambda b: b
    params: int = 0
    train_tally: Tally = field(default_factory=Tally)
    infer_tally: Tally = field(default_factory=Tally)
    warmup_seconds: list[float] = field(default_factory=list)  # train, inference, train, ...


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", type=Path, default=None, help="jpata/particleflow checkout")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--generate", type=int, default=2000, help="events to generate without --data")
    parser.add_argument("--events", type=int, default=560, help="events every contender trains on per round")
    parser.add_argument("--rounds", type=int, default=2, help="passes over those events (reshuffled)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per contender first")
    parser.add_argument("--max-elements", type=int, default=8192, help="bucketed batches' padded elements")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preset", default="clic")
    parser.add_argument("--device", default="cpu", help="backend: cpu, cuda, ...")
    parser.add_argument("--variants", default="", help=f"extra contenders: {','.join(VARIANTS)}")
    parser.add_argument("--no-inference", action="store_true")
    parser.add_argument("--name", default="train_throughput")
    return parser.parse_args(argv)


def _fail(message: str, hint: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    print(f"hint: {hint}", file=sys.stderr)
    return 2


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f}"


def main(argv: list[str] | None = None) -> int:
    opts = _parse_args(argv)
    variants = [v for v in opts.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        return _fail(f"unknown variant(s) {', '.join(unknown)}", f"choose from {', '.join(VARIANTS)}")
    if opts.reference is None and "reference-bf16" in variants:
        return _fail("variant reference-bf16 needs --reference", "pass --reference PATH")
    # Pinned before torch starts its thread pools: every contender gets the same threads.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(opts.threads)

    import numpy as np
    import torch

    torch.set_num_threads(opts.threads)
    from benchmarks import reference_mlpf
    from mlpfctl.backends import select_backend
    from mlpfctl.data.collate import collate_events
    from mlpfctl.data.dataset import open_dataset

    backend = select_backend(opts.device)
    device = backend.setup_process(0)
    tmp = None
    data = opts.data
    if data is None:
        from mlpfctl.data.generate import generate_dataset

        tmp = tempfile.TemporaryDirectory(prefix="mlpfctl-bench-")
        data = Path(tmp.name)
        generate_dataset(data, process="ee_ttbar", events=opts.generate, seed=1)
    dataset = open_dataset(data)
    if not 0 < opts.events <= len(dataset):
        return _fail(f"--events {opts.events} is not in 1..{len(dataset)}", "use fewer events or more data")

    contenders: list[Contender] = []
    reference = None
    if opts.reference is not None:
        try:
            reference = reference_mlpf.Reference(opts.reference.resolve(), device)
        except reference_mlpf.ReferenceUnavailable as exc:
            return _fail(str(exc), exc.hint)
        contenders.append(_reference_contender("reference", reference, None))
    contenders += _mlpfctl_contenders(opts, dataset, backend, device, reference is not None, variants)
    if reference is not None and "reference-bf16" in variants:
        contenders.append(_reference_contender("reference, bf16 autocast", reference, torch.bfloat16))

    lengths = np.asarray(dataset.lengths)
    rng = np.random.default_rng(0)
    pool = rng.permutation(len(dataset))[: opts.events]

    def plan(epoch: int) -> dict[str, list[list[int]]]:
        return plan_batches(lengths, pool, opts.max_elements, epoch)

    def collate(indices: list[int]) -> Any:
        return collate_events([(i, dataset[i]) for i in indices])

    def timed(fn: Callable[[Any], None], batch: Any) -> tuple[float, float]:
        """(wall, CPU) seconds of one step; CPU time is what the process itself computed, which
        waiting for a core on a loaded machine does not inflate."""
        backend.synchronize(device)
        start, cpu = time.perf_counter(), time.process_time()
        fn(batch)
        backend.synchronize(device)
        return time.perf_counter() - start, time.process_time() - cpu

    load_before = _load()
    warm = plan(10_000)
    for i in range(opts.warmup):
        for c in contenders:
            batch = c.prepare(collate(warm[c.batching][i % len(warm[c.batching])]).to(device))
            c.warmup_seconds.append(timed(c.train, batch)[0])
            if not opts.no_inference:
                c.warmup_seconds.append(timed(c.infer, batch)[0])

    for epoch in range(opts.rounds):
        batches = plan(epoch)
        phases: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = [
            ("train", lambda c: c.train, lambda c: c.train_tally)
        ]
        if not opts.no_inference:
            phases.append(("inference", lambda c: c.infer, lambda c: c.infer_tally))
        for _, step_of, tally_of in phases:
            for i in range(len(batches["bucketed"])):
                # Who goes first rotates, so that no contender always follows the same one.
                k = i % len(contenders)
                for c in contenders[k:] + contenders[:k]:
                    raw = collate(batches[c.batching][i]).to(device)
                    wall, cpu = timed(step_of(c), c.prepare(raw))
                    tally_of(c).add(wall, cpu, raw.num_events, raw.num_elements, raw.padded_elements)
    load_after = _load()

    results = _results(contenders, reference is not None, opts.no_inference)
    settings = {
        "preset": opts.preset,
        "device": str(device),
        "device_name": backend.device_name(device),
        "threads": opts.threads,
        "events_per_round": opts.events,
        "rounds": opts.rounds,
        "warmup_steps": opts.warmup,
        "max_elements": opts.max_elements,
        "dataset_events": len(dataset),
        "median_event": float(np.median(lengths)),
        "longest_event": int(lengths.max()),
        "data": str(opts.data) if opts.data else f"generated ee_ttbar ({opts.generate} events)",
        "reference": str(opts.reference) if opts.reference else None,
        "reference_placeholders": reference.placeholders if reference else None,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "command": " ".join(["python -m benchmarks.train_throughput", *(argv or sys.argv[1:])]),
    }
    _print(results, settings, opts)
    path = write_result(opts.name, results, settings)
    print(f"wrote {path}", file=sys.stderr)
    if tmp is not None:
        tmp.cleanup()
    return 0


def plan_batches(lengths: Any, pool: Any, max_elements: int, epoch: int) -> dict[str, list[list[int]]]:
    """Both batchings of the events ``pool`` (dataset indices): length-bucketed (mlpfctl's
    sampler) and shuffled into as many batches padded to their longest event (the reference's
    way). The same events, the same number of steps, so the same mean events per step."""
    import numpy as np

    from mlpfctl.data.batching import BucketBatchSampler

    sampler = BucketBatchSampler(np.asarray(lengths)[pool], max_elements, seed=0)
    sampler.set_epoch(epoch)
    bucketed = [[int(pool[i]) for i in b] for b in sampler]
    shuffled = np.random.default_rng(epoch + 1).permutation(pool)
    fixed = [[int(i) for i in part] for part in np.array_split(shuffled, len(bucketed))]
    return {"bucketed": bucketed, "batch-max": fixed}


def _reference_contender(name: str, reference: Any, dtype: Any) -> Contender:
    import torch

    if dtype is None:
        return Contender(
            name,
            "batch-max",
            "fp32" if reference.autocast_dtype is None else str(reference.autocast_dtype),
            reference.train_step,
            reference.infer,
            reference.prepare,
            reference.parameters(),
        )

    def with_autocast(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(batch: Any) -> None:
            with torch.autocast("cpu", dtype=dtype):
                fn(batch)

        return run

    return Contender(
        name,
        "batch-max",
        "bf16",
        with_autocast(reference.train_step),
        with_autocast(reference.infer),
        reference.prepare,
        reference.parameters(),
    )


def _mlpfctl_contenders(
    opts: argparse.Namespace,
    dataset: Any,
    backend: Any,
    device: Any,
    with_reference: bool,
    variants: list[str],
) -> list[Contender]:
    from mlpfctl.config.schema import ModelSection, TrainSection
    from mlpfctl.models.registry import build_model, count_parameters, spec_for

    default_dtype = backend.autocast_dtype(device)
    clip = TrainSection().grad_clip

    def make(name: str, batching: str, *, mask: bool = True, variant: str | None = None) -> Contender:
        import torch

        from mlpfctl.models import execution
        from mlpfctl.models.loss import LossWeights, loss_sums, reduce_loss

        torch.manual_seed(0)
        spec = spec_for(ModelSection(preset=opts.preset, attention_mask=mask), dataset.schema)
        module = backend.prepare_model(build_model(spec).to(device), device)
        if variant == "bf16-attention":
            execution.set_attention_upcast(module, False)
        if variant == "compile":
            execution.compile_model(module)
        model: Any = module
        dtype = None if variant == "fp32" else default_dtype
        optimizer = torch.optim.AdamW(module.parameters(), lr=5e-4, weight_decay=0.01)
        weights = LossWeights()

        def autocast() -> Any:
            return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

        def train(batch: Any) -> None:
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                outputs = model(batch.X, batch.mask)
            sums = loss_sums(outputs, batch.X, batch.mask, batch.target_cls, batch.target_p4, weights)
            reduce_loss(sums)["Total"].backward()  # type: ignore[no-untyped-call]
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            optimizer.step()

        def infer(batch: Any) -> None:
            model.eval()
            with torch.inference_mode(), autocast():
                model(batch.X, batch.mask)

        label = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32") if dtype else "fp32"
        return Contender(name, batching, label, train, infer, params=count_parameters(module))

    if with_reference:
        out = [make("mlpfctl", "bucketed"), make("mlpfctl, reference batches", "batch-max")]
    else:
        out = [
            make("mlpfctl bucketed + mask", "bucketed"),
            make("mlpfctl batch-max padding + mask", "batch-max"),
            make("mlpfctl batch-max padding, no mask", "batch-max", mask=False),
        ]
    for variant in variants:
        if variant != "reference-bf16":
            out.append(make(f"mlpfctl {variant}", "bucketed", variant=variant))
    return out


def _results(contenders: list[Contender], with_reference: bool, no_inference: bool) -> dict[str, Any]:
    phases = ("train",) if no_inference else ("train", "inference")
    out: dict[str, Any] = {}
    for c in contenders:
        out[c.name] = {
            "batching": c.batching,
            "dtype": c.dtype,
            "parameters": c.params,
            "warmup_seconds": c.warmup_seconds,
            "train": c.train_tally.summary(),
        }
        if not no_inference:
            out[c.name]["inference"] = c.infer_tally.summary()
    base_name = "reference" if with_reference else contenders[1].name
    base = out[base_name]
    for c in contenders:
        if c.name == base_name:
            continue
        ratios = {}
        for phase in phases:
            mine, theirs = out[c.name][phase], base[phase]
            ratios[f"{phase}_total"] = mine["events_per_s"] / theirs["events_per_s"]
            ratios[f"{phase}_median"] = mine["median_events_per_s"] / theirs["median_events_per_s"]
            ratios[f"{phase}_cpu"] = mine["events_per_cpu_s"] / theirs["events_per_cpu_s"]
        out[c.name][f"vs_{base_name}"] = ratios
    out["baseline"] = base_name
    return out


def _print(results: dict[str, Any], settings: dict[str, Any], opts: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    base = results["baseline"]
    title = (
        f"MLPF {opts.preset}: events/s over the total time, {settings['device_name']}, "
        f"{opts.threads} thread(s), {opts.events} events x {opts.rounds} rounds per contender, "
        f"load {settings['load_average_before']} -> {settings['load_average_after']}"
    )
    table = Table(title=title)
    for col in ("contender", "batches", "dtype", "phase", "events/s", "elements/s", "median", "per CPU-s"):
        table.add_column(col, justify="left" if col in ("contender", "batches", "phase") else "right")
    table.add_column(f"vs {base}", justify="right")
    table.add_column("(median, CPU)", justify="right")
    phases = ("train",) if opts.no_inference else ("train", "inference")
    for name in (n for n in results if n != "baseline"):
        r = results[name]
        ratio = r.get(f"vs_{base}")
        for phase in phases:
            p = r[phase]
            table.add_row(
                name if phase == "train" else "",
                r["batching"] if phase == "train" else "",
                r["dtype"] if phase == "train" else "",
                phase,
                f"{p['events_per_s']:.2f}",
                f"{p['elements_per_s']:.0f}",
                f"{p['median_events_per_s']:.2f}",
                f"{p['events_per_cpu_s']:.2f}",
                f"{ratio[f'{phase}_total']:.2f}x" if ratio else "",
                f"{ratio[f'{phase}_median']:.2f}x, {ratio[f'{phase}_cpu']:.2f}x" if ratio else "",
            )
    console = Console(width=None if Console().is_terminal else 132)
    console.print(table)
    if base == "reference":
        for name, target in (("mlpfctl", TRAIN_TARGET), ("mlpfctl, reference batches", SAME_BATCHES_TARGET)):
            ratio = results[name]["vs_reference"]["train_total"]
            verdict = "meets" if ratio >= target else "misses"
            console.print(
                f"{name}: train {ratio:.2f}x the reference in total time ({verdict} the {target}x target)"
            )


if __name__ == "__main__":
    raise SystemExit(main())
