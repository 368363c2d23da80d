"""``setting()``: a dataclass field that carries its own documentation and validation rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any


def setting(
    default: Any,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
    secret: bool = False,
    check: Callable[[Any], object] | None = None,
) -> Any:
    """A config field.

    ``doc`` is shown by ``mlpfctl config show`` and in errors; ``ge/gt/le/lt`` bound numbers (each
    element of a list too); ``choices`` restricts the allowed values; ``secret`` masks the value
    in any printed output (passwords in storage URLs); ``check`` parses a value and raises
    ValueError("<what is wrong>") for a bad one (formats such as durations).
    """
    metadata = {
        "doc": doc,
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "choices": choices,
        "secret": secret,
        "check": check,
    }
    if isinstance(default, list | dict):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
