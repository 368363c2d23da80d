"""Resolve the ``[model]`` config section and its preset into concrete hyperparameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mlpfctl.config.schema import ModelSection
from mlpfctl.errors import ConfigError

# The reference CLIC defaults (mlpf-reference.md §6) and a tiny preset for tests and smoke runs.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "clic": {
        "attention": {
            "num_layers": 3,
            "num_heads": 16,
            "head_dim": 16,
            "width": 256,
            "activation": "elu",
            "dropout": 0.0,
            "bin_size": 100,
            "distance_dim": 128,
        },
        "gnnlsh": {
            "num_layers": 2,
            "num_heads": 1,
            "head_dim": 128,
            "width": 128,
            "activation": "elu",
            "dropout": 0.0,
            "bin_size": 100,
            "distance_dim": 128,
        },
    },
    "tiny": {
        "attention": {
            "num_layers": 1,
            "num_heads": 2,
            "head_dim": 16,
            "width": 32,
            "activation": "elu",
            "dropout": 0.0,
            "bin_size": 16,
            "distance_dim": 16,
        },
        "gnnlsh": {
            "num_layers": 1,
            "num_heads": 1,
            "head_dim": 32,
            "width": 32,
            "activation": "elu",
            "dropout": 0.0,
            "bin_size": 16,
            "distance_dim": 16,
        },
    },
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a model: the resolved hyperparameters and the data shape."""

    type: str
    num_features: int
    num_classes: int
    num_element_types: int
    num_layers: int
    num_heads: int
    head_dim: int
    width: int
    activation: str
    dropout: float
    input_encoding: str
    bin_size: int
    distance_dim: int
    attention_mask: bool

    @property
    def embed_dim(self) -> int:
        """Backbone width: heads x head_dim for attention, ``width`` for GNN-LSH."""
        return self.num_heads * self.head_dim if self.type == "attention" else self.width

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_spec(
    section: ModelSection, *, num_features: int, num_classes: int, num_element_types: int
) -> ModelSpec:
    """Fill every ``None`` field of ``section`` from its preset."""
    preset = PRESETS.get(section.preset)
    if preset is None:
        raise ConfigError(f"unknown model preset {section.preset!r}", f"available: {', '.join(PRESETS)}")
    base = preset[section.type]
    values = {k: (getattr(section, k) if getattr(section, k) is not None else v) for k, v in base.items()}
    return ModelSpec(
        type=section.type,
        num_features=num_features,
        num_classes=num_classes,
        num_element_types=num_element_types,
        input_encoding=section.input_encoding,
        attention_mask=section.attention_mask,
        **values,
    )
