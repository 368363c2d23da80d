"""Models by name, and the one call that builds a model from the config.

Importing this module imports no torch: the configuration schema takes ``model.type``'s choices
from ``NAMES``, and a model's module is imported only when it is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from mlpfctl.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from mlpfctl.config.schema import ModelSection
    from mlpfctl.data.events import DatasetSchema, Event
    from mlpfctl.models.spec import ModelSpec


def _attention(spec: ModelSpec) -> nn.Module:
    from mlpfctl.models.attention import AttentionMLPF

    return AttentionMLPF(spec)


def _gnnlsh(spec: ModelSpec) -> nn.Module:
    from mlpfctl.models.gnnlsh import GNNLSHMLPF

    return GNNLSHMLPF(spec)


class EventSample(Protocol):
    """Random access to events (an ``EventDataset`` or a list)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Event: ...


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


def spec_for(section: ModelSection, schema: DatasetSchema, sample: EventSample | None = None) -> ModelSpec:
    """The model spec for a dataset: feature count, classes and element types come from the data;
    ``sample`` (training events) gives the statistics ``input_scaling = standard`` needs."""
    from mlpfctl.data.events import CLIC_FEATURE_NAMES
    from mlpfctl.models.spec import preset_value, resolve_spec

    if section.detector not in (None, "none") and schema.feature_names != CLIC_FEATURE_NAMES:
        raise ConfigError(
            f"model.detector={section.detector} needs Key4hep (CLIC/CLD) features; "
            f"this dataset is {schema.name}",
            "unset model.detector (link features are off for this format)",
        )
    num_types = max(schema.element_types) if schema.element_types else 1
    standard = preset_value(section, "input_scaling") == "standard"
    return resolve_spec(
        section,
        num_features=schema.num_features,
        num_classes=schema.num_classes,
        num_element_types=num_types,
        detector=schema.detector if schema.feature_names == CLIC_FEATURE_NAMES else None,
        input_stats=feature_statistics(sample, num_types) if standard and sample is not None else None,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


STATS_EVENTS = 500  # events sampled for input statistics (deterministic: the first ones)


def feature_statistics(sample: EventSample, num_types: int) -> list[list[list[float]]]:
    """Per element type and feature: (median, IQR / 1.349) of sign(x) log(1 + |x|) over the first
    ``STATS_EVENTS`` events of ``sample``; constant features get scale 1. Robust to outliers,
    identical on every rank (the same events), stored in the model spec."""
    import numpy as np

    n = min(len(sample), STATS_EVENTS)
    x = np.concatenate([sample[i].X for i in range(n)]) if n else np.zeros((0, 1), np.float32)
    width = x.shape[1]
    logged = np.sign(x) * np.log1p(np.abs(x))
    stats: list[list[list[float]]] = []
    for t in range(1, num_types + 1):
        rows = logged[np.round(x[:, 0]) == t]
        per_feature = []
        for f in range(width):
            if len(rows) == 0:
                per_feature.append([0.0, 1.0])
                continue
            q25, q50, q75 = np.percentile(rows[:, f], [25, 50, 75])
            scale = (q75 - q25) / 1.349
            if scale <= 1e-6:  # (nearly) constant, or mostly constant: fall back to the spread
                scale = float(np.std(rows[:, f]))
            per_feature.append([float(q50), float(scale) if scale > 1e-6 else 1.0])
        stats.append(per_feature)
    return stats
