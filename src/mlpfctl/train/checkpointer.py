"""When to checkpoint, what a checkpoint holds, and resuming from one.

The file format, its checksum and loading belong to ``mlpfctl.train.checkpoint``; this part
assembles the state (model, optimizer, schedule, scaler, data position, every rank's RNG states
and intra-op thread count, validation history) and puts it back.

Exact resume needs everything a step's arithmetic depends on: the RNG streams (host and the
device's generator, via the backend adapter) and the number of intra-op threads, because CPU
kernels (GEMM, reductions) split their sums by thread: the same step on 1 and 2 threads gives
different low bits in about half of the gradients. A resumed rank therefore runs with the thread
count the interrupted run used.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlpfctl.console import err
from mlpfctl.train import checkpoint as ckpt
from mlpfctl.train.context import Context
from mlpfctl.train.data_streams import Position
from mlpfctl.train.step import Optimization
from mlpfctl.train.types import due
from mlpfctl.train.validator import Validator

FORMAT = 1


def rng_state(ctx: Context) -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    device = ctx.backend.device_rng_state(ctx.device)
    if device is not None:
        state["device"] = device
    return state


def set_rng_state(ctx: Context, state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "device" in state:
        ctx.backend.set_device_rng_state(ctx.device, state["device"])
    elif "cuda" in state and ctx.device.type == "cuda":  # checkpoints written before "device"
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    def __init__(self, ctx: Context, opt: Optimization, validator: Validator) -> None:
        self.ctx = ctx
        self.opt = opt
        self.validator = validator
        self.every = ctx.cfg.train.checkpoint_every
        self.last_step = ctx.cfg.train.steps
        self.saved_at: int | None = None
        self.path: Path | None = None  # the newest checkpoint of this run (rank 0)

    def should_save(self, step: int) -> bool:
        return due(step, self.every, self.last_step)

    def state(self, step: int, pos: Position) -> dict[str, Any]:
        """The checkpoint state on rank 0 (every rank must call: the RNG states are gathered)."""
        ctx = self.ctx
        own = {"rng": rng_state(ctx), "threads": torch.get_num_threads()}
        ranks = ctx.dist.all_gather_object(own)  # sync: dropout resumes exactly on every rank
        sampler = ctx.data.train_sampler
        return {
            "format": FORMAT,
            "step": step,
            "position": {"epoch": pos.epoch, "batch": pos.batch},
            "model": ctx.module.state_dict(),
            **self.opt.state_dict(),
            "sampler": sampler.state_dict() if hasattr(sampler, "state_dict") else None,
            "rng": [r["rng"] for r in ranks],
            "threads": [r["threads"] for r in ranks],
            "world_size": ctx.world_size,
            "spec": ctx.spec.as_dict(),
            **self.validator.state_dict(),
        }

    def save(self, step: int, pos: Position) -> Path | None:
        """Write the checkpoint of ``step`` (rank 0); every rank calls this at the same step."""
        state = self.state(step, pos)
        self.saved_at = step
        if not self.ctx.is_main:
            return None
        self.path = ckpt.save(self.ctx.request.run_dir, step, state, self.ctx.cfg.train.keep_checkpoints)
        return self.path

    def restore(self, target: Path) -> tuple[int, Position]:
        """Load the newest valid checkpoint of ``target``; return its step and data position."""
        ctx = self.ctx
        self.path, state = ckpt.load_latest(target)
        with ckpt.restoring(self.path):  # a state that does not fit this run is a user error
            ctx.module.load_state_dict(state["model"])
            self.opt.load_state_dict(state, ctx.cfg.train)
            self.validator.load_state_dict(state)
            step = int(state["step"])
            saved_world = int(state.get("world_size", ctx.world_size))
            pos = Position(**state["position"]).rescaled(saved_world, ctx.world_size)
            rngs = state["rng"]
            set_rng_state(ctx, rngs[ctx.rank % len(rngs)])
            threads = state.get("threads")
        if threads and saved_world == ctx.world_size:
            self._restore_threads(int(threads[ctx.rank]))
        self.saved_at = step
        return step, pos

    def _restore_threads(self, saved: int) -> None:
        current = torch.get_num_threads()
        if saved == current:
            return
        torch.set_num_threads(saved)
        if self.ctx.is_main and not self.ctx.request.quiet:
            err.print(
                f"resuming with {saved} intra-op thread(s) per rank, as the interrupted run "
                f"(this process would use {current}), so that the result is bit-identical"
            )
