"""Step timing done right.

* warm-up steps are excluded (allocator growth, autotuning, lazy initialisation);
* the device is synchronised around timed regions (otherwise a GPU timer measures kernel launches);
* data loading is timed separately from compute;
* results are medians and percentiles over many steps, never a mean over a whole epoch.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class StepTimes:
    """Per-step wall times (seconds) after warm-up, split into data loading and compute."""

    warmup: int
    data_s: list[float] = field(default_factory=list)
    compute_s: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    elements: list[int] = field(default_factory=list)
    _seen: int = 0

    def record(self, data_s: float, compute_s: float, events: int, elements: int) -> None:
        self._seen += 1
        if self._seen <= self.warmup:
            return
        self.data_s.append(data_s)
        self.compute_s.append(compute_s)
        self.events.append(events)
        self.elements.append(elements)

    @property
    def steps(self) -> int:
        return len(self.compute_s)

    def step_s(self) -> list[float]:
        return [d + c for d, c in zip(self.data_s, self.compute_s, strict=True)]

    def summary(self) -> dict[str, float]:
        if not self.compute_s:
            return {"steps": 0}
        steps = self.step_s()
        total = sum(steps)
        return {
            "steps": float(self.steps),
            "step_s_p50": statistics.median(steps),
            "step_s_p90": percentile(steps, 90),
            "compute_s_p50": statistics.median(self.compute_s),
            "data_s_p50": statistics.median(self.data_s),
            "data_share": sum(self.data_s) / total if total > 0 else math.nan,
            "events_per_s": sum(self.events) / total if total > 0 else math.nan,
            "elements_per_s": sum(self.elements) / total if total > 0 else math.nan,
        }


class Stopwatch:
    """``with watch: ...`` measures a region, calling ``sync()`` before reading the clock."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync or (lambda: None)
        self.elapsed = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self.sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sync()
        self.elapsed = time.perf_counter() - self._start
