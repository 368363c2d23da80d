"""Objectives for the HPO benchmarks (``--objective benchmarks.hpo_objectives:NAME``).

``mfhartmann6``: the multi-fidelity Hartmann-6 function of mfhpo-benchmark-api (offline, synthetic).
The step budget is the fidelity z (11..100); the objective reports the loss every 11 fidelity
units, so SHA/Hyperband/median see learning curves and ASHA pieces resume where the parent
stopped (the function is stateless: resuming means continuing at higher fidelity).
``trivial``: returns at once, for measuring the machinery itself (trials/s, storage latency).
"""

from __future__ import annotations

import dataclasses
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


def _new_hartmann(seed: int) -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
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


# --- simulated workers (benchmarks/hpo_sim.py) ---------------------------------------------------

FIDELITY_OFFSET = 10  # step s of a simulated study is fidelity z = 10 + s: steps 1..90 are z 11..100


@dataclasses.dataclass
class Simulation:
    """What the simulated objective needs: the virtual clock and where full-fidelity values go."""

    clock: Any
    seed: int
    full: int  # R: the step whose value is the true (full-fidelity) loss
    report_steps: tuple[int, ...]  # where a stopping-type pruner may act (its rungs) and R
    seen: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # (budget used, loss)
    bench: Any = None  # this simulation's own MFHartmann6 (a fresh noise stream per study)


SIM: Simulation | None = None


def mfhartmann6_sim(ctx: Any) -> float:
    """MFHartmann6 on the virtual clock: one time unit per step, values at rung steps and the end."""
    sim = SIM
    assert sim is not None, "set benchmarks.hpo_objectives.SIM first (benchmarks/hpo_sim.py)"
    if sim.bench is None:
        sim.bench = _new_hartmann(sim.seed)
    bench = sim.bench
    config = {f"x{i}": float(ctx.params[f"x{i}"]) for i in range(6)}
    steps = sorted({s for s in sim.report_steps if ctx.start_step < s < ctx.budget} | {ctx.budget})
    at, loss = ctx.start_step, float("nan")
    for step in steps:
        sim.clock.work(step - at)
        at = step
        loss = float(bench(eval_config=config, fidels={"z0": FIDELITY_OFFSET + step})["loss"])
        if step == sim.full:
            sim.seen.append((sim.clock.busy(), loss))
        ctx.report(step, loss)
    return loss


class _ClockedReporter:
    """Charges the steps since the last validation to the virtual clock before each report."""

    def __init__(self, inner: Any, sim: Simulation, start: int) -> None:
        self._inner = inner
        self._sim = sim
        self._at = start

    def report(self, step: int, value: float) -> str:
        self._sim.clock.work(step - self._at)
        self._at = step
        if step == self._sim.full:
            self._sim.seen.append((self._sim.clock.busy(), value))
        return str(self._inner.report(step, value))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def mlpf_sim(ctx: Any) -> float | list[float]:
    """Real MLPF training (the project's objective) with its steps charged to the virtual clock.

    The training of a piece runs in full while its worker holds the clock; each validation then
    advances that worker's time by the steps since the previous one, so pruners and promotions
    see the other workers' results exactly as far as they got at that moment.
    """
    from mlpfctl.hpo.objective import mlpf_objective

    sim = SIM
    assert sim is not None, "set benchmarks.hpo_objectives.SIM first (benchmarks/hpo_sim.py)"
    ctx.reporter = _ClockedReporter(ctx.reporter, sim, ctx.start_step)
    return mlpf_objective(ctx)
