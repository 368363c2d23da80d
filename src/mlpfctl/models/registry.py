"""Models by name, and the one call that builds a model from the config."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mlpfctl.config.schema import ModelSection
from mlpfctl.data.events import CLIC_FEATURE_NAMES, DatasetSchema
from mlpfctl.errors import ConfigError
from mlpfctl.models.spec import ModelSpec, resolve_spec


def _attention(spec: ModelSpec) -> nn.Module:
    from mlpfctl.models.attention import AttentionMLPF

    return AttentionMLPF(spec)


def _gnnlsh(spec: ModelSpec) -> nn.Module:
    from mlpfctl.models.gnnlsh import GNNLSHMLPF

    return GNNLSHMLPF(spec)


MODELS: dict[str, Callable[[ModelSpec], nn.Module]] = {"attention": _attention, "gnnlsh": _gnnlsh}


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
    if section.detector not in (None, "none") and schema.feature_names != CLIC_FEATURE_NAMES:
        raise ConfigError(
            f"model.detector={section.detector} needs Key4hep (CLIC/CLD) features; "
            f"this dataset is {schema.name}",
            "unset model.detector (link features are off for this format)",
        )
    return resolve_spec(
        section,
        num_features=schema.num_features,
        num_classes=schema.num_classes,
        num_element_types=max(schema.element_types) if schema.element_types else 1,
        detector=schema.detector if schema.feature_names == CLIC_FEATURE_NAMES else None,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
