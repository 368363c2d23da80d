"""Learning curves for simulated configurations, drawn from the recorded ones.

The simulator needs each configuration's loss at the decision steps (the rung ladder). A recorded
curve gives them where it was observed (log-step interpolation between validations). Where it
stops (an ASHA configuration that was never promoted, a pruned trial) the curve is continued rung
by rung with a model fitted on the configurations that were observed at both steps:

    loss(next) = a + b * loss(this) + residual,    residual drawn from the fitted ones

so a configuration keeps its rank (as well as the recorded ones kept theirs) and inherits the
observed scatter. Two ways to draw the configurations of a simulated campaign:

* ``bootstrap``: recorded configurations, drawn with replacement, continued as above;
* ``model``: unseen ones from the fitted curve model: the bottom-rung loss from a Gaussian kernel
  density of the recorded ones, then the chain; divergence as often as recorded.

Both keep the sampler's trend by default: a simulated slot draws among the recorded configurations
sampled at the same stage of their campaign (``--no-trend``: from all of them alike).
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from mlpfctl.errors import UsageError
from mlpfctl.hpo.sim_source import RecordedConfig
from mlpfctl.hpo.simulate import SimConfig

DRAWS = ("bootstrap", "model")
_MIN_REGRESSION = 5  # pairs; fewer: keep the slope at 1 and shift by the mean step
TREND_WINDOW = 0.1  # slots draw among configurations sampled within 10 % of the campaign of them


@dataclass(frozen=True)
class Link:
    """loss(ladder[j + 1]) = a + b * loss(ladder[j]) + one of ``residuals``."""

    a: float
    b: float
    residuals: tuple[float, ...]
    pairs: int


class CurvePool:
    def __init__(self, configs: Sequence[RecordedConfig], ladder: Sequence[int]) -> None:
        self.steps = list(ladder)
        first = min((min(c.curve) for c in configs if c.curve), default=None)
        if first is None:
            raise UsageError("no recorded learning curve to draw from", "simulate from a study with trials")
        # Past the longest recorded curve every configuration keeps its loss there: wall time and
        # GPU-hours stay right (they depend on the steps), losses and times to a target do not.
        self.recorded_max = max(max(c.curve) for c in configs if c.curve)
        inside = [step for step in ladder if step <= self.recorded_max]
        self.extrapolated = len(inside) < len(self.steps)
        if self.extrapolated and (not inside or inside[-1] < self.recorded_max):
            inside.append(self.recorded_max)
        self.ladder = inside
        if self.ladder[0] < first:
            raise UsageError(
                f"the recorded learning curves start at step {first}, after the simulated bottom rung "
                f"{self.ladder[0]}",
                f"simulate with --min-resource {first} or more",
            )
        self.known = [self._at_ladder(c) for c in configs]
        self.diverged = [c.diverged_at for c in configs]
        self.positions = [c.position for c in configs]
        self.by_position = sorted((p, i) for i, p in enumerate(self.positions))
        self.links = [self._link(j) for j in range(len(self.ladder) - 1)]
        bottoms = [k[0] for k in self.known if k and k[0] is not None]
        if not bottoms:
            raise UsageError(
                f"no recorded configuration reached the bottom rung (step {self.ladder[0]})",
                "simulate with a lower --min-resource",
            )
        self.bottoms = bottoms
        spread = statistics.pstdev(bottoms) if len(bottoms) > 1 else 0.0
        # Silverman's rule of thumb for the kernel width of the bottom-rung losses.
        self.bandwidth = 1.06 * spread * len(bottoms) ** -0.2
        self.diverge_rate = sum(1 for d in self.diverged if d is not None) / len(configs)

    def _at_ladder(self, config: RecordedConfig) -> list[float | None]:
        steps = sorted(config.curve)
        out: list[float | None] = []
        for step in self.ladder:
            if config.diverged_at is not None and step >= config.diverged_at:
                out.append(None)
            elif step in config.curve:
                out.append(config.curve[step])
            elif steps and steps[0] < step < steps[-1]:
                hi = next(s for s in steps if s > step)
                lo = max(s for s in steps if s < step)
                w = math.log(step / lo) / math.log(hi / lo)
                out.append((1 - w) * config.curve[lo] + w * config.curve[hi])
            else:
                out.append(None)
        return out

    def _link(self, j: int) -> Link:
        pairs: list[tuple[float, float]] = []
        for known in self.known:
            x, y = known[j], known[j + 1]
            if x is not None and y is not None:
                pairs.append((x, y))
        if not pairs:
            reached = max(
                (self.ladder[i] for k in self.known for i, v in enumerate(k) if v is not None),
                default=self.ladder[0],
            )
            raise UsageError(
                f"no recorded learning curve goes from step {self.ladder[j]} to step {self.ladder[j + 1]}",
                f"the curves reach step {reached}: simulate with --max-resource {reached} or less, or from "
                "a study that trained configurations further",
            )
        xs = [p[0] for p in pairs]
        ys = [p[1] for p in pairs]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        b = 1.0
        if len(pairs) >= _MIN_REGRESSION:
            sxx = sum((x - mx) ** 2 for x in xs)
            if sxx > 0:
                # Bounded: a handful of points must not turn the ranking upside down or explode it.
                b = min(1.5, max(0.0, sum((x - mx) * (y - my) for x, y in pairs) / sxx))
        a = my - b * mx
        return Link(a, b, tuple(y - a - b * x for x, y in pairs), len(pairs))

    def _complete(self, values: Sequence[float | None], rng: random.Random) -> dict[int, float] | None:
        """The ladder's values: known ones kept, missing ones continued by the chain; None if no start."""
        if not values or values[0] is None:
            return None
        out = {self.ladder[0]: values[0]}
        previous = values[0]
        for j in range(1, len(self.ladder)):
            known = values[j] if j < len(values) else None
            if known is None:
                link = self.links[j - 1]
                known = link.a + link.b * previous + rng.choice(link.residuals)
            out[self.ladder[j]] = previous = known
        return out

    def draw(self, n: int, rng: random.Random, how: str = "bootstrap", trend: bool = True) -> list[SimConfig]:
        """``n`` configurations for slots 0..n-1.

        With ``trend``, slot i draws among the recorded configurations sampled at about the same
        point of their campaign (within ``TREND_WINDOW`` of i/n): an adaptive sampler (TPE) proposes
        better configurations as a campaign goes on, and ASHA then promotes more of the late ones.
        """
        if how not in DRAWS:
            raise UsageError(f"unknown draw '{how}'", f"available: {', '.join(DRAWS)}")
        out = []
        for slot in range(n):
            i = self._pick((slot + 0.5) / n, rng) if trend else rng.randrange(len(self.known))
            out.append(self._bootstrap(i, rng) if how == "bootstrap" else self._model(i, rng))
        return out

    def _pick(self, where: float, rng: random.Random) -> int:
        lo = bisect.bisect_left(self.by_position, (where - TREND_WINDOW, -1))
        hi = bisect.bisect_right(self.by_position, (where + TREND_WINDOW, len(self.positions)))
        if lo < hi:
            return self.by_position[rng.randrange(lo, hi)][1]
        return min(range(len(self.positions)), key=lambda i: abs(self.positions[i] - where))

    def _bootstrap(self, i: int, rng: random.Random) -> SimConfig:
        diverged = self.diverged[i]
        if diverged is not None and diverged <= self.ladder[0]:
            return SimConfig({}, diverged)
        full = self._complete(self.known[i], rng)
        if full is None:  # observed only between ladder steps: treat as unseen
            return self._model(i, rng)
        # Past the divergence the chain's values are never read (SimConfig.at says None there).
        return SimConfig(self._expand(full), diverged)

    def _expand(self, full: dict[int, float]) -> dict[int, float]:
        """Values at the requested steps: past the recordings, the last recorded step's."""
        return {step: full.get(step, full[self.ladder[-1]]) for step in self.steps}

    def _model(self, i: int, rng: random.Random) -> SimConfig:
        """An unseen configuration near recorded one ``i``: its bottom-rung loss smeared by the kernel."""
        diverged = None
        if rng.random() < self.diverge_rate:
            diverged = rng.choice([d for d in self.diverged if d is not None])
            if diverged <= self.ladder[0]:
                return SimConfig({}, diverged)
        bottom = self.known[i][0]
        if bottom is None:
            bottom = rng.choice(self.bottoms)
        full = self._complete([bottom + rng.gauss(0.0, self.bandwidth)], rng)
        assert full is not None
        return SimConfig(self._expand(full), diverged)
