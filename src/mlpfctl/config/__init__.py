"""Typed, layered configuration (see ``loader`` for the precedence rules)."""

from mlpfctl.config.loader import Override, Resolved, flag_overrides, parse_set, resolve, to_toml
from mlpfctl.config.schema import Config

__all__ = ["Config", "Override", "Resolved", "flag_overrides", "parse_set", "resolve", "to_toml"]
