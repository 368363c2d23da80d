"""MLPF models: shapes, padding invariance through the attention mask, presets, FLOPs."""

from __future__ import annotations

import pytest
import torch

from mlpfctl.config.schema import ModelSection
from mlpfctl.errors import ConfigError
from mlpfctl.models.flops import forward_flops, train_flops
from mlpfctl.models.registry import build_model, count_parameters
from mlpfctl.models.spec import ModelSpec, resolve_spec


def make_spec(**overrides: object) -> ModelSpec:
    section = ModelSection(**{"preset": "tiny", **overrides})  # type: ignore[arg-type]
    return resolve_spec(section, num_features=17, num_classes=6, num_element_types=2)


def random_events(batch: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, 17, generator=gen)
    x[..., 0] = torch.randint(1, 3, (batch, n), generator=gen).float()
    x[..., 1] = x[..., 1].abs() + 0.1
    x[..., 5] = x[..., 5].abs() + 0.1
    mask = torch.ones(batch, n, dtype=torch.bool)
    return x, mask


@pytest.mark.parametrize("kind", ["attention", "gnnlsh"])
def test_forward_shapes(kind: str) -> None:
    model = build_model(make_spec(type=kind))
    x, mask = random_events(3, 21)
    binary, cls, reg = model(x, mask)
    assert binary.shape == (3, 21, 2) and cls.shape == (3, 21, 6) and reg.shape == (3, 21, 5)


@pytest.mark.parametrize("kind", ["attention", "gnnlsh"])
def test_padding_does_not_change_real_elements(kind: str) -> None:
    model = build_model(make_spec(type=kind)).eval()
    x, mask = random_events(1, 20)
    padded_x = torch.cat([x, torch.zeros(1, 13, 17)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 13, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        short = model(x, mask)
        long = model(padded_x, padded_mask)
    for a, b in zip(short, long, strict=True):
        torch.testing.assert_close(a, b[:, :20], atol=1e-5, rtol=1e-5)


def test_without_mask_padding_leaks_into_attention() -> None:
    """The reference's unmasked attention (attention_mask=false): padded keys change the result."""
    model = build_model(make_spec(attention_mask=False)).eval()
    x, mask = random_events(1, 20)
    padded_x = torch.cat([x, torch.zeros(1, 13, 17)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 13, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        diff = (model(x, mask)[0] - model(padded_x, padded_mask)[0][:, :20]).abs().max()
    assert diff > 1e-4


def test_clic_preset_matches_reference_hyperparameters() -> None:
    spec = resolve_spec(ModelSection(), num_features=17, num_classes=6, num_element_types=2)
    assert (spec.num_layers, spec.num_heads, spec.head_dim, spec.embed_dim, spec.activation) == (
        3,
        16,
        16,
        256,
        "elu",
    )
    params = count_parameters(build_model(spec))
    # Same order as the reference's 2,719,506 (heads differ slightly in their inputs).
    assert 2_000_000 < params < 3_500_000


def test_explicit_keys_override_the_preset() -> None:
    spec = make_spec(num_layers=4, num_heads=3, head_dim=8, width=24, activation="gelu", dropout=0.2)
    assert (spec.num_layers, spec.num_heads, spec.head_dim, spec.width, spec.activation, spec.dropout) == (
        4,
        3,
        8,
        24,
        "gelu",
        0.2,
    )
    model = build_model(spec)
    assert len(model.layers) == 4


def test_unknown_preset_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="preset"):
        make_spec(preset="huge")


def test_flops_quadratic_in_elements_for_attention() -> None:
    spec = make_spec()
    model = build_model(spec)
    f100, f200 = forward_flops(model, spec, 100), forward_flops(model, spec, 200)
    assert 2 * f100 < f200 < 4 * f100
    assert train_flops(model, spec, [100, 200]) == pytest.approx(3 * (f100 + f200))


def test_flops_count_every_linear_layer() -> None:
    spec = make_spec()
    model = build_model(spec)
    macs = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    attention = (
        spec.num_layers * 2 * 1 * 1 * spec.num_heads * spec.head_dim + 4 * spec.num_heads * spec.head_dim
    )
    assert forward_flops(model, spec, 1) == pytest.approx(2 * (macs + attention))
