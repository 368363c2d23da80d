"""CLI start-up time: `mlpfctl --help` and `mlpfctl devices --help` must stay under 0.3 s (median).

Run: .venv/bin/python -m benchmarks.startup [--repeats 21]
Each repeat is a fresh interpreter (what a user or a SLURM script pays). `python -c pass` is
measured side by side as the floor, and each run is checked to import neither torch nor optuna.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.record import median, quantile, write_result

TARGET_S = 0.3
CASES: dict[str, list[str]] = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "mlpfctl --help": [sys.executable, "-m", "mlpfctl", "--help"],
    "mlpfctl devices --help": [sys.executable, "-m", "mlpfctl", "devices", "--help"],
    "mlpfctl --version": [sys.executable, "-m", "mlpfctl", "--version"],
}
_HEAVY_CHECK = (
    "import sys\nfrom mlpfctl.cli.app import run\nrun({args!r})\n"
    "bad = [m for m in ('torch', 'optuna') if m in sys.modules]\nsys.exit(3 if bad else 0)\n"
)


def _time_once(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=21)
    opts = parser.parse_args()

    for args in (["--help"], ["devices", "--help"]):
        code = subprocess.run(
            [sys.executable, "-c", _HEAVY_CHECK.format(args=args)], stdout=subprocess.DEVNULL, check=False
        ).returncode
        if code != 0:
            print(f"FAIL: mlpfctl {' '.join(args)} imports torch or optuna", file=sys.stderr)
            return 1

    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for cmd in CASES.values():  # one warm-up each (page cache, .pyc)
        _time_once(cmd)
    for _ in range(opts.repeats):  # interleaved, so machine noise hits every case alike
        for name, cmd in CASES.items():
            samples[name].append(_time_once(cmd))

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"CLI start-up ({opts.repeats} runs each, fresh interpreter)")
    for col in ("command", "median s", "p10 s", "p90 s", "target"):
        table.add_column(col)
    results = {}
    for name, values in samples.items():
        med = median(values)
        results[name] = {
            "median_s": med,
            "p10_s": quantile(values, 0.1),
            "p90_s": quantile(values, 0.9),
            "runs": len(values),
        }
        target = "" if "floor" in name else ("ok" if med < TARGET_S else f"OVER {TARGET_S}s")
        table.add_row(
            name, f"{med:.3f}", f"{quantile(values, 0.1):.3f}", f"{quantile(values, 0.9):.3f}", target
        )
    Console().print(table)
    path = write_result("startup", results, {"repeats": opts.repeats, "target_s": TARGET_S})
    print(f"wrote {path}", file=sys.stderr)
    return 0 if all(r["median_s"] < TARGET_S for n, r in results.items() if n.startswith("mlpfctl")) else 1


if __name__ == "__main__":
    sys.exit(main())
