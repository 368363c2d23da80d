"""Search spaces: TOML files and built-in presets, sampled define-by-run through an Optuna trial.

A search-space file has one ``[params."NAME"]`` table per parameter, in sampling order::

    [params."train.lr"]
    type = "float"          # float | int | categorical
    low = 1e-4
    high = 3e-3
    log = true              # float/int: sample on a log scale
    # step = 0.05           # float/int: quantise (not with log)
    # grid = [1e-4, 1e-3]   # float only: the values the grid sampler enumerates

    [params."train.momentum"]
    type = "float"
    low = 0.8
    high = 0.99
    when = { "train.optimizer" = ["sgd"] }   # conditional: sampled only for these parent values

For the MLPF objective the names are config keys (``train.lr``, ``model.num_layers``, ...); a generic
objective (``--objective module:function``) receives whatever names the file declares.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpfctl.errors import ConfigError

if TYPE_CHECKING:
    import optuna

Scalar = bool | int | float | str | None
_TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its distribution and the condition under which it exists."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Scalar, ...] = ()
    grid: tuple[float, ...] = ()
    when: Mapping[str, tuple[Scalar, ...]] = field(default_factory=dict)

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether this parameter exists given the values sampled so far."""
        return all(key in values and values[key] in allowed for key, allowed in self.when.items())

    def suggest(self, trial: optuna.Trial) -> Scalar:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self) -> list[Scalar]:
        if self.type == "categorical":
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.grid:
            return list(self.grid)
        if self.step:
            count = round((self.high - self.low) / self.step)
            return [round(self.low + i * self.step, 12) for i in range(count + 1)]
        raise ConfigError(
            f"search-space parameter '{self.name}' is a continuous float: "
            "the grid sampler cannot enumerate it",
            f'add grid = [...] or step = ... to [params."{self.name}"], or use another --sampler',
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            data["choices"] = list(self.choices)
        else:
            data.update(low=self.low, high=self.high)
            if self.log:
                data["log"] = True
            if self.step is not None:
                data["step"] = self.step
            if self.grid:
                data["grid"] = list(self.grid)
        if self.when:
            data["when"] = {k: list(v) for k, v in self.when.items()}
        return data


@dataclass(frozen=True)
class SearchSpace:
    """An ordered list of parameters (parents before the parameters conditioned on them)."""

    params: tuple[Param, ...]
    name: str = "custom"

    def suggest(self, trial: optuna.Trial) -> dict[str, Scalar]:
        """Sample every active parameter through ``trial`` (define-by-run; conditionals skipped)."""
        values: dict[str, Scalar] = {}
        for param in self.params:
            if param.active(values):
                values[param.name] = param.suggest(trial)
        return values

    def grid(self) -> list[dict[str, Scalar]]:
        """Every grid point, conditional parameters expanded only where they are active."""
        points: list[dict[str, Scalar]] = [{}]
        for param in self.params:
            values = param.grid_values()
            expanded: list[dict[str, Scalar]] = []
            for point in points:
                if param.active(point):
                    expanded.extend({**point, param.name: value} for value in values)
                else:
                    expanded.append(point)
            points = expanded
        return points

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": {p.name: p.to_dict() for p in self.params}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "search space") -> SearchSpace:
        params_data = data.get("params")
        if not isinstance(params_data, Mapping) or not params_data:
            raise ConfigError(
                f'{source}: no [params."NAME"] tables',
                'declare at least one parameter, e.g. [params."train.lr"] '
                'type = "float" low = 1e-4 high = 1e-2',
            )
        unknown = set(data) - {"name", "params"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown top-level keys {sorted(unknown)}", 'only "name" and [params."..."] tables'
            )
        params: list[Param] = []
        for name, body in params_data.items():
            params.append(_parse_param(str(name), body, source, [p.name for p in params]))
        return cls(tuple(params), str(data.get("name", "custom")))


def _parse_param(name: str, body: Any, source: str, earlier: Sequence[str]) -> Param:
    where = f'{source}: [params."{name}"]'
    if not isinstance(body, Mapping):
        raise ConfigError(f"{where} must be a table", 'write [params."NAME"] with type = ... below it')
    allowed = {"type", "low", "high", "log", "step", "choices", "grid", "when"}
    extra = set(body) - allowed
    if extra:
        raise ConfigError(
            f"{where}: unknown keys {sorted(extra)}", f"allowed keys: {', '.join(sorted(allowed))}"
        )
    kind = body.get("type")
    if kind not in _TYPES:
        raise ConfigError(f"{where}: type {kind!r} is not one of {', '.join(_TYPES)}", 'set type = "float"')
    when: dict[str, tuple[Scalar, ...]] = {}
    raw_when = body.get("when", {})
    if not isinstance(raw_when, Mapping):
        raise ConfigError(
            f"{where}: 'when' must be a table", 'example: when = { "train.optimizer" = ["sgd"] }'
        )
    for parent, allowed_values in raw_when.items():
        if parent not in earlier:
            raise ConfigError(
                f"{where}: condition on '{parent}', which is not declared before it",
                "declare the parent parameter earlier in the file (parameters are sampled in order)",
            )
        values = allowed_values if isinstance(allowed_values, list) else [allowed_values]
        when[str(parent)] = tuple(values)
    if kind == "categorical":
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(
                f"{where}: categorical needs a non-empty 'choices' list", 'choices = ["a", "b"]'
            )
        if any(not isinstance(c, bool | int | float | str) for c in choices):
            raise ConfigError(f"{where}: choices must be numbers, strings or booleans", "use plain values")
        return Param(name, kind, choices=tuple(choices), when=when)
    low, high = body.get("low"), body.get("high")
    if not isinstance(low, int | float) or not isinstance(high, int | float) or isinstance(low, bool):
        raise ConfigError(f"{where}: needs numeric 'low' and 'high'", "example: low = 1e-4 high = 1e-2")
    if not low < high:
        raise ConfigError(f"{where}: low = {low} must be < high = {high}", "swap or widen the bounds")
    log = bool(body.get("log", False))
    step = body.get("step")
    if log and low <= 0:
        raise ConfigError(f"{where}: log scale needs low > 0 (got {low})", "raise 'low' or drop log = true")
    if step is not None and (log or not isinstance(step, int | float) or step <= 0):
        raise ConfigError(f"{where}: step must be > 0 and cannot be combined with log", "drop one of them")
    if kind == "int" and (
        not float(low).is_integer() or not float(high).is_integer() or (step and not float(step).is_integer())
    ):
        raise ConfigError(f"{where}: int parameters need integer low/high/step", "use whole numbers")
    grid = body.get("grid", [])
    if grid and (kind != "float" or not all(isinstance(g, int | float) and low <= g <= high for g in grid)):
        raise ConfigError(
            f"{where}: 'grid' lists float values within [low, high]", f"example: grid = [{low}, {high}]"
        )
    return Param(
        name,
        kind,
        low=float(low),
        high=float(high),
        log=log,
        step=None if step is None else float(step),
        grid=tuple(float(g) for g in grid),
        when=when,
    )


def _preset_mlpf() -> dict[str, Any]:
    # The CERN openlab MLPF search (Ray Tune era, mlpf-reference.md §10) widened to continuous
    # ranges; train.steps/val_every are never sampled (pitfall §13.1: every trial must report at
    # every rung).
    return {
        "name": "mlpf",
        "params": {
            "train.optimizer": {"type": "categorical", "choices": ["adamw", "lamb", "sgd"]},
            "train.lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
            "model.num_layers": {"type": "int", "low": 1, "high": 4},
            "model.num_heads": {"type": "categorical", "choices": [2, 4, 8]},
            "model.head_dim": {"type": "categorical", "choices": [8, 16, 32]},
            "model.dropout": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.05},
            "model.activation": {"type": "categorical", "choices": ["elu", "relu", "gelu", "leakyrelu"]},
            "data.max_elements_per_batch": {"type": "categorical", "choices": [2048, 4096, 8192]},
            "train.weight_decay": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "train.lr_scaling": {"type": "categorical", "choices": ["none", "linear", "sqrt"]},
            "train.warmup_steps": {"type": "int", "low": 0, "high": 100, "step": 10},
        },
    }


