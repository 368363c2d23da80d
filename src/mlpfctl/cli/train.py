"""``mlpfctl train``: train an MLPF model (one process, ``--nproc N`` local ranks, or under
torchrun/srun, where each rank reads its rank from the environment).

    mlpfctl train --data data/ee_ttbar --steps 200
    mlpfctl train --data data/ee_ttbar --steps 200 --nproc 2 --set train.lr_scaling=sqrt
    mlpfctl train --resume runs/train-20260101-120000          # continue exactly
    mlpfctl train --data data/ee_ttbar --steps 100000 --max-time 25m   # stop cleanly at 25 min
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from pathlib import Path
from typing import Annotated, Any

import typer

from mlpfctl.cli.common import ConfigOpt, DryRunOpt, JsonOpt, SetOpt, load_config, path_option
from mlpfctl.errors import Checkpointed, UsageError
from mlpfctl.paths import unused_dir


def resolve_resume(resume: Path | None) -> tuple[Path | None, Path | None]:
    """(run dir, checkpoint target) for ``--resume`` given a run dir or a checkpoint file.

    A checkpoint file continues its run only where it lies inside one (RUN/checkpoints/x.ckpt);
    a file from elsewhere seeds a new run directory.
    """
    from mlpfctl.train.rundir import CHECKPOINT_DIR

    if resume is None:
        return None, None
    if resume.is_dir():
        return resume, resume
    if resume.is_file():
        parent = resume.absolute().parent
        return (parent.parent if parent.name == CHECKPOINT_DIR else None), resume
    raise UsageError(f"--resume {resume} does not exist", "pass a run directory or a checkpoint file")


def default_run_dir(out_dir: str, name: str | None, command: str = "train") -> Path:
    if name:
        return Path(out_dir) / name
    return unused_dir(Path(out_dir), f"{command}-{_dt.datetime.now():%Y%m%d-%H%M%S}")


def train(
    data: Annotated[
        Path | None,
        path_option("--data", "-d", help="Dataset directory (data.path)."),
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Optimizer steps (train.steps).")] = None,
    nproc: Annotated[int, typer.Option("--nproc", help="Local ranks to start (DDP).", min=1)] = 1,
    backend: Annotated[
        str | None, typer.Option("--backend", "-b", help="auto, cpu, cuda, rocm, hpu or xpu (run.backend).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="attention or gnnlsh (model.type).")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="clic or tiny (model.preset).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (train.lr).")] = None,
    max_time: Annotated[
        str | None,
        typer.Option(
            "--max-time",
            help="Wall-clock budget, e.g. 90s, 25m, 1.5h: stop cleanly, validate, checkpoint, exit 0 "
            "(train.max_time).",
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        path_option("--resume", help="Continue a run: its directory or a checkpoint file."),
    ] = None,
    run_dir: Annotated[
        Path | None,
        path_option("--run-dir", help="Run directory (default: <run.out_dir>/<name>)."),
    ] = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Train an MLPF model; writes config, metrics.jsonl, TensorBoard events and checkpoints."""
    from mlpfctl.console import out, print_json
    from mlpfctl.train import rundir

    resume_dir, resume_target = resolve_resume(resume)
    if config is None and resume_dir is not None and (resume_dir / rundir.CONFIG_FILE).is_file():
        config = resume_dir / rundir.CONFIG_FILE  # a resumed run keeps its own settings unless told otherwise
    flags: dict[str, tuple[str, Any]] = {
        "data.path": ("--data", str(data) if data is not None else None),
        "train.steps": ("--steps", steps),
        "run.backend": ("--backend", backend),
        "model.type": ("--model", model),
        "model.preset": ("--preset", preset),
        "train.lr": ("--lr", lr),
        "train.max_time": ("--max-time", max_time),
    }
    resolved = load_config(config, sets, flags)
    cfg = resolved.config
    if resume_dir is not None and resolved.sources["data.path"] == f"file {config}":
        cfg.data.path = rundir.locate_data(resume_dir, cfg.data.path)  # the run may have moved
    # Absolute paths in the run, so that evaluate/export/--resume work from any directory.
    cfg.data.path = rundir.absolute(cfg.data.path)
    target_dir = Path(
        rundir.absolute(run_dir or resume_dir or default_run_dir(cfg.run.out_dir, cfg.run.name))
    )
    from mlpfctl.launch.runenv import RunEnv

    # Under srun/torchrun every rank runs this command; only rank 0 claims the run directory.
    main_rank = RunEnv.from_env().is_main
    run_plan = rundir.plan(
        target_dir, cfg, resume_target, resume_dir, run_dir_given=run_dir is not None, main_rank=main_rank
    )
    plan: dict[str, Any] = {
        "run_dir": str(target_dir),
        "nproc": nproc,
        "resume": str(run_plan.resume) if run_plan.resume else None,
        "data": cfg.data.path,
        "backend": cfg.run.backend,
        "model": resolved.as_dict()["model"],
        "train": resolved.as_dict()["train"],
    }
    if dry_run:
        if as_json:
            print_json(plan)
        else:
            out.print(f"would train in {target_dir} with {nproc} rank(s) on backend {cfg.run.backend}")
            for section in ("model", "train"):
                for key, value in plan[section].items():
                    out.print(f"  {section}.{key} = {value!r}  ({resolved.sources[f'{section}.{key}']})")
        return
    if not Path(cfg.data.path).exists():
        raise UsageError(
            f"dataset {cfg.data.path} does not exist",
            "pass --data DIR (generate one with 'mlpfctl data generate')",
        )

    from mlpfctl.train.api import TrainRequest
    from mlpfctl.train.api import train as run_train

    with rundir.claim(run_plan, cfg) if main_rank else contextlib.nullcontext():
        result = run_train(TrainRequest(config=cfg, run_dir=target_dir, nproc=nproc, resume=run_plan.resume))
    if result.status == "checkpointed":
        raise Checkpointed(
            f"stopped by a signal at step {result.step}; checkpoint {result.checkpoint}",
            f"resubmit with: mlpfctl train --resume {target_dir}",
        )
    if as_json:
        print_json(result.as_dict())
    else:
        out.print(str(target_dir))
