"""Output of ``mlpfctl hpo simulate``: Rich table, CSV, JSON and PNG plots."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from mlpfctl.atomic import atomic_write_bytes, atomic_write_text
from mlpfctl.hpo.sim_plan import SimResult

# (header, key, format); a key's "_std" companion is shown as "± std" where present
COLUMNS = [
    ("scheduler", "scheduler", "{}"),
    ("W", "workers", "{:.0f}"),
    ("wall", "wall_s", "dur"),
    ("GPU-h", "gpu_hours", "{:.3g}"),
    ("to target", "time_to_target_s", "dur"),
    ("speed-up", "speedup", "{:.2f}"),
    ("eff.", "efficiency", "{:.0%}"),
    ("util.", "utilisation", "{:.0%}"),
    ("best", "best", "{:.4g}"),
    ("reuse gain", "reuse_gain", "{:.2f}"),
    ("speed-up w/o reuse", "speedup_noreuse", "{:.2f}"),
]
NO_SPREAD = ("efficiency", "utilisation")


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    std = row.get(f"{key}_std") if key not in NO_SPREAD else None
    if fmt != "dur":
        return fmt.format(value) + (f"±{fmt.format(std)}" if std else "")
    return duration_pm(value, std)


def duration_pm(seconds: float, std: float | None, sep: str = "±") -> str:
    """``17.4±2.7 min``: the spread in the value's unit."""
    text = duration(seconds)
    if not std:
        return text
    number, unit = text.split(" ")
    scale = {"s": 1, "min": 60, "h": 3600}[unit]
    return f"{number}{sep}{std / scale:.{1 if unit != 'h' else 2}f} {unit}"


def render(result: SimResult) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    p = result.prepared
    costs = p.costs
    table = Table(
        title=f"hpo simulate: {p.trials} configurations, rungs {p.rungs.budgets}, "
        f"{p.request.repeats} replays (mean ± std)"
    )
    present = [c for c in COLUMNS if any(r.get(c[1]) is not None for r in result.rows)]
    for header, _, _ in present:
        table.add_column(header, justify="left" if header == "scheduler" else "right")
    for row in result.rows:
        table.add_row(*[_cell(row, key, fmt) for _, key, fmt in present])
    target = f"{result.target:.4g}" if result.target is not None else "none"
    reached = min(
        (r["target_reached"] for r in result.rows if r.get("target_reached") is not None), default=0
    )
    notes = Text(
        f"target loss {target} (reached in at least {reached:.0%} of the replays of every row); "
        "reuse gain: wall time without trial reuse (promotions retrain from step 0) / with it; "
        f"per job: start-up {costs.startup_s:.2f} s, resume +{costs.resume_s:.2f} s, "
        f"{costs.step_s:.4g} s/step, dispatch {costs.dispatch_s:.2f} s; launch {costs.launch_s:.1f} s; "
        f"{result.simulated_trials} simulated trials in {result.elapsed_s:.2f} s "
        f"({result.trials_per_s:,.0f}/s)",
        style="dim",
    )
    return Group(table, notes)


def to_csv(rows: list[dict[str, Any]]) -> str:
    import csv

    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write(result: SimResult, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "simulate.json", out_dir / "simulate.csv", out_dir / "simulate.png"]
    atomic_write_text(paths[0], json.dumps(result.as_dict(), indent=2, default=str) + "\n")
    atomic_write_text(paths[1], to_csv(result.rows))
    atomic_write_bytes(paths[2], plot(result))
    return paths


def plot(result: SimResult) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    longest = max((r.get("wall_s") or 0.0) for r in result.rows)
    unit, scale = ("h", 3600.0) if longest >= 7200 else ("min", 60.0) if longest >= 120 else ("s", 1.0)
    for name in dict.fromkeys(r["scheduler"] for r in result.rows):
        rows = sorted((r for r in result.rows if r["scheduler"] == name), key=lambda r: r["workers"])
        xs = [r["workers"] for r in rows]

        def series(
            key: str, factor: float, rows: list[dict[str, Any]] = rows
        ) -> tuple[list[float], list[float]]:
            values = [float(r[key]) * factor if r.get(key) is not None else math.nan for r in rows]
            return values, [(r.get(f"{key}_std") or 0.0) * factor for r in rows]

        ys, es = series("wall_s", 1 / scale)
        line = axes[0].errorbar(xs, ys, yerr=es, fmt="o-", capsize=3, label=f"{name}: campaign")
        colour = line.lines[0].get_color()
        ys, _ = series("time_to_target_s", 1 / scale)
        axes[0].plot(xs, ys, "s--", color=colour, alpha=0.6, label=f"{name}: to target")
        ys, es = series("speedup", 1.0)
        axes[1].errorbar(xs, ys, yerr=es, fmt="o-", capsize=3, color=colour, label=name)
        if any(r.get("speedup_noreuse") for r in rows):
            ys, _ = series("speedup_noreuse", 1.0)
            axes[1].plot(xs, ys, "x:", color=colour, label=f"{name} without trial reuse")
        ys, es = series("gpu_hours", 1.0)
        axes[2].errorbar(xs, ys, yerr=es, fmt="o-", capsize=3, color=colour, label=name)
        ys, es = series("utilisation", 100.0)
        axes[3].errorbar(xs, ys, yerr=es, fmt="o-", capsize=3, color=colour, label=name)
    workers = sorted({r["workers"] for r in result.rows})
    axes[1].plot(workers, workers, "k--", label="ideal")
    labels = [
        f"wall time [{unit}]",
        "speed-up vs 1 worker",
        "GPU-hours (allocated)",
        "worker utilisation [%]",
    ]
    for ax, label in zip(axes, labels, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(workers)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("workers")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    for ax in axes[:2]:
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(ScalarFormatter())
    axes[2].set_ylim(bottom=0)
    axes[3].set_ylim(0, 105)
    p = result.prepared
    fig.suptitle(
        f"simulated HPO campaign: {p.trials} configurations, rungs {p.rungs.budgets}, "
        f"{p.request.repeats} replays per point (error bars: std)"
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
