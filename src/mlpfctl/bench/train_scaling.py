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
    import torch.distributed as dist

    from mlpfctl.bench.energy import EnergyMeter
    from mlpfctl.bench.timing import StepTimes, percentile
    from mlpfctl.models.flops import mfu, train_flops
    from mlpfctl.train import loop
    from mlpfctl.train.api import TrainRequest
    from mlpfctl.train.optim import build_optimizer, build_scheduler

    with tempfile.TemporaryDirectory(prefix="mlpfctl-scale-") as tmp:
        ctx, backend = loop.setup_rank(TrainRequest(config=request.config, run_dir=Path(tmp), quiet=True))
        try:
            lr, _ = loop.scaled_lr(ctx.cfg, ctx.world_size)
            optimizer = build_optimizer(ctx.model.parameters(), ctx.cfg.train, lr)
            scheduler = build_scheduler(optimizer, ctx.cfg.train)
            scaler = torch.amp.GradScaler(ctx.device.type) if ctx.autocast_dtype == torch.float16 else None

            def sync() -> None:
                backend.synchronize(ctx.device)

            backend.reset_peak_memory(ctx.device)
            meter = EnergyMeter(ctx.device)

            def batches() -> Any:
                epoch = 0
                while True:
                    yield from ctx.data.loader(ctx.data.train, ctx.data.epoch_batches(epoch))
                    epoch += 1

            def one_step(stream: Any, no_sync: bool) -> tuple[float, float, Any]:
                sync()
                t0 = time.perf_counter()
                batch = next(stream)
                t1 = time.perf_counter()
                counts = torch.tensor(
                    [batch.num_elements, float((batch.target_cls != 0).sum()), batch.num_events, 0.0],
                    dtype=torch.float64,
                )
                loop.all_reduce(counts, ctx.world_size)
                guard: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
                if no_sync and ctx.world_size > 1:
                    guard = ctx.model.no_sync()  # type: ignore[operator]  # DDP-wrapped model
                with guard:
                    loop.train_step(ctx, batch, optimizer, scheduler, scaler, counts)
                sync()
                t2 = time.perf_counter()
                return t1 - t0, t2 - t1, batch

            times = StepTimes(warmup=request.warmup)
            flops = 0.0
            stream = batches()
            meter.sample()
            for i in range(request.warmup + request.steps):
                if i == request.warmup:
                    meter.reset()
                    meter.sample()
                data_s, compute_s, batch = one_step(stream, no_sync=False)
                meter.sample()
                # this rank's own events: the all-reduce below sums the ranks (counts is already global)
                times.record(data_s, compute_s, batch.num_events, batch.num_elements)
                if i >= request.warmup:
                    lengths = batch.mask.sum(dim=1).tolist()
                    flops += train_flops(ctx.module, ctx.spec, lengths)
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
            if ctx.world_size > 1:
                dist.all_reduce(totals[:4])
                rss = totals[4:5].clone()
                dist.all_reduce(rss, op=dist.ReduceOp.MAX)
                totals[4] = rss[0]
                dist.all_reduce(per_rank_peak, op=dist.ReduceOp.MAX)
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
            return summary
        finally:
            if ctx.world_size > 1 and dist.is_initialized():
                with contextlib.suppress(Exception):
                    dist.destroy_process_group()


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
