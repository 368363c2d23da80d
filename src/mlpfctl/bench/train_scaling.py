"""Training scaling points: one world size, strong or weak, timed the way scaling studies need.

Per point, every rank runs the real training step (the model, loss, optimizer and DDP gradient
all-reduce of ``mlpfctl train``) on the real data loader:

* ``warmup`` steps are run and discarded;
* each timed step is split into data loading (waiting for the next batch) and compute (forward,
  backward, all-reduce, optimizer), with the device synchronised before each clock read;
* the communication share is estimated by timing extra steps under ``DDP.no_sync()`` (no gradient
  all-reduce) on the same batches: comm = 1 - compute_nosync / compute;
* medians and p90 over the timed steps, never an epoch mean.

strong: the global batch is fixed, so each rank's element budget is the world-1 budget / world.
weak:   each rank keeps the world-1 budget, so the global batch grows with the world size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpfctl.config.schema import Config
from mlpfctl.errors import UsageError


@dataclass(frozen=True)
class PointRequest:
    config: Config
    world_size: int
    mode: str  # "strong" | "weak"
    steps: int
    warmup: int
    comm_steps: int


def point_config(base: Config, world_size: int, mode: str) -> Config:
    """The config one rank uses at ``world_size``: the strong-scaling batch split, weak as is."""
    if mode not in ("strong", "weak"):
        raise UsageError(f"unknown scaling mode '{mode}'", "use --mode strong or --mode weak")
    if mode == "weak" or world_size == 1:
        return base
    train, data = base.train, base.data
    if train.batch_events:
        per_rank = train.batch_events // world_size
        if per_rank < 1:
            raise UsageError(
                f"strong scaling splits train.batch_events={train.batch_events} over {world_size} "
                "ranks: less than one event per rank",
                "use a larger batch or fewer ranks",
            )
        return dataclasses.replace(base, train=dataclasses.replace(train, batch_events=per_rank))
    per_rank = data.max_elements_per_batch // world_size
    return dataclasses.replace(base, data=dataclasses.replace(data, max_elements_per_batch=per_rank))


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux: the high-water mark of this rank's resident memory.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rank_main(request: PointRequest) -> dict[str, Any]:
    """Runs on every rank (spawned by launch_local, or under torchrun/srun); rank 0's dict is the point."""
    import torch

    from mlpfctl.bench.energy import EnergyMeter
    from mlpfctl.bench.timing import StepTimes, percentile
    from mlpfctl.models.flops import mfu
    from mlpfctl.train.context import setup_rank
    from mlpfctl.train.data_streams import Position
    from mlpfctl.train.step import Optimization, step_flops, train_step
    from mlpfctl.train.types import TrainRequest

    with tempfile.TemporaryDirectory(prefix="mlpfctl-scale-") as tmp:
        ctx = setup_rank(TrainRequest(config=request.config, run_dir=Path(tmp), quiet=True))
        backend = ctx.backend
        finished = False
        try:
            opt = Optimization.build(ctx)

            def sync() -> None:
                backend.synchronize(ctx.device)

            backend.reset_peak_memory(ctx.device)
            meter = EnergyMeter(ctx.device)

            def one_step(stream: Any, no_sync: bool) -> tuple[float, float, Any]:
                sync()
                t0 = time.perf_counter()
                micro = next(stream)
                t1 = time.perf_counter()
                guard: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
                if no_sync and ctx.dist.active:
                    guard = ctx.model.no_sync()  # type: ignore[operator]  # DDP-wrapped model
                with guard:
                    train_step(ctx, opt, micro)
                sync()
                t2 = time.perf_counter()
                return t1 - t0, t2 - t1, micro

            times = StepTimes(warmup=request.warmup)
            flops = 0.0
            stream = (micro for micro, _ in ctx.data.training(Position()))
            meter.sample()
            for i in range(request.warmup + request.steps):
                if i == request.warmup:
                    meter.reset()
                    meter.sample()
                data_s, compute_s, micro = one_step(stream, no_sync=False)
                meter.sample()
                # this rank's own events: the all-reduce below sums the ranks
                events, elements = sum(b.num_events for b in micro), sum(b.num_elements for b in micro)
                times.record(data_s, compute_s, events, elements)
                if i >= request.warmup:
                    flops += step_flops(ctx, micro)
            energy_j = meter.joules if meter.available else None
            nosync = [one_step(stream, no_sync=True)[1] for _ in range(request.comm_steps)]

            summary: dict[str, Any] = dict(times.summary())
            compute_p50 = summary.get("compute_s_p50", float("nan"))
            comm_share = None
            if ctx.world_size > 1 and nosync:
                comm_share = max(0.0, 1.0 - statistics.median(nosync) / compute_p50)
            # Global throughput: every rank processed its own events in the same (synchronised) steps.
            totals = torch.tensor(
                [
                    float(sum(times.events)),
                    float(sum(times.elements)),
                    flops,
                    energy_j or 0.0,
                    _peak_rss_mib(),
                ],
                dtype=torch.float64,
            )
            device_peak = float(backend.memory_stats(ctx.device).get("peak_allocated_bytes", 0))
            per_rank_peak = torch.tensor([device_peak])
            # Host tensors: gloo reduces them whatever library serves the device (cpu:gloo,...).
            sums = ctx.dist.all_reduce(totals[:4].clone())
            rss = ctx.dist.all_reduce(totals[4:5].clone(), "max")
            totals = torch.cat([sums, rss])
            ctx.dist.all_reduce(per_rank_peak, "max")
            wall = sum(times.step_s())
            events, elements, flops_all, joules, rss_mib = (float(v) for v in totals)
            summary.update(
                {
                    "world_size": ctx.world_size,
                    "events_per_s": events / wall if wall else None,
                    "elements_per_s": elements / wall if wall else None,
                    "step_s_p90": percentile(times.step_s(), 90),
                    "comm_share": comm_share,
                    "tflops": flops_all / wall / 1e12 if wall else None,
                    "mfu": mfu(flops_all, wall, ctx.peak_flops, ctx.world_size),
                    "peak_memory_mib": (float(per_rank_peak[0]) / 2**20) if per_rank_peak[0] > 0 else rss_mib,
                    "peak_memory_kind": "device" if per_rank_peak[0] > 0 else "host RSS",
                    "energy_j_per_event": joules / events if energy_j is not None and events else None,
                    "events_per_rank_step": events / max(1, times.steps) / ctx.world_size,
                    "device": backend.device_name(ctx.device),
                    "backend": backend.name,
                    "autocast": str(ctx.autocast_dtype) if ctx.autocast_dtype else "fp32",
                    "parameters": sum(p.numel() for p in ctx.module.parameters()),
                }
            )
            finished = True
            return summary
        finally:
            ctx.close(finished=finished)


def run_point(request: PointRequest) -> dict[str, Any]:
    """Run one point as ``world_size`` local child processes, world size 1 included.

    The parent never touches a device: it would keep a context (and its cache) on device 0 for
    every later point, which fails in exclusive-process mode, and on Gaudi, where a module belongs
    to one process, the point's rank 0 could not acquire the module the parent holds.
    """
    from mlpfctl.launch.local import launch_local

    out: dict[str, Any] = launch_local(
        rank_main, request.world_size, (request,), backend=request.config.run.backend
    )
    return out
