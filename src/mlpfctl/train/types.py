"""The types the training service shares with its callers: request, result, hooks, divergence.

A leaf module (no torch): ``train.api`` (the service entry point), the loop and its parts, HPO
objectives and benchmarks import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlpfctl.config.schema import Config
from mlpfctl.errors import RuntimeFailure

DECISIONS = ("continue", "prune", "stop")


def due(step: int, every: int, last: int) -> bool:
    """Whether a periodic action (log, validation, checkpoint) happens at ``step``: every
    ``every`` steps, and at the last step whatever the interval."""
    return step % every == 0 or step == last


# TrainResult.status values; "checkpointed" is the only one that asks the caller to resume later.
STATUSES = ("completed", "pruned", "stopped", "checkpointed", "time_limit")


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
    status: str  # one of STATUSES
    step: int
    val_loss: float | None
    best_val_loss: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    events_per_s: float | None = None
    stop_reason: str | None = None  # why the loop ended, in words (result.json)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "status": self.status,
            "stop_reason": self.stop_reason,
            "step": self.step,
            "val_loss": self.val_loss,
            "best_val_loss": self.best_val_loss,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "events_per_s": self.events_per_s,
            "history": self.history,
        }


class DivergedError(RuntimeFailure):
    """The loss became NaN/inf or exploded; HPO prunes the trial."""
