"""Prove a GPU node in one command: what a user runs first on a new system (scripts/gpu-check.sh).

Run: scripts/gpu-check.sh [--backend cuda|rocm|hpu|xpu] [--steps 200] [--force] [--results DIR]

Every check runs the real CLI (``python -m mlpfctl ...``) in a fresh process and prints one line,
``PASS``/``FAIL``/``SKIP`` with what it measured:

1. devices: ``mlpfctl devices --json`` finds the backend and its devices;
2. train: a 200-step training on the device in the backend's autocast dtype: events/s, TFLOP/s, MFU;
3. process group: a training forced into a process group at world size 1, so that every
   collective goes through NCCL/RCCL (``NCCL_DEBUG=INFO`` shows them);
4. DDP: 2 ranks when there are >= 2 devices;
5. ONNX: export of the trained run, its outputs checked against the model on the device;
6. HPO: a 4-configuration ASHA study with 2 workers sharing the device.

The JSON record goes to ``benchmarks/results/gpu_check-<backend>.json``. On a machine without a GPU
it says so and exits 0; ``--backend cpu --force`` runs every check on the CPU (what the test suite
does, to prove the checks themselves).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.record import RESULTS, environment

# the config key that forces a process group at world size 1 (train loop; see issue #10 item 1)
FORCE_PG_KEY = "run.force_process_group"
GPU_BACKENDS = ("cuda", "rocm", "hpu", "xpu")
VISIBLE = {"cuda": "CUDA_VISIBLE_DEVICES", "rocm": "HIP_VISIBLE_DEVICES", "xpu": "ZE_AFFINITY_MASK"}


@dataclass
class Check:
    name: str
    status: str  # PASS | FAIL | SKIP
    detail: str
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.detail} ({self.seconds:.0f} s)"


class Runner:
    """Runs ``python -m mlpfctl ...`` with a per-check time limit and keeps its log."""

    def __init__(self, work: Path, python: str, timeout: float) -> None:
        self.work = work
        self.python = python
        self.timeout = timeout

    def mlpfctl(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        try:
            proc = subprocess.run(
                [self.python, "-m", "mlpfctl", *args],
                capture_output=True,
                text=True,
                env=full_env,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
            proc = subprocess.CompletedProcess(
                exc.cmd, 124, out, err + f"\ntimed out after {self.timeout:.0f} s"
            )
        (self.work / f"{name}.log").write_text(f"$ mlpfctl {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
        return proc


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if proc.returncode < 0 or proc.returncode > 128:  # killed by a signal: say which, and where
        number = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
        with contextlib.suppress(ValueError):
            name = signal.Signals(number).name
            crash = [line for line in lines if "Fatal Python error" in line or "terminate called" in line]
            frames = [line.strip() for line in lines if line.strip().startswith("File ")][:3]
            return "; ".join([f"killed by {name}", *crash[:1], *frames])[:400]
    return (errors or lines or ["no output"])[-1][:200]


def _last_train_record(run_dir: Path) -> dict[str, Any]:
    records = [
        json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()
    ]
    train = [r for r in records if r.get("kind") == "train"]
    return train[-1] if train else {}


def _timed(fn: Any, *args: Any) -> Check:
    start = time.monotonic()
    try:
        check: Check = fn(*args)
    except Exception as exc:  # a check that breaks is a FAIL line, never a traceback
        check = Check(getattr(fn, "__name__", "check").lstrip("_"), "FAIL", f"{type(exc).__name__}: {exc}")
    check.seconds = time.monotonic() - start
    return check


class GpuCheck:
    def __init__(self, opts: argparse.Namespace, work: Path) -> None:
        self.opts = opts
        self.backend = opts.backend
        self.work = work
        self.run = Runner(work, opts.python, opts.timeout)
        self.devices: dict[str, Any] = {}
        self.data = work / "data"
        self.train_dir = work / "train"
        common = ["--backend", self.backend, "--preset", opts.preset]
        self.train_args = ["--data", str(self.data), *common]
        self.nccl = self.backend in ("cuda", "rocm")

    def _env(self, **extra: str) -> dict[str, str]:
        env = {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,COLL"} if self.nccl else {}
        return {**env, **extra}

    def _short_train(self, name: str, steps: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """A short training into WORK/train-NAME that logs every step (collectives in the NCCL log)."""
        run_dir = self.work / f"train-{name}"
        args = [*self.train_args, "--steps", steps, "--run-dir", str(run_dir), "--set", "train.log_every=1"]
        return self.run.mlpfctl(name, "train", *args, *extra, env=self._env())

    # ---- the checks ------------------------------------------------------------------------

    def devices_check(self) -> Check:
        proc = self.run.mlpfctl("devices", "devices", "--json")
        if proc.returncode != 0:
            return Check("devices", "FAIL", _tail(proc))
        report = json.loads(proc.stdout)
        info = report["backends"].get(self.backend, {})
        self.devices = info
        names = sorted({d.get("name", "?") for d in info.get("devices", [])})
        metrics = {
            "count": info.get("count", 0),
            "names": names,
            "autocast_dtype": info.get("autocast_dtype"),
            "dist_backend": info.get("dist_backend"),
            "torch": report.get("torch"),
            "auto": report.get("auto"),
        }
        if not info.get("available") or not info.get("count"):
            return Check(
                "devices", "FAIL", f"{self.backend}: {info.get('reason') or 'no devices'}", metrics=metrics
            )
        detail = f"{info['count']} x {', '.join(names)} "
        detail += f"({self.backend}, {info.get('dist_backend')}, torch {report.get('torch')})"
        return Check("devices", "PASS", detail, metrics=metrics)

    def data_check(self) -> Check:
        proc = self.run.mlpfctl(
            "data",
            "data",
            "generate",
            "--events",
            str(self.opts.events),
            "--out",
            str(self.data),
            "--seed",
            "1",
        )
        if proc.returncode != 0:
            return Check("data", "FAIL", _tail(proc))
        return Check("data", "PASS", f"{self.opts.events} events generated in {self.data}")

    def train_check(self) -> Check:
        steps = self.opts.steps
        proc = self.run.mlpfctl(
            "train",
            "train",
            *self.train_args,
            "--steps",
            str(steps),
            "--run-dir",
            str(self.train_dir),
            "--json",
            "--set",
            f"train.log_every={max(1, steps // 4)}",
            "--set",
            f"train.val_every={steps}",
            "--set",
            f"train.checkpoint_every={steps}",
        )
        if proc.returncode != 0:
            return Check("train", "FAIL", _tail(proc))
        result = json.loads(proc.stdout)
        model = json.loads((self.train_dir / "model.json").read_text())
        last = _last_train_record(self.train_dir)
        wanted = self.devices.get("autocast_dtype", "none")
        autocast = model.get("autocast")
        metrics = {
            "steps": result.get("step"),
            "events_per_s": result.get("events_per_s") or last.get("events_per_s"),
            "tflops": last.get("tflops"),
            "mfu": last.get("mfu"),
            "autocast": autocast,
            "device": model.get("device"),
            "val_loss": result.get("val_loss"),
        }
        problems = []
        if result.get("status") != "completed" or result.get("step") != steps:
            problems.append(f"status {result.get('status')} at step {result.get('step')}")
        if autocast != (None if wanted == "none" else f"torch.{wanted}"):
            problems.append(f"autocast {autocast}, the backend's dtype is {wanted}")
        if not metrics["events_per_s"] or not metrics["tflops"]:
            problems.append("no events/s or TFLOP/s measured")
        if self.backend in GPU_BACKENDS and metrics["mfu"] is None:
            problems.append(f"no MFU: the peak FLOP/s of {self.devices.get('names')} is unknown")
        mfu = f"{100 * metrics['mfu']:.1f}%" if metrics["mfu"] is not None else "n/a (no peak known)"
        detail = (
            f"{steps} steps on {model.get('device')} in {autocast or 'fp32'}: "
            f"{metrics['events_per_s'] or 0:.1f} events/s, {metrics['tflops'] or 0:.3g} TFLOP/s, MFU {mfu}"
        )
        return Check("train", "FAIL" if problems else "PASS", "; ".join(problems) or detail, metrics=metrics)

    def process_group_check(self) -> Check:
        from mlpfctl.config.loader import schema_fields

        if FORCE_PG_KEY not in schema_fields():
            return Check(
                "process group at world size 1",
                "FAIL",
                f"this mlpfctl has no {FORCE_PG_KEY} setting (train loop)",
            )
        steps = str(max(2, self.opts.steps // 10))
        proc = self._short_train("process-group", steps, "--set", f"{FORCE_PG_KEY}=true")
        if proc.returncode != 0:
            return Check("process group at world size 1", "FAIL", _tail(proc))
        collectives = len(
            re.findall(r"NCCL INFO (?:AllReduce|Broadcast|AllGather)", proc.stdout + proc.stderr)
        )
        if self.nccl and not collectives:
            return Check("process group at world size 1", "FAIL", "no NCCL collective in the NCCL_DEBUG log")
        detail = f"{steps} steps, 1 rank" + (f", {collectives} NCCL collectives logged" if self.nccl else "")
        return Check(
            "process group at world size 1", "PASS", detail, metrics={"nccl_collectives": collectives}
        )

    def ddp_check(self) -> Check:
        count = int(self.devices.get("count", 0))
        if self.backend in GPU_BACKENDS and count < 2:
            return Check("DDP 2 ranks", "SKIP", f"{count} device: a 2-rank run needs 2")
        run_dir = self.work / "train-ddp"
        steps = str(max(2, self.opts.steps // 4))
        proc = self._short_train("ddp", steps, "--nproc", "2", "--json")
        if proc.returncode != 0:
            return Check("DDP 2 ranks", "FAIL", _tail(proc))
        result = json.loads(proc.stdout)
        model = json.loads((run_dir / "model.json").read_text())
        if model.get("world_size") != 2 or result.get("status") != "completed":
            return Check(
                "DDP 2 ranks", "FAIL", f"world size {model.get('world_size')}, status {result.get('status')}"
            )
        if self.nccl and "nranks 2" not in proc.stdout + proc.stderr:
            return Check("DDP 2 ranks", "FAIL", "NCCL did not report a 2-rank communicator")
        rate = result.get("events_per_s") or 0.0
        return Check(
            "DDP 2 ranks", "PASS", f"{steps} steps, {rate:.1f} events/s", metrics={"events_per_s": rate}
        )

    def onnx_check(self) -> Check:
        onnx = self.work / "model.onnx"
        proc = self.run.mlpfctl("onnx", "export", str(self.train_dir), "--out", str(onnx), "--json")
        if proc.returncode != 0:
            return Check("ONNX export", "FAIL", _tail(proc))
        exported = json.loads(proc.stdout)
        on_device = _onnx_against_device(self.train_dir, onnx, self.backend, self.opts.onnx_atol)
        metrics = {"cpu_max_abs_diff": max(exported["max_abs_diff"].values()), **on_device}
        ok = on_device["max_abs_diff"] <= self.opts.onnx_atol
        detail = (
            f"opset {exported['opset']}, {exported['checked_batches']} batches; ONNX Runtime "
            f"({on_device['provider']}) vs the model on {on_device['device']}: max |diff| "
            f"{on_device['max_abs_diff']:.2e} (<= {self.opts.onnx_atol:g})"
        )
        return Check("ONNX export", "PASS" if ok else "FAIL", detail, metrics=metrics)

    def hpo_check(self) -> Check:
        env = self._env()
        count = int(self.devices.get("count", 0))
        var = VISIBLE.get(self.backend)
        if var and count:
            env[var] = "0,0"  # both workers on device 0: the HPO driver gives each worker one "device"
        storage = f"sqlite:///{self.work / 'hpo.db'}"
        steps = max(3, self.opts.steps // 10)
        args = [
            "hpo", "run", "--trials", "4", "--workers", "2", "--sampler", "random", "--scheduler", "asha",
            "--min-resource", str(steps), "--max-resource", str(3 * steps), "--eta", "3",
            "--storage", storage, "--study", "gpu-check", "--json",
            "--set", f"data.path={self.data}", "--set", f"run.backend={self.backend}",
            "--set", f"model.preset={self.opts.preset}", "--set", f"hpo.workdir={self.work / 'hpo'}",
            "--set", f"train.val_every={steps}",
        ]  # fmt: skip
        proc = self.run.mlpfctl("hpo", *args, env=env)
        if proc.returncode != 0:
            return Check("HPO 4-trial ASHA, 2 workers", "FAIL", _tail(proc))
        states = _study_states(storage, "gpu-check")
        configs = len(states["configs"])
        failed = states["counts"].get("FAIL", 0)
        metrics = {"states": states["counts"], "configurations": configs}
        if failed or configs < 4 or not states["counts"].get("COMPLETE"):
            return Check(
                "HPO 4-trial ASHA, 2 workers",
                "FAIL",
                f"{configs} configurations, states {states['counts']}",
                metrics=metrics,
            )
        shared = f"sharing {var}=0" if var and count else "on the CPU"
        return Check(
            "HPO 4-trial ASHA, 2 workers",
            "PASS",
            f"{configs} configurations {shared}, states {states['counts']}",
            metrics=metrics,
        )


def _study_states(storage: str, study_name: str) -> dict[str, Any]:
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage)
    counts: dict[str, int] = {}
    configs: set[int] = set()
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
        if trial.state.is_finished() and "mlpfctl.config" in trial.user_attrs:
            configs.add(int(trial.user_attrs["mlpfctl.config"]))
    return {"counts": counts, "configs": configs}


def _onnx_against_device(run_dir: Path, onnx: Path, backend: str, atol: float) -> dict[str, Any]:
    """ONNX Runtime (its GPU provider when installed) against the PyTorch model on the device."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from mlpfctl.backends import select_backend
    from mlpfctl.train.export import OUTPUTS
    from mlpfctl.train.runs import iter_batches, load_run, test_split

    device = select_backend(backend).setup_process(0)
    run = load_run(run_dir)
    model = run.model.float().eval().to(device)
    gpu_providers = {"cuda": "CUDAExecutionProvider", "rocm": "ROCMExecutionProvider"}
    provider = gpu_providers.get(backend, "CPUExecutionProvider")
    if provider not in ort.get_available_providers():
        provider = "CPUExecutionProvider"
    session = ort.InferenceSession(onnx.read_bytes(), providers=[provider])
    worst = 0.0
    batches = 0
    for batch in iter_batches(test_split(run.config), 4, limit=32):
        x, mask = batch.X, batch.mask
        got = session.run(list(OUTPUTS), {"X": x.numpy(), "mask": mask.numpy()})
        with torch.no_grad():
            want = model(x.to(device), mask.to(device))
        m = mask.numpy()
        for a, b in zip(got, want, strict=True):
            diff = np.abs(a - b.float().cpu().numpy())[m]
            worst = max(worst, float(diff.max()) if diff.size else 0.0)
        batches += 1
    return {
        "device": str(device),
        "provider": provider,
        "max_abs_diff": worst,
        "batches": batches,
        "atol": atol,
    }


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one error: and one hint: line, exit 2, like mlpfctl
        sys.stderr.write(f"error: {message}\nhint: scripts/gpu-check.sh --help\n")
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="gpu-check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backend", default="auto", help="cuda, rocm, hpu, xpu (auto: what mlpfctl devices picks) or cpu"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="run even without a GPU (with --backend cpu: prove the checks on CPU)",
    )
    parser.add_argument("--steps", type=int, default=200, help="training steps of the train check")
    parser.add_argument("--events", type=int, default=1000, help="events generated for the checks")
    parser.add_argument(
        "--preset", default="clic", help="model preset (clic: the reference size; tiny: smoke runs)"
    )
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds allowed per check")
    parser.add_argument("--onnx-atol", type=float, default=1e-2, help="largest |ONNX - model on device|")
    parser.add_argument(
        "--work", type=Path, default=None, help="working directory (default: a fresh temp dir)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory of the JSON record")
    parser.add_argument("--python", default=sys.executable, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.backend not in ("auto", "cpu", *GPU_BACKENDS):
        parser.error(f"--backend {opts.backend!r} is not one of auto, cpu, {', '.join(GPU_BACKENDS)}")
    if opts.steps < 4 or opts.events < 50:
        parser.error("--steps must be >= 4 and --events >= 50 (the checks need a few steps and a test split)")

    import tempfile

    work = opts.work or Path(tempfile.mkdtemp(prefix="mlpfctl-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    probe = GpuCheck(opts, work)
    if opts.backend == "auto":
        first = _timed(probe.devices_check)  # reads the 'auto' choice
        auto = first.metrics.get("auto") or "cpu"
        opts.backend = auto
        probe = GpuCheck(opts, work)
    if opts.backend not in GPU_BACKENDS and not opts.force:
        if opts.work is None:
            shutil.rmtree(work, ignore_errors=True)  # nothing was checked: leave nothing behind
        print(
            f"SKIP gpu-check: no GPU on this machine (mlpfctl devices picks '{opts.backend}'); nothing to "
            "check. To exercise the checks on the CPU: scripts/gpu-check.sh --backend cpu --force"
        )
        return 0
    checks: list[Check] = []
    for step in (probe.devices_check, probe.data_check, probe.train_check, probe.process_group_check,
                 probe.ddp_check, probe.onnx_check, probe.hpo_check):  # fmt: skip
        check = _timed(step)
        checks.append(check)
        print(check.line(), flush=True)
        if check.name in ("devices", "data", "train") and check.status == "FAIL":
            break  # the later checks need the device, the data and the trained run
    total = time.monotonic() - started
    failed = [c.name for c in checks if c.status == "FAIL"]
    summary = f"{len(checks) - len(failed)}/{len(checks)} checks passed in {total:.0f} s"
    print(
        f"{'FAIL' if failed else 'PASS'} gpu-check: {summary}"
        + (f" (failed: {', '.join(failed)})" if failed else "")
    )
    record = {
        "benchmark": "gpu_check",
        **environment(),
        "backend": opts.backend,
        "settings": {k: str(v) for k, v in vars(opts).items() if k not in ("python",)},
        "total_s": total,
        "passed": not failed,
        "checks": [c.__dict__ for c in checks],
        "work_dir": str(work),
    }
    from mlpfctl.atomic import atomic_write_text

    opts.results.mkdir(parents=True, exist_ok=True)
    path = opts.results / f"gpu_check-{opts.backend}.json"
    atomic_write_text(path, json.dumps(record, indent=2, default=str) + "\n")
    print(f"record: {path}; logs of every check: {work}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
