"""Target particles per element, with the MLPF reference rules (docs/physics-data.md §4).

1. A particle is visible if its calorimeter deposit exceeds 10 % of its energy, or it is charged
   with more than 0.5 GeV deposited, or it left a track (all of a track's hits are its own here).
2. In decreasing energy order each particle takes its track, else its best unused cluster
   (largest deposited energy).
3. Leftover particles are four-vector-merged into the owner of their best cluster.
4. Class on a track: e and mu keep theirs, everything else is a charged hadron (211). Class on a
   cluster: e/gamma -> 22, everything else -> 130, charge 0. Unowned elements are class 0.
"""

from __future__ import annotations

import numpy as np

from mlpfctl.data.sim.detector import DetectorOutput
from mlpfctl.data.sim.kinematics import pt_eta_phi
from mlpfctl.data.sim.pythia_source import Particles


def _rows(p4: np.ndarray) -> np.ndarray:
    pt, eta, phi = pt_eta_phi(p4)
    return np.stack([pt, eta, np.sin(phi), np.cos(phi), p4[:, 3]], 1)


def assign_targets(parts: Particles, det: DetectorOutput) -> tuple[np.ndarray, np.ndarray]:
    """(ytarget for tracks [n_trk, 14], ytarget for clusters [n_cl, 14]) with PDG-like codes."""
    n = len(parts)
    energy = parts.p4[:, 3]
    dep = det.particle_deposit
    has_track = det.particle_track >= 0
    visible = (dep > 0.1 * energy) | ((parts.charge != 0) & (dep > 0.5)) | has_track
    # untracked visible particles claim clusters greedily by energy
    csr = det.clusters.deposit
    n_cl = csr.shape[1]
    owner = np.full(n_cl, -1, np.int64)
    best = np.full(n, -1, np.int64)
    claimants = np.flatnonzero(visible & ~has_track)
    claimants = claimants[np.argsort(-energy[claimants], kind="stable")]
    # candidate clusters of every particle, best (largest deposit) first, in one flat list
    indptr = csr.indptr
    rows = np.repeat(np.arange(n), np.diff(indptr))
    order = np.lexsort((-csr.data, rows))
    ranked = csr.indices[order].tolist()
    starts, ends = indptr[:-1].tolist(), indptr[1:].tolist()
    leftovers: list[int] = []
    for pi in claimants.tolist():
        s, e = starts[pi], ends[pi]
        if s == e:
            continue
        best[pi] = ranked[s]
        for c in ranked[s:e]:
            if owner[c] < 0:
                owner[c] = pi
                break
        else:
            leftovers.append(pi)
    p4 = parts.p4.copy()
    for pi in leftovers:
        tgt = owner[best[pi]]
        if tgt >= 0:
            p4[tgt] += p4[pi]
    apdg = np.abs(parts.pdg)
    event_start = np.searchsorted(parts.event, np.arange(parts.n_events))
    number = np.arange(n) - event_start[parts.event] + 1

    def table(particle: np.ndarray, on_track: bool) -> np.ndarray:
        out = np.zeros((len(particle), 14), np.float32)
        ok = particle >= 0
        pi = particle[ok]
        if on_track:
            code = np.where(np.isin(apdg[pi], (11, 13)), apdg[pi], 211)
            out[ok, 1] = parts.charge[pi]
        else:
            code = np.where(np.isin(apdg[pi], (11, 22)), 22, 130)
        out[ok, 0] = code
        out[ok, 2:7] = _rows(p4[pi])
        out[ok, 7] = parts.ispu[pi]
        out[ok, 8] = 1  # generatorStatus: final state
        out[ok, 10] = has_track[pi]
        out[ok, 11] = dep[pi]
        out[:, 12] = -1  # jet_idx, filled after jet clustering
        out[ok, 13] = number[pi]
        return out

    return table(det.tracks.particle, True), table(owner, False)
