"""A simple rule-based particle flow (the ``ycand`` baseline).

Tracks are extrapolated to the ECAL front and linked to the nearest cluster within
``LINK_DISTANCE``. Each track becomes a charged candidate (electron if its cluster is
electromagnetic with E/p near 1, muon if it is a MIP-like track above 3 GeV, else a charged
hadron). The calorimeter energy left after subtracting the linked track momenta becomes a
photon (EM-like cluster) or a neutral hadron when it exceeds the expected fluctuation.
"""

from __future__ import annotations

import numpy as np

from mlpfctl.data.sim.detector import _EVENT_SPACING, DetectorOutput
from mlpfctl.data.sim.kinematics import on_front_sphere, propagate
from mlpfctl.data.sim.params import DetectorParams

LINK_DISTANCE = 150.0  # mm on the ECAL front (hadron showers sit partly deeper, further along the helix)
MASSES = {211: 0.13957, 11: 0.000511, 13: 0.10566}


def reconstruct(det: DetectorOutput, p: DetectorParams) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    tf = det.tracks.features.astype(np.float64)
    cf = det.clusters.features.astype(np.float64)
    nt, nc = len(tf), len(cf)
    pt, eta, phi, mom = tf[:, 1], tf[:, 2], np.arctan2(tf[:, 3], tf[:, 4]), tf[:, 5]
    vertex = np.zeros((nt, 3))
    vertex[:, 2] = tf[:, 14]
    imp = propagate(
        pt,
        np.sinh(eta),
        phi,
        det.tracks.charge,
        vertex,
        curvature=p.curvature,
        radius=p.ecal_r,
        half_length=p.ecal_z,
        max_eta=p.calo_max_eta,
    )
    link = np.full(nt, -1, np.int64)
    if nc and nt:
        c_xyz = on_front_sphere(cf[:, 6:9], p.ecal_r)
        c_xyz[:, 0] += det.clusters.event * _EVENT_SPACING
        t_xyz = on_front_sphere(imp.pos, p.ecal_r)
        t_xyz[:, 0] += det.tracks.event * _EVENT_SPACING
        dist, j = cKDTree(c_xyz).query(t_xyz, k=1, distance_upper_bound=LINK_DISTANCE)
        ok = imp.reached & np.isfinite(dist)
        link[ok] = j[ok]
    e_cl, e_ecal, e_hcal = cf[:, 5], cf[:, 10], cf[:, 11]
    linked = link >= 0
    lc = np.where(linked, link, 0)
    eop = np.where(linked, e_cl[lc] / np.maximum(mom, 1e-6), 0.0)
    electron = linked & (eop > 0.7) & (eop < 1.3) & (e_hcal[lc] < 0.1 * e_cl[lc])
    muon = (mom > 3.0) & linked & (e_cl[lc] < np.minimum(4.0, 0.5 * mom)) & (e_hcal[lc] > 0) & ~electron
    code = np.where(electron, 11, np.where(muon, 13, 211))
    mass = np.select([code == 11, code == 13], [MASSES[11], MASSES[13]], MASSES[211])
    yt = np.zeros((nt, 14), np.float32)
    yt[:, 0] = code
    yt[:, 1] = det.tracks.charge
    yt[:, 2] = pt
    yt[:, 3] = eta
    yt[:, 4] = np.sin(phi)
    yt[:, 5] = np.cos(phi)
    yt[:, 6] = np.sqrt(mom**2 + mass**2)
    yt[:, 12] = -1
    # calorimeter excess over the linked track momenta
    track_sum = np.bincount(link[linked], mom[linked], nc) if nc else np.zeros(0)
    sigma = np.hypot(p.hcal_stoch * np.sqrt(np.maximum(e_cl, 0)), p.hcal_const * e_cl)
    has_track = track_sum > 0
    excess = np.where(has_track, e_cl - track_sum, e_cl)
    threshold = np.where(has_track, np.maximum(0.5, 1.5 * sigma), 0.2)
    neutral = excess > threshold
    em = e_ecal >= 0.8 * np.maximum(e_cl, 1e-9)
    yc = np.zeros((nc, 14), np.float32)
    yc[:, 12] = -1
    c_eta, c_sin, c_cos = cf[:, 2], cf[:, 3], cf[:, 4]
    yc[neutral, 0] = np.where(em[neutral], 22, 130)
    yc[neutral, 2] = excess[neutral] / np.cosh(c_eta[neutral])
    yc[neutral, 3] = c_eta[neutral]
    yc[neutral, 4] = c_sin[neutral]
    yc[neutral, 5] = c_cos[neutral]
    yc[neutral, 6] = excess[neutral]
    return yt, yc
