"""Layered configuration with provenance.

Precedence, lowest first:
    1. defaults in ``mlpfctl.config.schema``
    2. a TOML file: ``--config PATH``, else ``./mlpfctl.toml`` when it exists
    3. environment variables ``MLPFCTL_<SECTION>__<KEY>`` (e.g. ``MLPFCTL_TRAIN__LR=1e-3``)
    4. command-line flags and repeatable ``--set section.key=value`` (later wins)

Every value is type-checked and range-checked; unknown keys are errors with a close-match
suggestion. ``Resolved.sources`` records where each value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import operator
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from mlpfctl.compat import tomllib
from mlpfctl.config.schema import Config
from mlpfctl.errors import ConfigError

ENV_PREFIX = "MLPFCTL_"
DEFAULT_FILE = "mlpfctl.toml"
_MISSING = object()


@dataclass(frozen=True)
class Override:
    """One value from the environment or the command line; ``value`` may be a string to parse."""

    key: str
    value: Any
    source: str


@dataclass
class FieldInfo:
    section: str
    name: str
    type: Any
    default: Any
    doc: str
    meta: Mapping[str, Any]

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


@dataclass
class Resolved:
    config: Config
    sources: dict[str, str]

    def as_dict(self, mask_secrets: bool = True) -> dict[str, dict[str, Any]]:
        return to_dict(self.config, mask_secrets=mask_secrets)


def schema_fields() -> dict[str, FieldInfo]:
    """Every config key ("section.name") with its type, default and documentation."""
    out: dict[str, FieldInfo] = {}
    root_hints = typing.get_type_hints(Config)
    for section in dataclasses.fields(Config):
        cls = root_hints[section.name]
        hints = typing.get_type_hints(cls)
        instance = cls()
        for f in dataclasses.fields(cls):
            info = FieldInfo(
                section.name,
                f.name,
                hints[f.name],
                getattr(instance, f.name),
                str(f.metadata.get("doc", "")),
                f.metadata,
            )
            out[info.key] = info
    return out


def _suggest(name: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _unknown_key(key: str, source: str, fields: Mapping[str, FieldInfo]) -> ConfigError:
    sections = sorted({f.section for f in fields.values()})
    section, _, name = key.partition(".")
    if section not in sections:
        guess = _suggest(section, sections)
        hint = (f"did you mean '{guess}'?" if guess else "") + f" sections: {', '.join(sections)}"
        return ConfigError(f"unknown config section '{section}' in '{key}' ({source})", hint.strip())
    names = [f.name for f in fields.values() if f.section == section]
    guess = _suggest(name, names)
    hint = f"did you mean '{section}.{guess}'?" if guess else f"keys in [{section}]: {', '.join(names)}"
    return ConfigError(f"unknown config key '{key}' ({source})", hint + " (see: mlpfctl config show)")


def _describe_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe_type(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe_type(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "none"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _coerce(value: Any, tp: Any) -> Any:
    """Convert ``value`` (typed from TOML/flags, or a string from env/--set) to ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if type(None) in args and (
            value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))
        ):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except (TypeError, ValueError):
                continue
        raise TypeError(value)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                value = tomllib.loads(f"v = {text}")["v"]
            else:
                value = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise TypeError(value)
        return [_coerce(item, item_tp) for item in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _parse_bool(value)
        raise TypeError(value)
    if tp is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return int(value.strip())
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(value)
    if tp is float:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise TypeError(value)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise TypeError(value)
    if tp is dict or typing.get_origin(tp) is dict:
        if isinstance(value, dict):
            return value
        raise TypeError(value)
    raise TypeError(f"unsupported config type {tp!r}")


_RULES: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "ge": (">=", operator.ge),
    "gt": (">", operator.gt),
    "le": ("<=", operator.le),
    "lt": ("<", operator.lt),
}


def _check_rules(info: FieldInfo, value: Any, source: str) -> None:
    meta = info.meta
    items = value if isinstance(value, list) else [value]
    for item in items:
        if item is None:
            continue
        choices = meta.get("choices")
        if choices is not None and item not in choices:
            guess = _suggest(str(item), [str(c) for c in choices])
            hint = (f"did you mean '{guess}'? " if guess else "") + f"allowed: {', '.join(map(str, choices))}"
            raise ConfigError(f"config key '{info.key}': value {item!r} ({source}) is not allowed", hint)
        if isinstance(item, int | float) and not isinstance(item, bool):
            for rule, (symbol, holds) in _RULES.items():
                bound = meta.get(rule)
                if bound is not None and not holds(item, bound):
                    raise ConfigError(
                        f"config key '{info.key}': value {item!r} ({source}) must be {symbol} {bound}",
                        f"{info.doc} Set a value {symbol} {bound}.",
                    )


