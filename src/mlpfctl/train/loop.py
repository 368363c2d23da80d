"""The per-rank training loop (step-based, validation every ``train.val_every`` steps).

Synchronisation points per step (marked ``# sync``): one all-reduce before the forward pass
(global element/particle counts for the loss denominators, events, and the stop-signal flag) and
DDP's gradient all-reduce in backward; one more all-reduce of the loss values for logging and the
divergence check. Validation all-reduces its sums once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mlpfctl.atomic import atomic_write_text
from mlpfctl.config.loader import to_toml
from mlpfctl.config.schema import Config
from mlpfctl.console import err
from mlpfctl.data.plan import BatchPlan
from mlpfctl.errors import DataError, RuntimeFailure
from mlpfctl.models.execution import compile_model
from mlpfctl.models.flops import mfu, train_flops
from mlpfctl.models.loss import TERM_NAMES, LossWeights, loss_sums, reduce_loss
from mlpfctl.models.registry import build_model, count_parameters, spec_for
from mlpfctl.models.spec import ModelSpec
from mlpfctl.models.targets import predict_particles
from mlpfctl.train import checkpoint as ckpt
from mlpfctl.train.api import DECISIONS, DivergedError, TrainRequest, TrainResult
from mlpfctl.train.metrics import MetricAccumulator
from mlpfctl.train.optim import Schedule, build_optimizer, build_scheduler, lr_scale_factor
from mlpfctl.train.runlog import RunLogger
from mlpfctl.train.signals import catch_stop_signals

CONFIG_FILE = "config.toml"
MODEL_FILE = "model.json"
RESULT_FILE = "result.json"
_EXPLODE_WINDOW = 10  # steps whose median loss is the reference for "exploding"


@dataclass
class Position:
    """Where the data stream stands: the epoch and the batches of it already consumed."""

    epoch: int = 0
    batch: int = 0


@dataclass
class Context:
    """Everything one rank needs while training."""

    request: TrainRequest
    cfg: Config
    rank: int
    world_size: int
    device: torch.device
    autocast_dtype: torch.dtype | None
    model: nn.Module
    module: nn.Module  # the model without the DDP wrapper
    spec: ModelSpec
    weights: LossWeights
    class_names: tuple[str, ...]
    peak_flops: float | None
    backend: Any
    data: Any = None
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def loss_weights(cfg: Config) -> LossWeights:
    reg = tuple(cfg.train.loss_reg_weights)
    if len(reg) != 5:
        raise DataError(
            f"train.loss_reg_weights needs 5 values (pt, eta, sin_phi, cos_phi, energy), got {len(reg)}",
            "example: --set train.loss_reg_weights=1,0.01,0.01,0.01,1",
        )
    return LossWeights(
        binary=cfg.train.loss_binary_weight,
        cls=cfg.train.loss_cls_weight,
        focal_gamma=cfg.train.focal_gamma,
        reg=(reg[0], reg[1], reg[2], reg[3], reg[4]),
        sqrt_pt=cfg.train.sqrt_pt_weighting,
        class_weights=tuple(cfg.train.loss_class_weights) if cfg.train.loss_class_weights else None,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def rng_neutral(iterable: Any) -> Iterator[Any]:
    """Iterate ``iterable`` without touching the global torch RNG.

    A DataLoader draws a base seed from the global RNG when its iterator starts. A resumed run
    starts a fresh iterator mid-epoch where the uninterrupted run did not, so without this the
    dropout masks after a resume would differ from the uninterrupted run's.
    """
    iterator: Iterator[Any] | None = None
    while True:
        state = torch.get_rng_state()
        try:
            if iterator is None:
                iterator = iter(iterable)
            item = next(iterator)
        except StopIteration:
            return
        finally:
            torch.set_rng_state(state)
        yield item


def all_reduce(t: torch.Tensor, world_size: int, op: Any = None) -> torch.Tensor:
    if world_size > 1:  # sync
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


def per_rank_batch(cfg: Config) -> int:
    """One rank's batch in the unit LR scaling uses: events, or padded elements when bucketing."""
    return cfg.train.batch_events or cfg.data.max_elements_per_batch


