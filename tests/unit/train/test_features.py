"""Physics-informed inputs: helix propagation (the same as the detector simulation's), track-cluster
links and the cluster reference energy, on hand-built events."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlpfctl.data.detectors import KNOWN_DETECTORS, DetectorDescription
from mlpfctl.data.sim.kinematics import propagate
from mlpfctl.models.features import helix_impact, link_features, signed_log
from mlpfctl.models.spec import LINK_FEATURE_NAMES

CLIC = KNOWN_DETECTORS["clic"]
COL = {name: i for i, name in enumerate(LINK_FEATURE_NAMES)}


def track(pt: float, eta: float, phi: float, charge: int, z0: float = 0.0) -> list[float]:
    row = [0.0] * 17
    row[:6] = [1, pt, eta, math.sin(phi), math.cos(phi), pt * math.cosh(eta)]
    row[13] = charge * 3e-4 * CLIC.b_field / pt  # omega
    row[14] = z0
    return row


def cluster(energy: float, eta: float, phi: float) -> list[float]:
    row = [0.0] * 17
    row[:6] = [2, energy / math.cosh(eta), eta, math.sin(phi), math.cos(phi), energy]
    return row


def impact_phi(pt: float, charge: int, phi: float, det: DetectorDescription = CLIC) -> float:
    """Azimuth where a helix from the origin crosses the ECAL barrel."""
    radius = pt / (3e-4 * det.b_field)
    return phi - charge * math.asin(det.ecal_r / (2 * radius))


def event(*rows: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([rows], dtype=torch.float32)
    return x, torch.ones(x.shape[:2], dtype=torch.bool)


def test_helix_matches_the_detector_simulation() -> None:
    rng = np.random.default_rng(1)
    n = 400
    pt = rng.uniform(0.8, 30, n)
    eta = rng.uniform(-2.4, 2.4, n)
    phi = rng.uniform(-math.pi, math.pi, n)
    charge = rng.choice([-1.0, 1.0], n)
    z0 = rng.normal(0, 1.0, n)
    vertex = np.c_[np.zeros(n), np.zeros(n), z0]
    sim = propagate(
        pt, np.sinh(eta), phi, charge, vertex, curvature=3e-4 * CLIC.b_field, radius=CLIC.ecal_r,
        half_length=CLIC.ecal_z, max_eta=3.0,
    )  # fmt: skip
    as_t = {k: torch.tensor(v, dtype=torch.float32) for k, v in dict(pt=pt, eta=eta, phi=phi, z0=z0).items()}
    unit, reached = helix_impact(
        as_t["pt"], as_t["eta"], torch.sin(as_t["phi"]), torch.cos(as_t["phi"]),
        torch.tensor(charge, dtype=torch.float32), as_t["z0"],
        b_field=CLIC.b_field, radius=CLIC.ecal_r, half_length=CLIC.ecal_z,
    )  # fmt: skip
    assert reached.numpy().tolist() == sim.reached.tolist()
    ok = sim.reached
    sim_unit = sim.pos[ok] / np.linalg.norm(sim.pos[ok], axis=1, keepdims=True)
    np.testing.assert_allclose(unit.numpy()[ok], sim_unit, atol=2e-4)


def test_track_links_to_the_cluster_at_its_bent_impact_not_at_its_direction() -> None:
    pt, phi = 2.0, 0.3
    bent = impact_phi(pt, +1, phi)
    assert abs(bent - phi) > 0.3  # a 2 GeV track bends far away from its initial direction
    x, mask = event(
        track(pt, 0.2, phi, +1),
        cluster(2.4, 0.2, bent),  # where the track arrives: its hadron shower plus 0.4 GeV more
        cluster(5.0, 0.2, phi),  # along the initial direction: a photon
    )
    feats, log_ref = link_features(x, mask, CLIC)
    f = feats[0]
    assert f[0, COL["reached|linked"]] == 1
    p = 2.0 * math.cosh(0.2)
    assert f[1, COL["reached|linked"]] == 1 and f[2, COL["reached|linked"]] == 0
    assert f[1, COL["log_sum_p_same_cluster|log_sum_p_linked"]] == pytest.approx(math.log1p(p), rel=1e-5)
    assert f[1, COL["log_e_linked_cluster|log_n_linked"]] == pytest.approx(math.log1p(1.0))
    assert f[0, COL["log_e_linked_cluster|log_n_linked"]] == pytest.approx(math.log1p(2.4), rel=1e-5)
    assert f[0, COL["p_share|excess_fraction"]] == pytest.approx(1.0)
    # The track's calorimeter coordinates are those of the impact point.
    assert math.atan2(f[0, COL["calo_sin_phi"]], f[0, COL["calo_cos_phi"]]) == pytest.approx(bent, abs=1e-4)
    # Reference energy: the linked cluster's excess (floored at one resolution unit), the unlinked one's own.
    sigma = math.hypot(0.55 * math.sqrt(2.4), 0.05 * 2.4)
    assert math.exp(log_ref[0, 1]) * 2.4 == pytest.approx(max(2.4 - p, min(2.4, sigma)), rel=1e-4)
    assert log_ref[0, 0] == 0 and log_ref[0, 2] == 0


def test_two_tracks_share_a_cluster_and_the_excess_is_what_is_left() -> None:
    phi = 1.0
    a, b = track(10.0, -0.5, phi, -1), track(8.0, -0.5, phi + 0.01, -1)
    energy = 10 * math.cosh(-0.5) + 8 * math.cosh(-0.5) + 15.0  # two hadrons and a 15 GeV neutral
    x, mask = event(a, b, cluster(energy, -0.5, impact_phi(9.0, -1, phi)))
    feats, log_ref = link_features(x, mask, CLIC)
    sum_p = 18 * math.cosh(-0.5)
    assert feats[0, 2, COL["log_e_linked_cluster|log_n_linked"]] == pytest.approx(math.log1p(2))
    assert feats[0, 2, COL["log_sum_p_same_cluster|log_sum_p_linked"]] == pytest.approx(
        math.log1p(sum_p), rel=1e-5
    )
    assert feats[0, 0, COL["p_share|excess_fraction"]] == pytest.approx(10 / 18, rel=1e-5)
    assert math.exp(log_ref[0, 2]) * energy == pytest.approx(15.0, rel=1e-4)
    sigma = math.hypot(0.55 * math.sqrt(energy), 0.05 * energy)
    assert feats[0, 2, COL["excess_significance"]] == pytest.approx(math.asinh(15.0 / sigma), rel=1e-4)


def test_loopers_and_far_clusters_stay_unlinked() -> None:
    x, mask = event(track(0.3, 0.0, 0.0, +1), track(20.0, 0.0, 2.0, +1), cluster(3.0, 0.0, -2.0))
    feats, log_ref = link_features(x, mask, CLIC)
    assert feats[0, 0, COL["reached|linked"]] == 0  # R = 250 mm never reaches r = 1.5 m
    assert feats[0, 1, COL["reached|linked"]] == 1
    assert feats[0, 2, COL["reached|linked"]] == 0
    assert float(log_ref.abs().max()) == 0.0


def test_padding_and_a_stronger_field_change_only_what_they_should() -> None:
    x, mask = event(track(2.0, 0.2, 0.3, +1), cluster(2.4, 0.2, impact_phi(2.0, +1, 0.3)))
    padded = torch.cat([x, torch.zeros(1, 3, 17)], dim=1)
    pmask = torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)], dim=1)
    short, _ = link_features(x, mask, CLIC)
    long, _ = link_features(padded, pmask, CLIC)
    torch.testing.assert_close(long[:, :2], short)
    assert float(long[:, 2:].abs().max()) == 0.0
    # CLD's 2 T field bends the same track half as much: the cluster is no longer at its impact.
    cld, _ = link_features(x, mask, KNOWN_DETECTORS["cld"])
    assert cld[0, 0, COL["reached|linked"]] == 1 and cld[0, 1, COL["reached|linked"]] == 0


def test_signed_log_keeps_sign_and_order() -> None:
    v = torch.tensor([-1500.0, -1.0, 0.0, 0.5, 1500.0])
    out = signed_log(v)
    assert out[2] == 0 and torch.all(out[1:] > out[:-1]) and out[-1] == pytest.approx(math.log1p(1500))


def test_standard_scaling_makes_the_track_curvature_visible() -> None:
    from mlpfctl.config.schema import ModelSection
    from mlpfctl.data.events import Event, key4hep_schema
    from mlpfctl.errors import ConfigError
    from mlpfctl.models.features import ElementFeatures
    from mlpfctl.models.registry import spec_for

    rng = np.random.default_rng(0)
    events = []
    for _ in range(20):
        rows = [track(float(rng.uniform(1, 20)), 0.0, 0.0, int(rng.choice([-1, 1]))) for _ in range(5)]
        rows += [cluster(float(rng.uniform(1, 50)), 0.0, 1.0) for _ in range(5)]
        x = np.asarray(rows, np.float32)
        empty = np.zeros((10, 14), np.float32)
        events.append(Event(X=x, ytarget=empty, ycand=empty))
    schema = key4hep_schema()
    section = ModelSection(preset="tiny", input_scaling="standard", link_features="off")
    with pytest.raises(ConfigError, match="statistics"):
        spec_for(section, schema)
    spec = spec_for(section, schema, events)
    assert spec.input_stats is not None and len(spec.input_stats) == 2
    x = torch.from_numpy(np.stack([e.X for e in events[:4]]))
    values = ElementFeatures(spec)(x, torch.ones(x.shape[:2], dtype=torch.bool)).values
    omega = values[..., 13][x[..., 0] == 1]
    assert 0.3 < float(omega.abs().mean()) < 3  # raw: ~1e-3, after the log alone: still ~1e-3
    assert torch.equal(torch.sign(omega), torch.sign(x[..., 13][x[..., 0] == 1]))
    assert torch.equal(values[..., 0], x[..., 0])  # the type column is untouched
    # Without the option the statistics are not even computed.
    assert spec_for(ModelSection(preset="tiny"), schema, events).input_stats is None
