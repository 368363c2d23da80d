"""The training service: ``train(TrainRequest) -> TrainResult``.

Used by ``mlpfctl train``, by HPO trials and by scaling runs. ``request.nproc > 1`` spawns that
many local ranks (``mlpfctl.launch.local``); under torchrun or srun every process calls
``train`` itself and reads its rank from the environment (``mlpfctl.launch.runenv``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlpfctl.config.schema import Config
from mlpfctl.errors import Checkpointed, DataError, MlpfctlError, RuntimeFailure, UsageError

DECISIONS = ("continue", "prune", "stop")


class TrainHooks(Protocol):
    """Callbacks into the caller (HPO). Implementations must be picklable: they travel to ranks."""

    def on_validation(self, step: int, metrics: dict[str, float]) -> str:
        """Called on rank 0 after each validation; returns "continue", "prune" or "stop"."""
        ...


@dataclass
class TrainRequest:
    config: Config
    run_dir: Path
    nproc: int = 1
    resume: Path | None = None
    hooks: TrainHooks | None = None
    quiet: bool = False


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # "completed" | "pruned" | "stopped" | "checkpointed"
    step: int
    val_loss: float | None
    best_val_loss: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    events_per_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "status": self.status,
            "step": self.step,
            "val_loss": self.val_loss,
            "best_val_loss": self.best_val_loss,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "events_per_s": self.events_per_s,
            "history": self.history,
        }


class DivergedError(RuntimeFailure):
    """The loss became NaN/inf or exploded; HPO prunes the trial."""


# Errors that cross the process boundary by name (exceptions with extra fields pickle badly).
_ERRORS: dict[str, type[MlpfctlError]] = {
    cls.__name__: cls
    for cls in (DivergedError, Checkpointed, DataError, UsageError, RuntimeFailure, MlpfctlError)
}


@dataclass
class RankOutcome:
    """What a spawned rank returns: a result, or an error to re-raise in the launcher."""

    result: TrainResult | None = None
    error: tuple[str, str, str | None] | None = None

    def unwrap(self) -> TrainResult:
        if self.error is not None:
            name, message, hint = self.error
            raise _ERRORS.get(name, RuntimeFailure)(message, hint)
        assert self.result is not None
        return self.result


def _rank_main(request: TrainRequest) -> RankOutcome:
    from mlpfctl.train.loop import run_rank

    try:
        return RankOutcome(result=run_rank(request))
    except MlpfctlError as exc:
        return RankOutcome(error=(type(exc).__name__, exc.message, exc.hint))


def train(request: TrainRequest) -> TrainResult:
    """Train as described by ``request``; see the module docstring for the process model."""
    from mlpfctl.launch.runenv import RunEnv

    if request.nproc < 1:
        raise UsageError(f"--nproc must be >= 1, not {request.nproc}", "use --nproc 1 for one process")
    env = RunEnv.from_env()
    if request.nproc == 1 or env.world_size > 1:
        from mlpfctl.train.loop import run_rank

        if request.nproc > 1 and env.world_size > 1:
            raise UsageError(
                f"--nproc {request.nproc} inside a launcher that already started {env.world_size} ranks "
                f"({env.source})",
                "drop --nproc under torchrun/srun: the launcher starts the ranks",
            )
        return run_rank(request)

    from mlpfctl.launch.local import launch_local

    # launch_local forwards SIGTERM/SIGUSR1 to the ranks, which checkpoint and return.
    outcome = launch_local(_rank_main, request.nproc, args=(request,), backend=request.config.run.backend)
    if not isinstance(outcome, RankOutcome):
        raise RuntimeFailure("rank 0 returned no training result", "see the rank logs above")
    return outcome.unwrap()
