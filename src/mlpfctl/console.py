"""Where output goes: stdout carries data (JSON, scripts, ids), stderr carries logs and progress."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Two consoles so that `mlpfctl ... --json | jq` never sees a progress bar or a log line.
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def print_json(data: Any) -> None:
    """Write ``data`` as JSON on stdout (plain text: no Rich markup, stable for scripts)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    """A human-readable progress line on stderr."""
    err.print(message)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}")
