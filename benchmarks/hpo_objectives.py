"""Objectives for the HPO benchmarks (``--objective benchmarks.hpo_objectives:NAME``).

``mfhartmann6``: the multi-fidelity Hartmann-6 function of mfhpo-benchmark-api (offline, synthetic).
The step budget is the fidelity z (11..100); the objective reports the loss every 11 fidelity
units, so SHA/Hyperband/median see learning curves and ASHA pieces resume where the parent
stopped (the function is stateless: resuming means continuing at higher fidelity).
``trivial``: returns at once, for measuring the machinery itself (trials/s, storage latency).
"""

from __future__ import annotations

import functools
import os
from typing import Any

FIDELITY_STEP = 11


@functools.cache
def _hartmann(seed: int) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # optional real-data extras (jahs, lcbench) absent
        from benchmark_apis import MFHartmann

    return MFHartmann(dim=6, seed=seed)


def mfhartmann6(ctx: Any) -> float:
    bench = _hartmann(int(os.environ.get("HPO_BENCH_SEED", "0")))
    config = {f"x{i}": float(ctx.params[f"x{i}"]) for i in range(6)}
    loss = float("nan")
    for z in range(ctx.start_step + FIDELITY_STEP, ctx.budget + 1, FIDELITY_STEP):
        loss = float(bench(eval_config=config, fidels={"z0": z})["loss"])
        ctx.report(z, loss)
    return loss


def trivial(ctx: Any) -> float:
    return float(ctx.params["x"]) ** 2
