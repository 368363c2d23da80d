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


def assert_padding_invariant(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> None:
    n = x.shape[1]
    padded_x = torch.cat([x, torch.zeros(1, 13, x.shape[2])], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 13, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        short = model.eval()(x, mask)
        long = model(padded_x, padded_mask)
    for a, b in zip(short, long, strict=True):
        torch.testing.assert_close(a, b[:, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["attention", "gnnlsh"])
def test_padding_does_not_change_real_elements(kind: str) -> None:
    assert_padding_invariant(build_model(make_spec(type=kind)), *random_events(1, 20))


def test_without_mask_padding_leaks_into_attention() -> None:
    """The reference's unmasked attention (attention_mask=false): padded keys change the result."""
    model = build_model(make_spec(attention_mask=False)).eval()
    x, mask = random_events(1, 20)
    padded_x = torch.cat([x, torch.zeros(1, 13, 17)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 13, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        diff = (model(x, mask)[0] - model(padded_x, padded_mask)[0][:, :20]).abs().max()
    assert diff > 1e-4


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_clic_preset_is_the_reference_pyg_clic_v1_layer_by_layer() -> None:
    """Parameter counts per block as in jpata/particleflow 7e8a710 ``MLPF`` for pyg-clic-v1
    (17 features, 6 classes, element types 1 and 2): 2,719,506 in total."""
    spec = resolve_spec(ModelSection(), num_features=17, num_classes=6, num_element_types=2)
    assert (spec.num_layers, spec.num_heads, spec.head_dim, spec.embed_dim, spec.activation) == (
        3,
        16,
        16,
        256,
        "elu",
    )
    assert (spec.input_scaling, spec.link_features, spec.outputs) == ("none", False, "reference")
    model = build_model(spec)
    assert count_parameters(model) == 2_719_506
    assert _params(model.encode) == 136_704  # nn0: ffn(17 -> 256 -> 2 x 256)
    assert [_params(layer) for layer in model.layers] == [395_776] * 3
    # The reference counts the two task queries (256 each) outside its 396,288-parameter readouts.
    assert [_params(r) for r in (model.readout_id, model.readout_reg)] == [396_288 + 256] * 2
    assert _params(model.norm_id) == _params(model.norm_reg) == 512
    heads = model.heads
    assert (_params(heads.binary), _params(heads.cls)) == (66_818, 67_846)
    assert _params(heads.reg.pt) == _params(heads.reg.energy) == 2 * 66_561  # one FFN per element type
    assert [_params(a) for a in heads.reg.angles] == [66_818] * 3  # orig * a + b
    # Only the last backbone block takes the initial embedding as its queries; FFNs end in ELU.
    assert [layer.elems_as_queries for layer in model.layers] == [False, False, True]
    for block in (model.layers[0].ffn, model.readout_id.ffn):
        assert isinstance(block[-1], torch.nn.ELU)


def test_reference_energy_is_at_least_the_predicted_momentum() -> None:
    model = build_model(make_spec(input_scaling="none", link_features="off", outputs="reference",
                                  track_momentum="regress")).eval()  # fmt: skip
    x, mask = random_events(2, 15)
    with torch.no_grad():
        reg = model(x, mask)[2]
    pt = torch.exp(reg[..., 0]) * x[..., 1]
    p = pt * torch.cosh(reg[..., 1])
    energy = torch.exp(reg[..., 4]) * x[..., 5]
    assert torch.all(energy >= p * (1 - 1e-5))


def test_corrections_start_at_the_elements_own_values_and_keep_tracks() -> None:
    spec = make_spec()
    assert (spec.outputs, spec.track_momentum) == ("corrections", "keep")
    model = build_model(spec).eval()
    x, mask = random_events(2, 15)
    with torch.no_grad():
        reg = model(x, mask)[2]
    torch.testing.assert_close(reg[..., 0], torch.zeros_like(reg[..., 0]))  # no link features: no offset
    torch.testing.assert_close(reg[..., 1:4], x[..., 2:5])
    torch.testing.assert_close(reg[..., 4], torch.zeros_like(reg[..., 4]))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        reg = model(x, mask)[2]
    on_track = x[..., 0] == 1
    assert float(reg[..., 0][on_track].abs().max()) == 0.0  # track pT kept
    torch.testing.assert_close(reg[..., 1:4][on_track], x[..., 2:5][on_track])
    assert float(reg[..., 0][~on_track].abs().max()) > 0  # clusters are corrected


def test_link_features_need_a_detector_only_when_forced() -> None:
    from mlpfctl.data.detectors import KNOWN_DETECTORS

    assert not make_spec().link_features  # auto, and the dataset has no description
    with pytest.raises(ConfigError, match="detector description"):
        make_spec(link_features="on")
    spec = resolve_spec(
        ModelSection(preset="tiny"),
        num_features=17,
        num_classes=6,
        num_element_types=2,
        detector=KNOWN_DETECTORS["clic"],
    )
    assert spec.link_features and spec.input_dim == 27 and spec.detector is not None
    assert spec.detector["b_field"] == 4.0
    chosen = resolve_spec(
        ModelSection(preset="tiny", detector="cld"),
        num_features=17,
        num_classes=6,
        num_element_types=2,
        detector=KNOWN_DETECTORS["clic"],
    )
    assert chosen.detector is not None and chosen.detector["b_field"] == 2.0
    assert ModelSpec.from_dict(spec.as_dict()) == spec
    with pytest.raises(ConfigError, match="keep needs"):
        make_spec(outputs="reference", track_momentum="keep")


@pytest.mark.parametrize("kind", ["attention", "gnnlsh"])
def test_link_features_keep_padding_invariance(kind: str) -> None:
    from mlpfctl.data.detectors import KNOWN_DETECTORS

    spec = resolve_spec(
        ModelSection(preset="tiny", type=kind),
        num_features=17,
        num_classes=6,
        num_element_types=2,
        detector=KNOWN_DETECTORS["clic"],
    )
    x, mask = random_events(1, 20)
    x[..., 13] = 1e-3 * torch.sign(torch.randn(1, 20))  # omega
    assert_padding_invariant(build_model(spec), x, mask)


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
