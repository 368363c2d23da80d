"""Run logging on rank 0: ``metrics.jsonl`` (one JSON record per line) and TensorBoard scalars."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class RunLogger:
    """Appends records to metrics.jsonl and mirrors numeric fields to TensorBoard.

    A disabled logger (ranks other than 0) accepts every call and writes nothing. Files are created
    at the first record, so a run that fails before it (a checkpoint that does not fit) leaves the
    run directory as it was.
    """

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        self.path = run_dir / METRICS_FILE
        self.tensorboard = tensorboard
        self._writer: Any = None

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.tensorboard and self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir / TENSORBOARD_DIR))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record = {"kind": kind, "step": step, **values}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=_jsonable) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    self._writer.add_scalar(f"{kind}/{key}", value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
