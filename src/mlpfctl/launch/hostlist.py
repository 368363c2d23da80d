"""Expand SLURM host lists such as ``nid[001-004,010],login1`` or ``jwb[0001-0002]-ib``."""

from __future__ import annotations

import re

from mlpfctl.errors import UsageError

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ']'")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise ValueError("unbalanced '['")
    parts.append("".join(current))
    return parts


def _expand_one(pattern: str) -> list[str]:
    start = pattern.find("[")
    if start < 0:
        if "]" in pattern:
            raise ValueError("unbalanced ']'")
        return [pattern]
    end = pattern.find("]", start)
    if end < 0:
        raise ValueError("unbalanced '['")
    prefix, body, rest = pattern[:start], pattern[start + 1 : end], pattern[end + 1 :]
    if not body:
        raise ValueError("empty brackets")
    values: list[str] = []
    for item in body.split(","):
        match = _RANGE.match(item.strip())
        if not match:
            raise ValueError(f"bad range '{item}'")
        lo_text, hi_text = match.group(1), match.group(2) or match.group(1)
        lo, hi = int(lo_text), int(hi_text)
        if hi < lo:
            raise ValueError(f"descending range '{item}'")
        width = len(lo_text)
        values.extend(str(n).zfill(width) for n in range(lo, hi + 1))
    tails = _expand_one(rest)
    return [f"{prefix}{v}{t}" for v in values for t in tails]


def expand_hostlist(text: str) -> list[str]:
    """All host names of a SLURM node list, in order. Malformed input raises UsageError."""
    cleaned = text.strip()
    if not cleaned:
        raise UsageError("empty SLURM node list", "check SLURM_JOB_NODELIST")
    try:
        hosts: list[str] = []
        for part in _split_top(cleaned):
            if not part:
                raise ValueError("empty entry")
            hosts.extend(_expand_one(part))
    except ValueError as exc:
        raise UsageError(
            f"malformed SLURM node list '{text}': {exc}", "expected e.g. nid[001-004,010] or node1,node2"
        ) from None
    return hosts
