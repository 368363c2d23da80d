"""Job-script rendering and the SLURM round trip of `mlpfctl submit`.

Run: .venv/bin/python -m benchmarks.submit_render [--repeats 21] [--slurm]
- render: profile load + request checks + Jinja render, in process, per system x kind (median)
- dry run: `mlpfctl submit --system lumi --dry-run -- train` in a fresh interpreter, side by side
  with `python -c pass` (the floor), as a user pays it
- --slurm (needs the local cluster, scripts/local-slurm.sh): sbatch -> COMPLETED of a 2-task
  `check` job (gloo all-reduce through the rendered launcher; dominated by `import torch`)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

from benchmarks.record import median, write_result


def _render_times(repeats: int) -> dict[str, float]:
    from mlpfctl.systems.examples import example_request
    from mlpfctl.systems.profiles import load_profile, profile_files
    from mlpfctl.systems.render import render
    from mlpfctl.systems.request import KINDS

    out: dict[str, float] = {}
    for system in profile_files({}):
        for kind in KINDS:
            samples = []
            for _ in range(repeats):
                start = time.perf_counter()
                profile = load_profile(system, {})
                render(profile, example_request(profile, kind))
                samples.append(time.perf_counter() - start)
            out[f"{system}/{kind}"] = median(samples)
    return out


def _subprocess_median(cmd: list[str], repeats: int, env: dict[str, str]) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
        samples.append(time.perf_counter() - start)
    return median(samples)


def _slurm_round_trip(repeats: int, env: dict[str, str]) -> float:
    samples = []
    for _ in range(repeats):
        cmd = [
            sys.executable,
            "-m",
            "mlpfctl",
            "submit",
            "--json",
            "--gpus-per-node",
            "0",
            "--cpus-per-task",
            "1",
        ]
        start = time.perf_counter()
        record = json.loads(subprocess.check_output([*cmd, "--", "check"], env=env))
        while True:
            info = subprocess.run(
                ["scontrol", "show", "job", "-o", record["job_id"]], capture_output=True, text=True
            )
            if "JobState=COMPLETED" in info.stdout:
                break
            if any(f"JobState={s}" in info.stdout for s in ("FAILED", "CANCELLED", "TIMEOUT")):
                raise SystemExit(f"check job failed: {info.stdout}")
            time.sleep(0.05)
        samples.append(time.perf_counter() - start)
    return median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--slurm", action="store_true", help="also time a real 2-task job (local cluster)")
    opts = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="mlpfctl-bench-submit-")
    env = {
        **os.environ,
        "MLPFCTL_RUN__OUT_DIR": f"{workdir}/runs",
        "MLPFCTL_SUBMIT__REGISTRY": f"{workdir}/jobs.jsonl",
        "MLPFCTL_SUBMIT__TASKS_PER_NODE": "2",
    }
    render_s = _render_times(opts.repeats)
    floor = _subprocess_median([sys.executable, "-c", "pass"], opts.repeats, env)
    dry = _subprocess_median(
        [sys.executable, "-m", "mlpfctl", "submit", "-s", "lumi", "-A", "p", "--dry-run", "--", "train"],
        opts.repeats,
        env,
    )
    results: dict[str, object] = {
        "render_median_s": render_s,
        "render_median_of_medians_s": median(list(render_s.values())),
        "python_floor_s": floor,
        "dry_run_cli_s": dry,
    }
    if opts.slurm:
        results["check_job_sbatch_to_completed_s"] = _slurm_round_trip(max(3, opts.repeats // 7), env)

    table = Table(title="mlpfctl submit (medians)")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    table.add_row(
        "render one script (median over 8 systems x 4 kinds)", f"{results['render_median_of_medians_s']:.4f}"
    )
    table.add_row("python -c pass (floor)", f"{floor:.3f}")
    table.add_row("mlpfctl submit --dry-run (fresh interpreter)", f"{dry:.3f}")
    if opts.slurm:
        table.add_row(
            "2-task check job: sbatch -> COMPLETED", f"{results['check_job_sbatch_to_completed_s']:.2f}"
        )
    Console().print(table)
    path = write_result("submit_render", results, {"repeats": opts.repeats, "slurm": opts.slurm})
    Console(stderr=True).print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
