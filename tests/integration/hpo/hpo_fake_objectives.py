"""Deterministic fake objectives for HPO tests (test inputs, loaded by workers as file.py:function).

``curve``: loss(step) = base(params) + 10/step, reported every 50 steps; it keeps its state (the
step it reached) in ``ctx.checkpoint_dir/state.json`` and, when resumed, checks that the state it
got is the one its parent left (so a test sees any wrong resume as a failed trial). Each call
appends a line to ``ctx.run_dir/calls.jsonl`` (pid, start, budget) for tests to inspect.
``HPO_FAKE_SLEEP`` (seconds per 50 steps) makes trials slow enough to kill a worker mid-trial.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any


def _base(params: dict[str, Any]) -> float:
    x = float(params.get("x", 0.0))
    y = float(params.get("y", 0.0))
    extra = 0.5 * int(params.get("n", 0)) if params.get("kind") == "b" else 0.0
    return (x - 1.0) ** 2 + (y + 2.0) ** 2 + extra


def curve(ctx: Any) -> float:
    sleep = float(os.environ.get("HPO_FAKE_SLEEP", "0"))
    with (ctx.run_dir / "calls.jsonl").open("a") as handle:
        handle.write(json.dumps({"pid": os.getpid(), "start": ctx.start_step, "budget": ctx.budget}) + "\n")
    step = 0
    if ctx.resume_from is not None:
        state = json.loads((ctx.resume_from / "state.json").read_text())
        if state["step"] != ctx.start_step:
            raise RuntimeError(f"resumed at step {state['step']}, expected {ctx.start_step}")
        step = state["step"]
    base = _base(ctx.params)
    while step < ctx.budget:
        step += 50
        if sleep:
            time.sleep(sleep)
        ctx.report(step, base + 10.0 / step)
    (ctx.checkpoint_dir / "state.json").write_text(json.dumps({"step": step, "params": ctx.params}))
    return base + 10.0 / step


def diverging(ctx: Any) -> float:
    """NaN for x > 3 (a diverging trial), otherwise ``curve``."""
    if float(ctx.params["x"]) > 3.0:
        return math.nan
    return curve(ctx)


def two_objectives(ctx: Any) -> list[float]:
    """Loss vs throughput: a trade-off front for NSGA-II."""
    x = float(ctx.params["x"])
    return [(x - 1.0) ** 2, -abs(x) + float(ctx.params["y"])]


def trivial(ctx: Any) -> float:
    return float(ctx.params["x"]) ** 2


def trivial_grid(ctx: Any) -> float:
    """For the grid space: a, b, c; logs each call like ``curve`` (to catch double claims)."""
    with (ctx.run_dir / "calls.jsonl").open("a") as handle:
        handle.write(json.dumps({"pid": os.getpid(), "start": 0, "budget": ctx.budget}) + "\n")
    return (
        {"p": 0.0, "q": 1.0, "r": 2.0, "s": 3.0}[ctx.params["a"]]
        + float(ctx.params["b"])
        + float(ctx.params["c"])
    )
