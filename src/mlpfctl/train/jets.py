"""Event-level physics of a set of particles: jets (fastjet) and missing transverse momentum.

Jets: ``ee_genkt`` R = 0.4, p = -1, pT > 5 GeV (the reference's CLIC/CLD settings); reconstructed
jets match target jets within dR < 0.1 (greedy, smallest dR first); the jet response is
pT(reco) / pT(target). MET = |sum of particle pT vectors|.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import numpy as np

JET_R = 0.4
JET_PTMIN = 5.0
MATCH_DR = 0.1


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """fastjet prints its banner on C-level stdout; stdout must carry data only."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def fastjet_available() -> bool:
    try:
        import fastjet  # noqa: F401
    except ImportError:
        return False
    return True


def to_cartesian(p4: np.ndarray) -> np.ndarray:
    """(pt, eta, sin phi, cos phi, E) -> (px, py, pz, E); phi from atan2 so unnormalised
    predicted sin/cos are fine."""
    pt, eta = p4[:, 0], p4[:, 1]
    phi = np.arctan2(p4[:, 2], p4[:, 3])
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    energy = np.maximum(p4[:, 4], np.sqrt(px**2 + py**2 + pz**2))
    return np.stack([px, py, pz, energy], axis=1)


def cluster_jets(p4: np.ndarray) -> np.ndarray:
    """Jets ``[J, 3]`` (pt, eta, phi) of the particles ``p4`` (call inside ``stdout_to_stderr``)."""
    import fastjet

    if len(p4) == 0:
        return np.zeros((0, 3))
    jetdef = fastjet.JetDefinition(fastjet.ee_genkt_algorithm, JET_R, -1.0)
    cart = to_cartesian(p4.astype(np.float64))
    particles = [fastjet.PseudoJet(*map(float, row)) for row in cart]
    sequence = fastjet.ClusterSequence(particles, jetdef)
    jets = sequence.inclusive_jets(JET_PTMIN)
    return np.array([[j.pt(), j.eta(), j.phi()] for j in jets]).reshape(-1, 3)


def match_jets(target: np.ndarray, reco: np.ndarray) -> list[tuple[int, int]]:
    """Greedy unique matching by smallest dR below ``MATCH_DR``."""
    if len(target) == 0 or len(reco) == 0:
        return []
    deta = target[:, None, 1] - reco[None, :, 1]
    dphi = np.mod(target[:, None, 2] - reco[None, :, 2] + np.pi, 2 * np.pi) - np.pi
    dr = np.sqrt(deta**2 + dphi**2)
    pairs: list[tuple[int, int]] = []
    while True:
        i, j = np.unravel_index(np.argmin(dr), dr.shape)
        if dr[i, j] >= MATCH_DR:
            return pairs
        pairs.append((int(i), int(j)))
        dr[i, :] = np.inf
        dr[:, j] = np.inf


def met(p4: np.ndarray) -> float:
    phi = np.arctan2(p4[:, 2], p4[:, 3])
    return float(np.hypot((p4[:, 0] * np.cos(phi)).sum(), (p4[:, 0] * np.sin(phi)).sum()))
