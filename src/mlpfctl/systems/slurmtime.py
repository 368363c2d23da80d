"""SLURM wall-time strings: parse the forms sbatch accepts, format as D-HH:MM:SS."""

from __future__ import annotations

import re

from mlpfctl.errors import UsageError

_FORMS = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (e.g. 90, 04:00:00, 2-00:00:00)"
_DAYS = re.compile(r"^(\d+)-(\d+)(?::(\d+))?(?::(\d+))?$")
_CLOCK = re.compile(r"^(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time(text: str, *, allow_unlimited: bool = False) -> int | None:
    """Seconds in a SLURM time string; None for UNLIMITED/infinite when ``allow_unlimited``."""
    value = text.strip()
    if value.lower() in ("unlimited", "infinite"):
        if allow_unlimited:
            return None
        raise UsageError("a job needs a finite --time", f"use {_FORMS}")
    days_match = _DAYS.match(value)
    if days_match:
        days, hours, minutes, seconds = (int(g) if g else 0 for g in days_match.groups())
    else:
        clock = _CLOCK.match(value)
        if clock is None:
            raise UsageError(f"time '{text}' is not a SLURM time", f"use {_FORMS}")
        parts = [int(g) for g in clock.groups() if g is not None]
        days = 0
        if len(parts) == 1:  # minutes
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:  # minutes:seconds
            hours, minutes, seconds = 0, parts[0], parts[1]
        else:
            hours, minutes, seconds = parts
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise UsageError(f"time '{text}' is not positive", f"use {_FORMS}")
    return total


def format_time(seconds: int | None) -> str:
    if seconds is None:
        return "UNLIMITED"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock
