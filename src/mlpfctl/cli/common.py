"""Options shared by every command, and the one call that resolves the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from mlpfctl.config import Resolved


def path_arg(value: str) -> Path:
    """Typer parser for path options: an empty string would silently mean the working directory."""
    if not str(value).strip():
        raise typer.BadParameter("an empty path is not allowed")
    return Path(value)


PATH_METAVAR = "<path>"  # what Typer shows for plain Path options


def path_option(*names: str, **kwargs: Any) -> Any:
    """``typer.Option`` for a path: an empty string is refused instead of meaning "."."""
    return typer.Option(*names, parser=path_arg, metavar=PATH_METAVAR, **kwargs)


def path_argument(**kwargs: Any) -> Any:
    """``typer.Argument`` for a path (an empty string is refused)."""
    return typer.Argument(parser=path_arg, **kwargs)


ConfigOpt = Annotated[
    Path | None,
    path_option(
        "--config", "-c", help="TOML config file (default: ./mlpfctl.toml if present).", show_default=False
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override any config key: --set section.key=value (repeatable).", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would be done; change nothing.")]


def load_config(
    config: Path | None, sets: list[str] | None, flags: dict[str, tuple[str, Any]] | None = None
) -> Resolved:
    """Resolve defaults < file < env < flags < --set (``--set`` is applied last, so it wins)."""
    from mlpfctl.config import flag_overrides, parse_set, resolve

    overrides = flag_overrides(flags or {}) + parse_set(sets or [])
    return resolve(config, overrides)


def int_list(text: str, option: str) -> list[int]:
    """``--workers 1,4,16``: sorted distinct positive integers, or a usage error naming the option."""
    from mlpfctl.errors import UsageError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not a comma-separated list of integers", f"example: {option} 1,2,4,8"
        ) from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{option} {text!r} needs positive integers", f"example: {option} 1,2,4,8")
    return sorted(set(values))
