"""Durations written the way people write them: ``90``, ``90s``, ``25m``, ``1.5h``, ``1h30m``."""

from __future__ import annotations

import re

_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?\s*[hms]?\s*)+")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([hms]?)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}
FORMS = "seconds, or numbers with s, m or h: 90, 90s, 25m, 1.5h, 1h30m"


def parse_duration(text: str) -> float:
    """Seconds in ``text``; a bare number is seconds. Raises ValueError on anything else."""
    value = text.strip().lower()
    if not _WHOLE.fullmatch(value):
        raise ValueError(f"is not a duration ({FORMS})")
    parts = _PART.findall(value)
    if len(parts) > 1 and any(not unit for _, unit in parts):
        raise ValueError(f"is not a duration: give every part a unit ({FORMS})")
    seconds = sum(float(number) * _UNIT[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError("must be a positive duration")
    return seconds