def scaled_lr(cfg: Config, world_size: int) -> tuple[float, float]:
    unit = per_rank_batch(cfg)
    reference = cfg.train.reference_batch or unit
    # The global batch: every rank's micro-batches of one step.
    factor = lr_scale_factor(cfg.train.lr_scaling, world_size * unit * cfg.train.grad_accum, reference)
    return cfg.train.lr * factor, factor


class DataStreams:
    """Train/validation splits, their samplers and loaders for one rank."""

    def __init__(self, cfg: Config, rank: int, world_size: int) -> None:
        from mlpfctl.data.dataset import open_dataset, split_dataset

        self.cfg = cfg
        self.rank = rank
        self.world_size = world_size
        self.pad_buckets: tuple[int, ...] = ()  # fixed batch widths (graph-compiling backends)
        dataset = open_dataset(cfg.data.path, format=cfg.data.format, cache_bytes=cfg.data.cache_mb * 2**20)
        self.schema = dataset.schema
        self.train, self.valid, self.test = split_dataset(
            dataset, cfg.data.valid_fraction, cfg.data.test_fraction, cfg.run.seed
        )
        limit = cfg.data.max_train_events
        if limit is not None:
            if limit > len(self.train):
                raise DataError(
                    f"data.max_train_events={limit} exceeds the {len(self.train)} events of the training "
                    f"split of {cfg.data.path}",
                    "generate more events or lower data.max_train_events",
                )
            self.train = self.train.view(np.arange(limit))
        if len(self.train) == 0 or len(self.valid) == 0:
            raise DataError(
                f"dataset {cfg.data.path} has {len(self.train)} training and "
                f"{len(self.valid)} validation events",
                "use a larger dataset or change data.valid_fraction / data.test_fraction",
            )
        self.train_sampler = self._sampler(self.train, shuffle=cfg.train.shuffle, drop_last=True)

    def _sampler(self, dataset: Any, *, shuffle: bool, drop_last: bool) -> Any:
        from mlpfctl.data.batching import sampler_for_config

        return sampler_for_config(
            self.cfg,
            dataset,
            rank=self.rank,
            world_size=self.world_size,
            shuffle=shuffle,
            drop_last=drop_last,
        )

    def epoch_batches(self, epoch: int) -> Sequence[list[int]]:
        """This rank's batches of ``epoch``, trimmed to the count every rank has (DDP steps together)."""
        self.train_sampler.set_epoch(epoch)
        batches: BatchPlan = self.train_sampler.plan()
        count = all_reduce(
            torch.tensor([len(batches)], dtype=torch.int64), self.world_size, dist.ReduceOp.MIN
        )
        if int(count.item()) == 0:
            raise DataError(
                f"the training split ({len(self.train)} events) yields no full batch per rank",
                "lower train.batch_events / data.max_elements_per_batch or use more events",
            )
        return batches[: int(count.item())]

    def loader(self, dataset: Any, batches: Sequence[list[int]]) -> Iterator[Any]:
        from mlpfctl.data.collate import make_loader

        return rng_neutral(
            make_loader(dataset, batches, self.cfg.data.num_workers, pad_buckets=self.pad_buckets)
        )

    def valid_batches(self, dataset: Any, max_events: int | None) -> Sequence[list[int]]:
        batches: BatchPlan = self._sampler(dataset, shuffle=False, drop_last=False).plan()
        if max_events is None:
            return batches
        per_rank = max(1, max_events // self.world_size)
        seen = np.cumsum(batches.sizes())  # events up to and including each batch
        return batches[: int(np.searchsorted(seen, per_rank)) + 1]


def _autocast(ctx: Context) -> contextlib.AbstractContextManager[Any]:
    if ctx.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=ctx.device.type, dtype=ctx.autocast_dtype)