def _preset_mlpf_small() -> dict[str, Any]:
    # CPU-sized ranges for the README demo (embedded dataset, 2 cores): narrow model, small batches.
    return {
        "name": "mlpf-small",
        "params": {
            "train.optimizer": {"type": "categorical", "choices": ["adamw", "lamb"]},
            "train.lr": {"type": "float", "low": 2e-4, "high": 5e-3, "log": True},
            "model.num_layers": {"type": "int", "low": 1, "high": 2},
            "model.num_heads": {"type": "categorical", "choices": [2, 4]},
            "model.head_dim": {"type": "categorical", "choices": [8, 16]},
            "model.dropout": {"type": "float", "low": 0.0, "high": 0.2, "step": 0.05},
            "model.activation": {"type": "categorical", "choices": ["elu", "relu", "gelu"]},
            "train.weight_decay": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "train.warmup_steps": {"type": "int", "low": 0, "high": 20, "step": 10},
        },
    }


def _preset_quadratic() -> dict[str, Any]:
    # A small space for generic objectives and tests: two floats, an int and a conditional.
    return {
        "name": "quadratic",
        "params": {
            "x": {"type": "float", "low": -5.0, "high": 5.0},
            "y": {"type": "float", "low": -5.0, "high": 5.0},
            "kind": {"type": "categorical", "choices": ["a", "b"]},
            "n": {"type": "int", "low": 1, "high": 8, "when": {"kind": ["b"]}},
        },
    }


PRESETS = {"mlpf": _preset_mlpf, "mlpf-small": _preset_mlpf_small, "quadratic": _preset_quadratic}


def load_space(spec: str) -> SearchSpace:
    """A preset by name, else a TOML search-space file."""
    if spec in PRESETS:
        return SearchSpace.from_dict(PRESETS[spec](), f"preset '{spec}'")
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"search space '{spec}' is neither a preset nor a file",
            f"presets: {', '.join(sorted(PRESETS))}; or pass the path of a TOML search-space file",
        )
    from mlpfctl.compat import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"search-space file '{path}' is not valid TOML: {exc}", "fix the syntax") from None
    data.setdefault("name", path.stem)
    return SearchSpace.from_dict(data, f"search-space file '{path}'")


def same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Parameter sets equal up to float rounding noise (storage round trips)."""
    if a.keys() != b.keys():
        return False
    for key, value in a.items():
        other = b[key]
        if isinstance(value, float) and isinstance(other, float):
            if not math.isclose(value, other, rel_tol=1e-12, abs_tol=1e-15):
                return False
        elif value != other:
            return False
    return True


def config_key(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable identity of a parameter set (floats rounded to 12 significant digits)."""
    return tuple(sorted((k, float(f"{v:.12g}") if isinstance(v, float) else v) for k, v in params.items()))
