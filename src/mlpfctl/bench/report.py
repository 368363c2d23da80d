"""``mlpfctl scale-bench report DIR``: tables, CSV and PNG plots from benchmark records."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpfctl.atomic import atomic_write_bytes, atomic_write_text
from mlpfctl.bench.records import BenchRecord, load_records

# Columns per record kind: (header, metric key, format)
TRAIN_COLUMNS = [
    ("world", "world_size", "{:.0f}"),
    ("events/s", "events_per_s", "{:.1f}"),
    ("elements/s", "elements_per_s", "{:.0f}"),
    ("step p50 [s]", "step_s_p50", "{:.4f}"),
    ("step p90 [s]", "step_s_p90", "{:.4f}"),
    ("data share", "data_share", "{:.1%}"),
    ("comm share", "comm_share", "{:.1%}"),
    ("speedup", "speedup", "{:.2f}"),
    ("efficiency", "efficiency", "{:.1%}"),
    ("MFU", "mfu", "{:.2%}"),
    ("peak mem [MiB]", "peak_memory_mib", "{:.0f}"),
    ("energy [J/event]", "energy_j_per_event", "{:.3f}"),
]
HPO_COLUMNS = [
    ("workers", "workers", "{:.0f}"),
    ("wall [s]", "wall_s", "{:.1f}"),
    ("to target [s]", "time_to_target_s", "{:.1f}"),
    ("trials", "trials", "{:.0f}"),
    ("promotions", "promotions", "{:.0f}"),
    ("resumed", "resumed_from_checkpoint", "{:.0f}"),
    ("steps", "steps_consumed", "{:.0f}"),
    ("utilisation", "utilisation", "{:.0%}"),
    ("best loss", "best_value", "{:.4f}"),
    ("speedup", "speedup", "{:.2f}"),
    ("efficiency", "efficiency", "{:.1%}"),
]
BATCH_COLUMNS = [
    ("optimizer", "optimizer", "{}"),
    ("LR rule", "lr_scaling", "{}"),
    ("global batch", "global_batch", "{:.0f}"),
    ("local x accum", "split", "{}"),
    ("steps", "steps", "{:.0f}"),
    ("warm-up", "warmup_steps", "{:.0f}"),
    ("LR", "lr", "{:.3g}"),
    ("val loss", "val_loss", "{:.4f}"),
    ("±", "val_loss_err", "{:.4f}"),
    ("gap", "gap", "{:+.1%}"),
    ("events/s", "events_per_s", "{:.1f}"),
]
BATCH_CHOICE_COLUMNS = [
    ("optimizer", "optimizer", "{}"),
    ("LR rule", "lr_scaling", "{}"),
    ("largest batch within tolerance", "largest_batch", "{:.0f}"),
    ("gap there", "gap", "{:+.1%}"),
    ("val loss", "val_loss", "{:.4f}"),
    ("events/s", "events_per_s", "{:.1f}"),
    ("tolerance", "tolerance", "{:.1%}"),
]
LAW_COLUMNS = [
    ("train events", "train_events", "{:.0f}"),
    ("val loss", "val_loss", "{:.4f}"),
    ("val loss err", "val_loss_err", "{:.4f}"),
    ("fit", "fit", "{:.4f}"),
]


@dataclass
class Table:
    kind: str
    columns: list[tuple[str, str, str]]
    rows: list[dict[str, Any]]


def _fmt(fmt: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def add_speedup(
    rows: list[dict[str, Any]], x_key: str, time_key: str | None, rate_key: str | None, mode: str
) -> None:
    """Speedup and parallel efficiency relative to the smallest point.

    strong scaling / HPO: speedup = T(n_min) / T(n) (or rate ratio); weak scaling: the work grows
    with n, so speedup = rate(n) / rate(n_min) and efficiency = speedup * n_min / n for both.
    """
    rows.sort(key=lambda r: r[x_key])
    if not rows:
        return
    base = rows[0]
    n0 = base[x_key]
    for row in rows:
        n = row[x_key]
        if rate_key and base.get(rate_key):
            speedup = row[rate_key] / base[rate_key]
        elif time_key and row.get(time_key):
            speedup = base[time_key] / row[time_key]
        else:
            speedup = math.nan
        row["speedup"] = speedup
        row["ideal_speedup"] = n / n0
        row["efficiency"] = speedup * n0 / n if n else math.nan
        row["mode"] = mode


def build_tables(records: list[BenchRecord]) -> list[Table]:
    groups: dict[str, list[BenchRecord]] = defaultdict(list)
    for record in records:
        groups[record.kind].append(record)
    tables = []
    for kind in sorted(groups):
        rows = [{**r.point, **r.metrics, "backend": r.backend, "device": r.device} for r in groups[kind]]
        if kind.startswith("train"):
            add_speedup(rows, "world_size", None, "events_per_s", kind.split("-", 1)[-1])
            tables.append(Table(kind, TRAIN_COLUMNS, rows))
        elif kind == "hpo":
            add_speedup(rows, "workers", "wall_s", None, "hpo")
            tables.append(Table(kind, HPO_COLUMNS, rows))
        elif kind == "scaling-law":
            rows.sort(key=lambda r: r["train_events"])
            tables.append(Table(kind, LAW_COLUMNS, rows))
        elif kind == "batch":
            tables.extend(batch_tables(rows, float(groups[kind][0].settings.get("tolerance", 0.02))))
    return tables


def batch_tables(rows: list[dict[str, Any]], tolerance: float) -> list[Table]:
    """Per point (mean over repeats, gap to the smallest batch) and the largest batch per rule."""
    from mlpfctl.bench.batch_scan import summarise

    points, choices = summarise(rows, tolerance)
    for point in points:
        point["split"] = f"{point['local_batch']} x {point['grad_accum']}"
        point["tolerance"] = tolerance
    return [Table("batch", BATCH_COLUMNS, points), Table("batch-largest", BATCH_CHOICE_COLUMNS, choices)]


def to_csv(table: Table) -> str:
    keys: list[str] = []
    for row in table.rows:
        keys.extend(k for k in row if k not in keys and not isinstance(row[k], dict | list))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for row in table.rows:
        writer.writerow(row)
    return buffer.getvalue()


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def plot_table(table: Table, directory: Path, fit: dict[str, Any] | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    if table.kind.startswith("train") or table.kind == "hpo":
        x_key = "workers" if table.kind == "hpo" else "world_size"
        xs = [r[x_key] for r in table.rows]
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        if table.kind == "hpo":
            axes[0].plot(xs, [r.get("wall_s") for r in table.rows], "o-", label="campaign")
            if any(r.get("time_to_target_s") for r in table.rows):
                axes[0].plot(xs, [r.get("time_to_target_s") for r in table.rows], "s--", label="to target")
            axes[0].set_ylabel("wall-clock [s]")
            axes[0].legend()
        else:
            axes[0].plot(xs, [r.get("events_per_s") for r in table.rows], "o-")
            axes[0].set_ylabel("events / s")
        axes[1].plot(xs, [r.get("speedup") for r in table.rows], "o-", label="measured")
        axes[1].plot(xs, [r.get("ideal_speedup") for r in table.rows], "k--", label="ideal")
        axes[1].set_ylabel("speedup")
        axes[1].legend()
        axes[2].plot(xs, [100 * r.get("efficiency", math.nan) for r in table.rows], "o-")
        axes[2].axhline(100, color="k", linestyle="--")
        axes[2].set_ylabel("parallel efficiency [%]")
        for ax in axes:
            ax.set_ylim(bottom=0)  # a zoomed axis would make noise look like scaling
            ax.set_xlabel(x_key.replace("_", " "))
            ax.set_xticks(xs)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{table.kind} ({table.rows[0].get('backend', '')} {table.rows[0].get('device', '')})")
        path = directory / f"{table.kind}.png"
        atomic_write_bytes(path, _png(fig))
        plt.close(fig)
        written.append(path)
    elif table.kind == "batch":
        written.append(plot_batch(table, directory))
    elif table.kind == "scaling-law":
        xs = [r["train_events"] for r in table.rows]
        ys = [r["val_loss"] for r in table.rows]
        errs = [r.get("val_loss_err") or 0.0 for r in table.rows]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.errorbar(xs, ys, yerr=errs, fmt="o", label="measured")
        if fit:
            import numpy as np

            grid = np.geomspace(min(xs), max(xs) * 4, 100)
            curve = fit["a"] * grid ** (-fit["b"]) + fit["c"]
            ax.plot(grid, curve, "-", label=f"L = {fit['a']:.3g} D^-{fit['b']:.3f} + {fit['c']:.3f}")
        ax.set_xscale("log")
        ax.set_xlabel("training events D")
        ax.set_ylabel("validation loss")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        path = directory / "scaling-law.png"
        atomic_write_bytes(path, _png(fig))
        plt.close(fig)
        written.append(path)
    return written


def plot_batch(table: Table, directory: Path) -> Path:
    """Validation loss (and its gap) and throughput against the global batch, one line per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for optimizer, rule in dict.fromkeys((r["optimizer"], r["lr_scaling"]) for r in table.rows):
        rows = [r for r in table.rows if r["optimizer"] == optimizer and r["lr_scaling"] == rule]
        xs = [r["global_batch"] for r in rows]
        label = f"{optimizer}, LR {rule}"
        style = "o-" if optimizer == "adamw" else "s--"
        axes[0].errorbar(
            xs,
            [r["val_loss"] for r in rows],
            yerr=[r.get("val_loss_err") or 0 for r in rows],
            fmt=style,
            label=label,
        )
        axes[1].plot(xs, [100 * (r.get("gap") or 0) for r in rows], style, label=label)
        axes[2].plot(xs, [r.get("events_per_s") for r in rows], style, label=label)
    tolerance = 100 * float(table.rows[0].get("tolerance", 0.02)) if table.rows else 2.0
    axes[1].axhline(tolerance, color="k", linestyle=":", label="tolerance")
    axes[1].axhline(0, color="k", linewidth=0.5)
    batches = sorted({r["global_batch"] for r in table.rows})
    labels = ["validation loss", "gap to the smallest batch [%]", "events / s"]
    for ax, label in zip(axes, labels, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("global batch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[2].set_ylim(bottom=0)
    axes[0].legend(fontsize=7)
    fig.suptitle("batch-size scan: generalisation gap per LR-scaling rule and optimiser")
    path = directory / "batch.png"
    atomic_write_bytes(path, _png(fig))
    plt.close(fig)
    return path


def write_report(directory: Path) -> tuple[list[Table], list[Path]]:
    """Build tables from the records in ``directory`` and write CSV + PNG files next to them."""
    import json

    records = load_records(directory)
    tables = build_tables(records)
    written: list[Path] = []
    for table in tables:
        fit = None
        if table.kind == "scaling-law":
            fit_path = directory / "scaling-law-fit.json"
            if fit_path.is_file():
                fit = json.loads(fit_path.read_text(encoding="utf-8"))
                for row in table.rows:
                    row["fit"] = fit["a"] * row["train_events"] ** (-fit["b"]) + fit["c"]
        csv_path = directory / f"{table.kind}.csv"
        atomic_write_text(csv_path, to_csv(table))
        written.append(csv_path)
        written.extend(plot_table(table, directory, fit))
    return tables, written


def render_tables(tables: list[Table]) -> Any:
    from rich.console import Group
    from rich.table import Table as RichTable

    out = []
    for table in tables:
        rich_table = RichTable(title=f"scale-bench: {table.kind}")
        present = [c for c in table.columns if any(r.get(c[1]) is not None for r in table.rows)]
        for header, _, _ in present:
            rich_table.add_column(header, justify="right")
        for row in table.rows:
            rich_table.add_row(*[_fmt(fmt, row.get(key)) for _, key, fmt in present])
        out.append(rich_table)
    return Group(*out)
