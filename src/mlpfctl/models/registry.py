"""Models by name, and the one call that builds a model from the config.

Importing this module imports no torch: the configuration schema takes ``model.type``'s choices
from ``NAMES``, and a model's module is imported only when it is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mlpfctl.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from mlpfctl.config.schema import ModelSection
    from mlpfctl.data.events import DatasetSchema
    from mlpfctl.models.spec import ModelSpec


def _attention(spec: ModelSpec) -> nn.Module:
    from mlpfctl.models.attention import AttentionMLPF

    return AttentionMLPF(spec)


def _gnnlsh(spec: ModelSpec) -> nn.Module:
    from mlpfctl.models.gnnlsh import GNNLSHMLPF

    return GNNLSHMLPF(spec)


MODELS: dict[str, Callable[[ModelSpec], nn.Module]] = {"attention": _attention, "gnnlsh": _gnnlsh}
NAMES: tuple[str, ...] = tuple(MODELS)


def build_model(spec: ModelSpec) -> nn.Module:
    try:
        factory = MODELS[spec.type]
    except KeyError:
        raise ConfigError(
            f"model type {spec.type!r} not found in registry", f"available names: {', '.join(MODELS)}"
        ) from None
    return factory(spec)


def spec_for(section: ModelSection, schema: DatasetSchema) -> ModelSpec:
    """The model spec for a dataset: feature count, classes and element types come from the data."""
    from mlpfctl.models.spec import resolve_spec

    return resolve_spec(
        section,
        num_features=schema.num_features,
        num_classes=schema.num_classes,
        num_element_types=max(schema.element_types) if schema.element_types else 1,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