def validate(ctx: Context, step: int) -> dict[str, Any]:
    """Mean losses (global sums / global counts) and physics metrics over the validation split."""
    module = ctx.module
    module.eval()
    names = [*TERM_NAMES]
    sums = torch.zeros(len(names) + 2, dtype=torch.float64)
    acc = MetricAccumulator(ctx.spec.num_classes, jets=ctx.cfg.train.val_jets)
    batches = ctx.data.valid_batches(ctx.data.valid, ctx.cfg.train.val_max_events)
    with torch.no_grad():
        for batch in ctx.data.loader(ctx.data.valid, batches):
            batch = batch.to(ctx.device)
            with _autocast(ctx):
                outputs = module(batch.X, batch.mask)
            s = loss_sums(outputs, batch.X, batch.mask, batch.target_cls, batch.target_p4, ctx.weights)
            sums += torch.tensor(
                [*(s.sums[n].item() for n in names), s.elements.item(), s.particles.item()],
                dtype=torch.float64,
            )
            pred = predict_particles(outputs[0], outputs[1], outputs[2], batch.X, batch.mask)
            acc.update(batch.target_cls, pred.cls, batch.target_p4, pred.p4, batch.mask, batch.X[..., 0])
    all_reduce(sums, ctx.world_size)
    if ctx.world_size > 1:  # sync
        gathered: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(gathered, acc)
        acc.merge(gathered)
    module.train()
    n_el, n_p = max(sums[-2].item(), 1.0), max(sums[-1].item(), 1.0)
    out: dict[str, Any] = {
        name: sums[i].item() / (n_p if name.startswith("Regression") else n_el)
        for i, name in enumerate(names)
    }
    out["Total"] = sum(out[n] for n in names)
    out.update(acc.summary(ctx.class_names, ctx.data.schema.element_types))
    return out


def _broadcast_decision(ctx: Context, decision: str) -> str:
    code = torch.tensor([DECISIONS.index(decision)], dtype=torch.int64)
    if ctx.world_size > 1:  # sync
        dist.broadcast(code, src=0)
    return DECISIONS[int(code.item())]


def checkpoint_state(
    ctx: Context,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    step: int,
    pos: Position,
    best: float | None,
) -> dict[str, Any]:
    rng = rng_state()
    if ctx.world_size > 1:  # sync: every rank's RNG state, so that dropout resumes exactly
        states: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(states, rng)
    else:
        states = [rng]
    return {
        "format": 1,
        "step": step,
        "position": {"epoch": pos.epoch, "batch": pos.batch},
        "model": ctx.module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "sampler": ctx.data.train_sampler.state_dict()
        if hasattr(ctx.data.train_sampler, "state_dict")
        else None,
        "rng": states,
        "world_size": ctx.world_size,
        "spec": ctx.spec.as_dict(),
        "history": ctx.history,
        "best_val_loss": best,
    }


def write_checkpoint(ctx: Context, state: dict[str, Any], step: int) -> Path | None:
    if not ctx.is_main:
        return None
    return ckpt.save(ctx.request.run_dir, step, state, ctx.cfg.train.keep_checkpoints)


def _progress(ctx: Context, start: int, total: int) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    enabled = ctx.is_main and not ctx.request.quiet and ctx.cfg.train.progress
    progress = Progress(
        TextColumn("train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=err,
        disable=not enabled,
        transient=False,
    )
    task = progress.add_task("train", total=total, completed=start, info="")
    return progress, task


def setup_rank(request: TrainRequest) -> tuple[Context, Any]:
    from mlpfctl.backends import select_backend
    from mlpfctl.launch.runenv import RunEnv

    cfg = request.config
    env = RunEnv.from_env()
    backend = select_backend(cfg.run.backend)
    device = backend.setup_process(env.local_rank)
    if env.world_size > 1 and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", env.master_addr)
        os.environ.setdefault("MASTER_PORT", str(env.master_port))
        dist.init_process_group(
            backend.dist_backend,
            rank=env.rank,
            world_size=env.world_size,
            init_method=f"tcp://{env.master_addr}:{env.master_port}",
        )
    seed_everything(cfg.run.seed)
    data = DataStreams(cfg, env.rank, env.world_size)
    data.pad_buckets = backend.padding_buckets()
    spec = spec_for(cfg.model, data.schema, data.train)
    module = backend.prepare_model(build_model(spec).to(device), device)
    if cfg.train.compile:
        compile_model(module)
    model: nn.Module = module
    if env.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    dtype = backend.autocast_dtype(device) if cfg.train.amp else None
    peak = backend.device_peak_flops(
        device, "bf16" if dtype == torch.bfloat16 else "fp16" if dtype == torch.float16 else "fp32"
    )
    ctx = Context(
        request=request,
        cfg=cfg,
        rank=env.rank,
        world_size=env.world_size,
        device=device,
        autocast_dtype=dtype,
        model=model,
        module=module,
        spec=spec,
        weights=loss_weights(cfg),
        class_names=data.schema.class_names,
        peak_flops=peak,
        backend=backend,
        data=data,
    )
    return ctx, backend


def _write_run_files(ctx: Context, lr: float, factor: float) -> None:
    run_dir = ctx.request.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, to_toml(ctx.cfg))
    info = {
        "spec": ctx.spec.as_dict(),
        "parameters": count_parameters(ctx.module),
        "world_size": ctx.world_size,
        "backend": ctx.backend.name,
        "device": str(ctx.device),
        "lr": lr,
        "lr_scale": factor,
        "autocast": str(ctx.autocast_dtype) if ctx.autocast_dtype else None,
    }
    atomic_write_text(run_dir / MODEL_FILE, json.dumps(info, indent=2) + "\n")


