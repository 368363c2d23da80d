"""Objectives: what one trial runs. A generic ``module:function`` hook, and the MLPF training objective.

An objective is ``def objective(ctx: TrialContext) -> float | Sequence[float]``. It receives the
sampled parameters and a step budget, calls ``ctx.report(step, value)`` at validation points (which
raises ``optuna.TrialPruned`` when a stopping-type scheduler prunes it), and returns the value(s) at
the end of its budget. Promotion schedulers (asha/rasda) run a configuration in pieces: each piece
starts at ``ctx.start_step`` from the state in ``ctx.resume_from`` (None for the first piece) and must
leave its own state in ``ctx.checkpoint_dir`` for the next piece.

Example (``benchmarks/hpo_objectives.py`` has more)::

    def quadratic(ctx):
        for step in range(ctx.start_step + 10, ctx.budget + 1, 10):
            ctx.report(step, (ctx.params["x"] - 1) ** 2 + 1 / step)
        return (ctx.params["x"] - 1) ** 2 + 1 / ctx.budget
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpfctl.errors import ConfigError, RuntimeFailure

if TYPE_CHECKING:
    import optuna

Objective = Callable[["TrialContext"], float | Sequence[float]]


class Diverged(RuntimeFailure):
    """The objective produced NaN/inf (or the training loop said it diverged)."""


class TrialCheckpointed(Exception):
    """The trial's training stopped on a stop request (SLURM's time-limit warning) after writing
    a checkpoint at ``step`` into ``checkpoint_dir``: not a result. The worker gives the trial
    back to the study, and whoever claims it next continues from that checkpoint."""

    def __init__(self, step: int, checkpoint_dir: Path) -> None:
        super().__init__(f"checkpointed at step {step} in {checkpoint_dir}")
        self.step = step
        self.checkpoint_dir = checkpoint_dir


@dataclass
class Reporter:
    """Writes intermediate values to the study and asks the pruner; picklable (travels to rank 0).

    Only rank 0 of a multi-rank trial reports; the training loop broadcasts its decision to the other
    ranks so that they all stop together (hpo-reference.md §4).
    """

    storage_url: str
    study_name: str
    trial_id: int
    pruner: str
    rungs: tuple[int, int, int, int]
    on_divergence: str = "prune"
    _study: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_study"] = None  # storage connections do not cross process boundaries
        return state

    def _open(self) -> optuna.Study:
        if self._study is None:
            import optuna

            from mlpfctl.hpo.schedulers import Rungs, make_pruner
            from mlpfctl.hpo.storage import parse_url

            spec = parse_url(self.storage_url)
            from mlpfctl.hpo.storage import open_storage

            storage = open_storage(spec, heartbeat_interval=60, grace_period=120, max_retry=0)
            self._study = optuna.load_study(
                study_name=self.study_name,
                storage=storage,
                pruner=make_pruner(self.pruner, Rungs(*self.rungs)),
            )
        return self._study  # type: ignore[no-any-return]

    def bind(self, study: optuna.Study) -> Reporter:
        """Reuse an already open study (the worker process itself)."""
        self._study = study
        return self

    def report(self, step: int, value: float) -> str:
        """Record ``value`` at ``step``; return "continue" or "prune"."""
        if not math.isfinite(value):
            raise Diverged(f"objective value {value} at step {step}", "lower the learning rate range")
        from mlpfctl.hpo import optuna_api as api

        study = self._open()
        api.set_intermediate(study, self.trial_id, step, value)
        frozen = api.get(study, self.trial_id)
        return "prune" if study.pruner.prune(study, frozen) else "continue"


@dataclass
class TrialContext:
    """Everything one trial (or one rung piece of an ASHA configuration) needs."""

    number: int
    params: dict[str, Any]
    budget: int
    start_step: int
    resume_from: Path | None
    checkpoint_dir: Path
    run_dir: Path
    ranks: int
    rung: int | None
    reporter: Reporter
    settings: Mapping[str, Any]
    trial: optuna.Trial | None = None
    reports: list[tuple[int, float]] = field(default_factory=list)

    @property
    def max_budget(self) -> int:
        """The top-rung budget R (the LR-schedule horizon every piece must share)."""
        return int(self.reporter.rungs[1])

    def report(self, step: int, value: float) -> None:
        """Report an intermediate value; raises ``optuna.TrialPruned`` when the scheduler prunes."""
        import optuna

        self.reports.append((step, float(value)))
        if self.reporter.report(step, float(value)) == "prune":
            raise optuna.TrialPruned(f"pruned at step {step} (value {value:.6g})")


def load_objective(spec: str) -> Objective:
    """Resolve ``module:function`` or ``path/to/file.py:function`` to a callable."""
    module_name, sep, func_name = spec.rpartition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError(
            f"objective '{spec}' is not of the form module:function", "example: --objective mypkg.obj:loss"
        )
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ConfigError(f"objective file '{path}' does not exist", "check the path before the ':'")
            name = f"_mlpfctl_objective_{path.stem}"
            module = sys.modules.get(name)
            if module is None:
                module_spec = importlib.util.spec_from_file_location(name, path)
                assert module_spec is not None and module_spec.loader is not None
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[name] = module
                module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import the objective module '{module_name}': {exc}",
            "make it importable (PYTHONPATH, pip install -e) or pass path/to/file.py:function",
        ) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(
            f"'{func_name}' is not a function in '{module_name}'",
            "callables there: "
            + ", ".join(n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")),
        )
    return func  # type: ignore[no-any-return]


# --- the MLPF training objective --------------------------------------------------------------

# Short names for the validation's physics metrics (mlpfctl.train.metrics): optimise jet-response
# resolution directly, alone or against val_loss (multi-objective).
METRIC_ALIASES = {"jet_iqr": "jet_response_iqr", "met_iqr": "met_residual_iqr"}


@dataclass
class _PrunerHooks:
    """``mlpfctl.train.api.TrainHooks``: rank 0 reports each validation and relays the decision."""

    reporter: Reporter
    metric: str
    budget: int

    def on_validation(self, step: int, metrics: dict[str, float]) -> str:
        value = metrics.get(self.metric)
        if value is None:
            return "continue"
        if not math.isfinite(value):
            return "prune"
        decision = self.reporter.report(step, float(value))
        if decision == "prune":
            return "prune"
        return "stop" if step >= self.budget else "continue"


def mlpf_objective(ctx: TrialContext) -> float | list[float]:
    """Train MLPF with the trial's parameters up to ``ctx.budget`` steps; the objective is each
    ``hpo.metrics`` entry (val_loss, events_per_s or any validation metric, e.g. jet_iqr)."""
    try:
        from mlpfctl.train.api import (  # type: ignore[import-untyped,unused-ignore]
            DivergedError,
            TrainRequest,
            train,
        )
    except ImportError:
        raise RuntimeFailure(
            "the MLPF training objective needs mlpfctl.train (not in this build)",
            "tune a generic objective instead: --objective module:function",
        ) from None
    from mlpfctl.atomic import atomic_write_text
    from mlpfctl.config import Override, resolve

    settings = ctx.settings
    base = settings.get("base_config", {})
    import tomli_w

    base_file = ctx.run_dir / "base_config.toml"
    # TOML has no null: unset keys (None) are left to their defaults, which is what None means.
    clean = {section: {k: v for k, v in body.items() if v is not None} for section, body in base.items()}
    atomic_write_text(base_file, tomli_w.dumps(clean))
    source = f"hpo trial {ctx.number}"
    overrides = [Override(key, value, source) for key, value in ctx.params.items()]
    overrides += [
        Override("train.steps", ctx.budget, source),
        # One LR-schedule horizon for every piece of a promoted configuration.
        Override("train.schedule_steps", ctx.max_budget, source),
    ]
    resolved = resolve(base_file, overrides, env={})
    config = resolved.config
    metrics = [METRIC_ALIASES.get(m, m) for m in settings.get("metrics", ["val_loss"])]
    hooks = _PrunerHooks(ctx.reporter, metrics[0], ctx.budget)
    request = TrainRequest(
        config=config,
        run_dir=ctx.checkpoint_dir,
        nproc=ctx.ranks,
        resume=ctx.resume_from,
        hooks=hooks,
        quiet=True,
    )
    try:
        result = train(request)
    except DivergedError as exc:
        raise Diverged(f"training diverged: {exc}", "the study continues") from None
    if result.status == "checkpointed":
        # The training loop caught SIGTERM/SIGUSR1 (a time-limit warning, preemption), wrote a
        # checkpoint and returned: not a result. The worker gives the trial back and stops.
        raise TrialCheckpointed(result.step, ctx.checkpoint_dir)
    if result.status == "pruned":
        import optuna

        raise optuna.TrialPruned(f"pruned at step {result.step}")
    values: list[float] = []
    for metric in metrics:
        if metric == "val_loss":
            value = result.val_loss
        elif metric == "events_per_s":
            value = result.events_per_s
        else:
            value = result.history[-1].get(metric) if result.history else None
        if value is None:
            raise RuntimeFailure(
                f"training returned no '{metric}'", "set train.val_every to divide the budget"
            )
        if not math.isfinite(value):
            # e.g. jet IQR without a single matched jet: a model that finds no particles
            raise Diverged(f"'{metric}' is {value} at the end of training", "the study continues")
        values.append(float(value))
    return values[0] if len(values) == 1 else values
