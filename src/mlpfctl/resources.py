"""Find the shipped data folders (top-level ``backends/`` and ``templates/``).

In a built wheel they live in ``mlpfctl/_resources/`` (hatch force-include); in an editable
install or a source checkout they are the repository's top-level folders.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from mlpfctl.errors import RuntimeFailure

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def resource_dir(name: str) -> Path:
    """Directory of the shipped resource folder ``name`` ("backends" or "templates")."""
    candidates = [_PACKAGE_DIR / "_resources" / name, _PACKAGE_DIR.parents[1] / name]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise RuntimeFailure(
        f"the resource folder '{name}' is missing (looked in {', '.join(map(str, candidates))})",
        hint="reinstall mlpfctl (pip install -e . from a checkout, or the wheel)",
    )