def _apply(
    values: dict[str, Any],
    sources: dict[str, str],
    key: str,
    raw: Any,
    source: str,
    fields: Mapping[str, FieldInfo],
) -> None:
    info = fields.get(key)
    if info is None:
        raise _unknown_key(key, source, fields)
    try:
        value = _coerce(raw, info.type)
    except (TypeError, ValueError, tomllib.TOMLDecodeError):
        raise ConfigError(
            f"config key '{key}': value {raw!r} ({source}) is not {_describe_type(info.type)}",
            f"{info.doc} Example: --set {key}={_example(info)}",
        ) from None
    _check_rules(info, value, source)
    values[key] = value
    sources[key] = source


def _example(info: FieldInfo) -> str:
    default = info.default
    if isinstance(default, list):
        return ",".join(map(str, default)) or "1,2"
    if default is None:
        return "..."
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def _flatten_toml(data: Mapping[str, Any], source: str, fields: Mapping[str, FieldInfo]) -> list[Override]:
    out: list[Override] = []
    for section, body in data.items():
        if not isinstance(body, dict):
            raise (
                _unknown_key(section, source, fields)
                if "." not in section
                else ConfigError(
                    f"'{section}' ({source}) must be a [section] table",
                    "write it as [section] with key = value",
                )
            )
        for name, value in body.items():
            key = f"{section}.{name}"
            if isinstance(value, dict) and key not in fields:
                raise _unknown_key(key, source, fields)
            out.append(Override(key, value, source))
    return out


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist", "check the --config path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file '{path}' is not valid TOML: {exc}", "fix the syntax (see https://toml.io)"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"config file '{path}' cannot be read: {exc.strerror}", "check permissions"
        ) from None


def env_overrides(env: Mapping[str, str], fields: Mapping[str, FieldInfo]) -> list[Override]:
    out: list[Override] = []
    for var, value in sorted(env.items()):
        if not var.startswith(ENV_PREFIX) or "__" not in var[len(ENV_PREFIX) :]:
            continue
        section, _, name = var[len(ENV_PREFIX) :].partition("__")
        out.append(Override(f"{section.lower()}.{name.lower()}", value, f"env {var}"))
    return out


def parse_set(items: Sequence[str]) -> list[Override]:
    """Parse repeatable ``--set section.key=value`` items."""
    out: list[Override] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(
                f"--set {item!r} is not of the form section.key=value", "example: --set train.lr=1e-3"
            )
        out.append(Override(key.strip(), value, f"--set {key.strip()}"))
    return out


def resolve(
    config_path: str | os.PathLike[str] | None = None,
    overrides: Sequence[Override] = (),
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Resolved:
    """Resolve the configuration from all layers (see the module docstring)."""
    fields = schema_fields()
    values: dict[str, Any] = {key: info.default for key, info in fields.items()}
    sources: dict[str, str] = dict.fromkeys(fields, "default")

    path: Path | None
    if config_path is not None:
        path = Path(config_path)
    else:
        candidate = (cwd or Path.cwd()) / DEFAULT_FILE
        path = candidate if candidate.is_file() else None
    layers: list[Override] = []
    if path is not None:
        layers += _flatten_toml(read_toml(path), f"file {path}", fields)
    layers += env_overrides(os.environ if env is None else env, fields)
    layers += list(overrides)
    for item in layers:
        _apply(values, sources, item.key, item.value, item.source, fields)

    sections: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, _, name = key.partition(".")
        sections.setdefault(section, {})[name] = value
    hints = typing.get_type_hints(Config)
    config = Config(**{name: hints[name](**body) for name, body in sections.items()})
    return Resolved(config, sources)


def to_dict(config: Config, mask_secrets: bool = True) -> dict[str, dict[str, Any]]:
    fields = schema_fields()
    out: dict[str, dict[str, Any]] = {}
    for _key, info in fields.items():
        value = getattr(getattr(config, info.section), info.name)
        if mask_secrets and info.meta.get("secret") and value:
            value = mask_secret(str(value))
        out.setdefault(info.section, {})[info.name] = value
    return out


def mask_secret(text: str) -> str:
    """Hide a password inside a URL (``postgresql://u:pw@h/db`` -> ``postgresql://u:***@h/db``)."""
    if "://" in text and "@" in text.split("://", 1)[1]:
        scheme, rest = text.split("://", 1)
        creds, _, host = rest.rpartition("@")
        if ":" in creds:
            user = creds.split(":", 1)[0]
            return f"{scheme}://{user}:***@{host}"
        return text
    return "***"


def to_toml(config: Config, mask_secrets: bool = True) -> str:
    """TOML text of ``config`` (None values omitted: TOML has no null)."""
    data = {
        s: {k: v for k, v in body.items() if v is not None}
        for s, body in to_dict(config, mask_secrets).items()
    }
    return tomli_w.dumps(data)


def flag_overrides(flags: Mapping[str, tuple[str, Any]]) -> list[Override]:
    """Overrides from command flags: ``{"train.lr": ("--lr", value)}``; None means not given."""
    return [
        Override(key, value, f"flag {flag}")
        for key, (flag, value) in flags.items()
        if value is not None and value is not _MISSING
    ]
