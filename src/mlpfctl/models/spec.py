"""Resolve the ``[model]`` config section and its preset into concrete hyperparameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from mlpfctl.config.schema import ModelSection
from mlpfctl.data.detectors import DetectorDescription, known_detector
from mlpfctl.errors import ConfigError

# Per-element link features (mlpfctl.models.features), appended to the input features. Like X,
# a column means one thing on a track and another on a cluster ("track|cluster").
LINK_FEATURE_NAMES: tuple[str, ...] = (
    "calo_eta",
    "calo_sin_phi",
    "calo_cos_phi",
    "reached|linked",
    "log_dist_nearest_cluster|log_dist_nearest_track",
    "log_sum_p_same_cluster|log_sum_p_linked",
    "log_e_linked_cluster|log_n_linked",
    "log_e_over_sum_p",
    "excess_significance",
    "p_share|excess_fraction",
)

# Physics inputs and outputs of the presets that are not the reference (issue #18 measurements,
# docs/physics.md); the reference preset keeps raw inputs and the reference outputs.
_PHYSICS = {
    "input_scaling": "log",
    "link_features": "auto",
    "outputs": "corrections",
    "track_momentum": "keep",
    "head_features": False,
}
_REFERENCE = {
    "input_scaling": "none",
    "link_features": "off",
    "outputs": "reference",
    "track_momentum": "regress",
    "head_features": False,
}

# The reference CLIC model pyg-clic-v1 (mlpf-reference.md §6; 2,719,506 parameters with 17
# features, 6 classes, 2 element types), a CPU-sized physics preset and a tiny one for tests.
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
            **_REFERENCE,
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
            **_REFERENCE,
        },
    },
    "small": {
        "attention": {
            "num_layers": 2,
            "num_heads": 4,
            "head_dim": 16,
            "width": 64,
            "activation": "elu",
            "dropout": 0.0,
            "bin_size": 32,
            "distance_dim": 32,
            **_PHYSICS,
        },
        "gnnlsh": {
            "num_layers": 2,
            "num_heads": 1,
            "head_dim": 64,
            "width": 64,
            "activation": "elu",
            "dropout": 0.0,
            "bin_size": 32,
            "distance_dim": 32,
            **_PHYSICS,
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
            **_PHYSICS,
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
            **_PHYSICS,
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
    input_scaling: str = "none"
    outputs: str = "reference"
    track_momentum: str = "regress"
    head_features: bool = False
    # The detector description (``DetectorDescription.to_dict()``) when link features are on.
    detector: dict[str, Any] | None = None
    # input_scaling = standard: per element type and feature, (center, scale) of sign(x) log(1 + |x|)
    # over a sample of training events ([types][features][2]; column 0, the type, is unused).
    input_stats: list[list[list[float]]] | None = None

    @property
    def embed_dim(self) -> int:
        """Backbone width: heads x head_dim for attention, ``width`` for GNN-LSH."""
        return self.num_heads * self.head_dim if self.type == "attention" else self.width

    @property
    def link_features(self) -> bool:
        return self.detector is not None

    @property
    def input_dim(self) -> int:
        """Features per element the encoder sees: the dataset's plus the link features."""
        return self.num_features + (len(LINK_FEATURE_NAMES) if self.link_features else 0)

    @property
    def head_dim_in(self) -> int:
        """Width of what the output heads see."""
        return self.embed_dim + (self.input_dim if self.head_features else 0)

    def detector_description(self) -> DetectorDescription | None:
        return None if self.detector is None else DetectorDescription.from_dict(self.detector)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """A spec saved by ``as_dict`` (checkpoints, model.json); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"model spec has unknown keys {unknown}", "the run was written by another mlpfctl version"
            )
        return cls(**data)


def _detector(
    section: ModelSection, mode: str, dataset_detector: DetectorDescription | None
) -> dict[str, Any] | None:
    if mode == "off":
        return None
    description = dataset_detector if section.detector is None else known_detector(section.detector)
    if description is None and mode == "on":
        raise ConfigError(
            "model.link_features=on needs a detector description, and this dataset has none",
            "set model.detector=clic|cld|cms, or model.link_features=off (or auto)",
        )
    return None if description is None else description.to_dict()


def preset_value(section: ModelSection, key: str) -> Any:
    """``section.<key>``, or its preset's value when unset."""
    value = getattr(section, key)
    if value is not None:
        return value
    preset = PRESETS.get(section.preset)
    return None if preset is None else preset[section.type].get(key)


def resolve_spec(
    section: ModelSection,
    *,
    num_features: int,
    num_classes: int,
    num_element_types: int,
    detector: DetectorDescription | None = None,
    input_stats: list[list[list[float]]] | None = None,
) -> ModelSpec:
    """Fill every ``None`` field of ``section`` from its preset; ``detector`` is the dataset's,
    ``input_stats`` its feature statistics (needed by ``input_scaling = standard``)."""
    preset = PRESETS.get(section.preset)
    if preset is None:
        raise ConfigError(f"unknown model preset {section.preset!r}", f"available: {', '.join(PRESETS)}")
    base = preset[section.type]
    values = {k: (getattr(section, k) if getattr(section, k) is not None else v) for k, v in base.items()}
    link_mode = values.pop("link_features")
    if values["track_momentum"] == "keep" and values["outputs"] != "corrections":
        raise ConfigError(
            "model.track_momentum=keep needs model.outputs=corrections",
            "set model.outputs=corrections or model.track_momentum=regress",
        )
    if values["input_scaling"] == "standard" and input_stats is None:
        raise ConfigError(
            "model.input_scaling=standard needs feature statistics of the training data",
            "build the spec with mlpfctl.models.registry.spec_for(section, schema, sample_events)",
        )
    return ModelSpec(
        type=section.type,
        num_features=num_features,
        num_classes=num_classes,
        num_element_types=num_element_types,
        input_encoding=section.input_encoding,
        attention_mask=section.attention_mask,
        detector=_detector(section, link_mode, detector),
        input_stats=input_stats if values["input_scaling"] == "standard" else None,
        **values,
    )
