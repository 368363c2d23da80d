"""Helix propagation to the calorimeter front (the geometry behind deposits and track linking)."""

from __future__ import annotations

import numpy as np

from mlpfctl.data.sim.kinematics import propagate

GEOM = {"curvature": 3e-4 * 4.0, "radius": 1500.0, "half_length": 2310.0, "max_eta": 3.0}


def _go(pt: float, eta: float, q: float, phi: float = 0.3) -> tuple[bool, np.ndarray]:
    imp = propagate(
        np.array([pt]), np.array([np.sinh(eta)]), np.array([phi]), np.array([q]), np.zeros((1, 3)), **GEOM
    )
    return bool(imp.reached[0]), imp.pos[0]


def test_a_neutral_goes_straight_to_the_barrel() -> None:
    ok, pos = _go(10.0, 0.5, 0.0)
    assert ok
    assert np.hypot(pos[0], pos[1]) == np.float64(1500.0)
    assert np.isclose(pos[2], 1500.0 * np.sinh(0.5))
    assert np.isclose(np.arctan2(pos[1], pos[0]), 0.3)


def test_charged_particles_bend_and_soft_ones_loop() -> None:
    ok_pos, pos_p = _go(2.0, 0.0, +1.0)
    ok_neg, pos_n = _go(2.0, 0.0, -1.0)
    assert ok_pos and ok_neg
    dphi_p = np.arctan2(pos_p[1], pos_p[0]) - 0.3
    dphi_n = np.arctan2(pos_n[1], pos_n[0]) - 0.3
    assert dphi_p < 0 < dphi_n and np.isclose(dphi_p, -dphi_n)
    # R = pT / (0.3 B) = 0.5 GeV -> 417 mm: 2R < 1.5 m, the looper never reaches the barrel
    looper, _ = _go(0.5, 0.0, 1.0)
    assert not looper


def test_forward_particles_hit_the_endcap_and_the_beam_pipe_is_lost() -> None:
    ok, pos = _go(5.0, 2.0, 0.0)
    assert ok and np.isclose(pos[2], 2310.0)
    lost, _ = _go(5.0, 4.0, 0.0)
    assert not lost
