"""Run every benchmark in turn (`make bench`); each prints its table and writes its JSON.

Run: .venv/bin/python -m benchmarks.run_all [--only startup,loader]
The whole set takes tens of minutes on a 2-core machine; each module also runs on its own
(`python -m benchmarks.<name> --help` lists its options).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHMARKS = (
    "startup",
    "data_generation",
    "loader",
    "train_throughput",
    "hpo_overhead",
    "hpo_quality",
    "hpo_simulate",
    "submit_render",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    opts = parser.parse_args()
    chosen = [b for b in opts.only.split(",") if b] or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}", file=sys.stderr)
        print(f"hint: choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        print(f"== benchmarks.{name}", file=sys.stderr, flush=True)
        if subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