def run_rank(request: TrainRequest) -> TrainResult:
    """Train on this process's rank; returns the result (meaningful on rank 0)."""
    ctx, _backend = setup_rank(request)
    try:
        return _train(ctx)
    finally:
        if ctx.world_size > 1 and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def _train(ctx: Context) -> TrainResult:
    cfg, tcfg = ctx.cfg, ctx.cfg.train
    lr, factor = scaled_lr(cfg, ctx.world_size)
    optimizer = build_optimizer(ctx.model.parameters(), tcfg, lr)
    scheduler = build_scheduler(optimizer, tcfg)
    scaler = torch.amp.GradScaler(ctx.device.type) if ctx.autocast_dtype == torch.float16 else None
    step, pos, best, last_ckpt = 0, Position(), None, None

    if ctx.request.resume is not None:
        last_ckpt, state = ckpt.load_latest(ctx.request.resume)
        with ckpt.restoring(last_ckpt):  # a state that does not fit this run is a user error
            ctx.module.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            _rebase_schedule(scheduler, optimizer, tcfg, lr)
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            step = int(state["step"])
            saved_world = int(state.get("world_size", ctx.world_size))
            pos = Position(**state["position"])
            if saved_world != ctx.world_size:
                # Another rank count (RASDA, rescaled jobs): keep the number of global batches consumed.
                pos = Position(pos.epoch, pos.batch * saved_world // ctx.world_size)
            ctx.history = list(state.get("history", []))
            best = state.get("best_val_loss")
            rngs = state["rng"]
            set_rng_state(rngs[ctx.rank % len(rngs)])

    log = RunLogger(ctx.request.run_dir, enabled=ctx.is_main)
    if ctx.is_main:
        _write_run_files(ctx, lr, factor)
        if not ctx.request.quiet:
            err.print(
                f"model {ctx.spec.type}: {count_parameters(ctx.module):,} parameters; "
                f"{ctx.world_size} rank(s) "
                f"on {ctx.backend.name} ({ctx.device}); lr {lr:.3g} (x{factor:.3g} scaling); "
                f"{'resuming at step ' + str(step) if step else 'from scratch'}"
            )
    status = "completed"
    early: list[float] = []
    rates: list[float] = []
    window: dict[str, Any] = {"events": 0.0, "elements": 0.0, "flops": 0.0, "time": 0.0, "loss": {}}
    progress, task = _progress(ctx, step, tcfg.steps)

    def save(now: int) -> Path | None:
        state = checkpoint_state(ctx, optimizer, scheduler, scaler, now, pos, best)
        return write_checkpoint(ctx, state, now)

    try:
        with catch_stop_signals() as stop, progress:
            while step < tcfg.steps and status == "completed":
                batches = ctx.data.epoch_batches(pos.epoch)
                if pos.batch >= len(batches):
                    pos = Position(pos.epoch + 1, 0)
                    continue
                loader = ctx.data.loader(ctx.data.train, batches[pos.batch :])
                t_last = time.perf_counter()
                group: list[Any] = []  # micro-batches of one optimiser step (train.grad_accum)
                group_counts = torch.zeros(4, dtype=torch.float64)
                for batch in loader:
                    counts = torch.tensor(
                        [
                            batch.num_elements,
                            float((batch.target_cls != 0).sum()),
                            batch.num_events,
                            1.0 if stop.set else 0.0,
                        ],
                        dtype=torch.float64,
                    )
                    all_reduce(counts, ctx.world_size)  # sync
                    if counts[3].item() > 0:
                        last_ckpt = save(step) or last_ckpt  # pos excludes a half-gathered group
                        status = "checkpointed"
                        if ctx.world_size > 1:
                            # no rank exits (3) before rank 0's checkpoint is on disk: srun
                            # --kill-on-bad-exit and torchrun kill the others at the first exit
                            dist.barrier()
                        break
                    group.append(batch)
                    group_counts += counts
                    # A step never spans two epochs: the epoch's last batches may make a shorter group.
                    if len(group) < tcfg.grad_accum and pos.batch + len(group) < len(batches):
                        continue
                    batch, counts = group, group_counts
                    group, group_counts = [], torch.zeros(4, dtype=torch.float64)
                    losses = train_step(ctx, batch, optimizer, scheduler, scaler, counts)
                    step += 1
                    pos = Position(pos.epoch, pos.batch + len(batch))
                    _check_divergence(losses["Total"], early, tcfg.explode_factor, step)
                    ctx.backend.synchronize(ctx.device)
                    now = time.perf_counter()
                    window["time"] += now - t_last  # data loading + step; validation excluded
                    _accumulate(window, ctx, batch, counts, losses)
                    if step % tcfg.log_every == 0 or step == tcfg.steps:
                        rate = _flush_window(window, ctx, log, step, optimizer)
                        if rate is not None and step > tcfg.log_every:
                            rates.append(rate)
                    progress.update(task, completed=step, info=f"loss {losses['Total']:.4g}")
                    if step % tcfg.val_every == 0 or step == tcfg.steps:
                        metrics = validate(ctx, step)
                        record = {
                            "step": float(step),
                            **{k: v for k, v in metrics.items() if k != "confusion"},
                            "val_loss": metrics["Total"],  # the name HPO objectives report
                        }
                        ctx.history.append(record)
                        log.write("valid", step, metrics)
                        best = metrics["Total"] if best is None else min(best, metrics["Total"])
                        decision = "continue"
                        if ctx.is_main and ctx.request.hooks is not None:
                            decision = ctx.request.hooks.on_validation(step, dict(record))
                            if decision not in DECISIONS:
                                raise RuntimeFailure(
                                    f"hook returned {decision!r}", f"return one of {DECISIONS}"
                                )
                        decision = _broadcast_decision(ctx, decision)
                        if decision != "continue":
                            status = "pruned" if decision == "prune" else "stopped"
                            if decision == "stop":
                                last_ckpt = save(step) or last_ckpt
                            break
                    if step % tcfg.checkpoint_every == 0 or step == tcfg.steps:
                        last_ckpt = save(step) or last_ckpt
                    t_last = time.perf_counter()
                    if step >= tcfg.steps:
                        break
                else:
                    pos = Position(pos.epoch + 1, 0)
    finally:
        log.close()

    val = ctx.history[-1]["Total"] if ctx.history else None
    result = TrainResult(
        run_dir=ctx.request.run_dir,
        status=status,
        step=step,
        val_loss=val,
        best_val_loss=best,
        history=ctx.history,
        checkpoint=last_ckpt,
        events_per_s=statistics.median(rates) if rates else None,
    )
    if ctx.is_main:
        atomic_write_text(ctx.request.run_dir / RESULT_FILE, json.dumps(result.as_dict(), indent=2) + "\n")
    return result


def _rebase_schedule(scheduler: Any, optimizer: torch.optim.Optimizer, tcfg: Any, lr: float) -> None:
    """After loading a checkpoint: this run's schedule horizon and (rescaled) peak LR apply.

    HPO extends ``steps`` on the same ``schedule_steps``; a resume on another number of ranks
    rescales the LR. With an unchanged config this reproduces the saved LR bit for bit.
    """
    schedule = Schedule(
        tcfg.schedule, tcfg.schedule_steps or tcfg.steps, tcfg.warmup_steps, tcfg.min_lr_ratio
    )
    scheduler.lr_lambdas[0] = schedule
    scheduler.base_lrs = [lr for _ in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
        group["lr"] = lr * schedule(scheduler.last_epoch)


def train_step(
    ctx: Context,
    batch: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    counts: torch.Tensor,
) -> dict[str, float]:
    """One optimiser step on a batch, or on a list of micro-batches (gradient accumulation).

    ``counts`` are the global counts of all of them: every micro-batch's loss is divided by the
    same global denominators, so the summed gradients equal the gradient of the whole global batch.
    """
    micro = batch if isinstance(batch, list) else [batch]
    optimizer.zero_grad(set_to_none=True)
    parts: list[dict[str, torch.Tensor]] = []
    for i, part in enumerate(micro):
        part = part.to(ctx.device, non_blocking=True)
        last = i == len(micro) - 1
        # DDP all-reduces the gradients once, after the last micro-batch's backward.
        sync: Any = contextlib.nullcontext() if last or ctx.world_size == 1 else ctx.model.no_sync()  # type: ignore[operator]
        with sync:
            with _autocast(ctx):
                outputs = ctx.model(part.X, part.mask)
            sums = loss_sums(outputs, part.X, part.mask, part.target_cls, part.target_p4, ctx.weights)
            # Global counts / world size: DDP's gradient average then equals the global-batch gradient.
            losses = reduce_loss(sums, counts[0].item() / ctx.world_size, counts[1].item() / ctx.world_size)
            if scaler is not None:
                scaler.scale(losses["Total"]).backward()
            else:
                losses["Total"].backward()  # type: ignore[no-untyped-call]
        parts.append({name: value.detach() for name, value in losses.items()})
    losses = {name: torch.stack([p[name] for p in parts]).sum() for name in parts[0]}
    if scaler is not None:
        scaler.unscale_(optimizer)
    if ctx.cfg.train.grad_clip > 0:
        nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.cfg.train.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    values = torch.stack([losses[n].detach().float().cpu() for n in (*TERM_NAMES, "Total")])
    all_reduce(values, ctx.world_size)  # sync: per-rank parts of the global loss add up
    return {n: float(v) / ctx.world_size for n, v in zip((*TERM_NAMES, "Total"), values, strict=True)}


def _check_divergence(total: float, early: list[float], factor: float, step: int) -> None:
    if not math.isfinite(total):
        raise DivergedError(
            f"training diverged: the loss is {total} at step {step}",
            "lower train.lr, enable train.grad_clip, or check the input data for NaN/inf",
        )
    if len(early) < _EXPLODE_WINDOW:
        early.append(total)
        return
    reference = statistics.median(early)
    if reference > 0 and total > factor * reference:
        raise DivergedError(
            f"training diverged: the loss {total:.4g} at step {step} exceeds {factor:g} x its early median "
            f"{reference:.4g}",
            "lower train.lr or raise train.explode_factor",
        )


def _accumulate(
    window: dict[str, Any], ctx: Context, batch: Any, counts: torch.Tensor, losses: dict[str, float]
) -> None:
    window["events"] += counts[2].item()
    window["elements"] += counts[0].item()
    for part in batch if isinstance(batch, list) else [batch]:
        lengths = part.mask.sum(dim=1).tolist()
        window["flops"] += train_flops(ctx.module, ctx.spec, lengths) * ctx.world_size
    for k, v in losses.items():
        window["loss"].setdefault(k, []).append(v)


def _flush_window(
    window: dict[str, Any], ctx: Context, log: RunLogger, step: int, optimizer: torch.optim.Optimizer
) -> float | None:
    elapsed = window["time"]
    record: dict[str, Any] = {k: statistics.fmean(v) for k, v in window["loss"].items()}
    record["lr"] = optimizer.param_groups[0]["lr"]
    rate = window["events"] / elapsed if elapsed > 0 else None
    if rate is not None:
        record["events_per_s"] = rate
        record["elements_per_s"] = window["elements"] / elapsed
        record["tflops"] = window["flops"] / elapsed / 1e12
        utilisation = mfu(window["flops"], elapsed, ctx.peak_flops, ctx.world_size)
        if utilisation is not None:
            record["mfu"] = utilisation
    log.write("train", step, record)
    window.update(events=0.0, elements=0.0, flops=0.0, time=0.0, loss={})
    return rate


def iter_batches(ctx: Context, dataset: Any) -> Iterator[Any]:
    """Every batch of ``dataset`` on this rank (evaluation helper)."""
    yield from ctx.data.loader(dataset, ctx.data.valid_batches(dataset, None))
