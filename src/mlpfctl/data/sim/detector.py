"""The fast parametric detector: particles -> tracks and calorimeter clusters (vectorised).

All events of a chunk are simulated at once; event boundaries are kept by an event column and,
for the clustering neighbour search, by placing events far apart in space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpfctl.data.sim.kinematics import on_front_sphere, propagate, pt_eta_phi
from mlpfctl.data.sim.params import DetectorParams
from mlpfctl.data.sim.pythia_source import Particles

_EVENT_SPACING = 1.0e5  # mm between events in the clustering frame (>> any link distance)
_MIP_BG = 3.5  # beta*gamma of a minimum-ionising particle


@dataclass
class Tracks:
    particle: np.ndarray  # row in Particles
    event: np.ndarray
    features: np.ndarray  # [n, 16] TRACK_FEATURES
    charge: np.ndarray


@dataclass
class Clusters:
    event: np.ndarray
    features: np.ndarray  # [n, 17] CLUSTER_FEATURES
    deposit: Any  # scipy CSR (n_particles x n_clusters): true deposited energy


@dataclass
class DetectorOutput:
    tracks: Tracks
    clusters: Clusters
    particle_deposit: np.ndarray  # true calorimeter energy per particle (GeV)
    particle_track: np.ndarray  # track row per particle or -1


def _track_hits(
    p: DetectorParams, r_prod: np.ndarray, vz: np.ndarray, R: np.ndarray, cot: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(hits, radius of the innermost hit) for helices from the production point."""
    layers = np.asarray(p.tracker_layers, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z_reach = np.where(cot != 0, p.tracker_half_length / np.abs(cot), np.inf)
    r_reach = np.minimum(np.minimum(2 * R, layers[-1]), z_reach)
    n_barrel = np.clip(
        np.searchsorted(layers, r_reach, side="right") - np.searchsorted(layers, r_prod, side="right"),
        0,
        None,
    )
    first = layers[np.clip(np.searchsorted(layers, r_prod, side="right"), 0, len(layers) - 1)]
    disks = np.asarray(p.tracker_disks, float)
    dz = disks[None, :] - np.abs(vz)[:, None] * np.sign(vz * cot)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        s_t = dz / np.abs(cot)[:, None]
        rho = 2 * R[:, None] * np.abs(np.sin(s_t / (2 * R[:, None])))
    ok = (dz > 0) & np.isfinite(s_t) & (s_t <= np.pi * R[:, None]) & (rho <= p.disk_outer_radius) & (rho > 20)
    n_disk = ok.sum(axis=1)
    first_disk_rho = np.where(ok.any(axis=1), np.where(ok, rho, np.inf).min(axis=1), 0.0)
    innermost = np.where(n_barrel > 0, first, first_disk_rho)
    return n_barrel + n_disk, innermost


def _dedx(p: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """Bethe-Bloch shape in units of a minimum-ionising particle (no density correction)."""
    bg2 = np.maximum((p / np.maximum(mass, 1e-4)) ** 2, 1e-4)
    beta2 = bg2 / (1 + bg2)
    shape = (np.log(2 * 0.511e-3 * bg2 / 1.6e-7) - beta2) / beta2
    mip = np.log(2 * 0.511e-3 * _MIP_BG**2 / 1.6e-7) - _MIP_BG**2 / (1 + _MIP_BG**2)
    mip /= _MIP_BG**2 / (1 + _MIP_BG**2)
    return np.asarray(np.maximum(shape / mip, 0.1))


def simulate_tracks(parts: Particles, p: DetectorParams, rng: np.random.Generator) -> Tracks:
    pt, eta, phi = pt_eta_phi(parts.p4)
    q = parts.charge
    r_prod = np.hypot(parts.vertex[:, 0], parts.vertex[:, 1])
    cot = np.sinh(eta)
    with np.errstate(divide="ignore"):
        R = np.where(q != 0, pt / p.curvature, np.inf)
    nhits, innermost = _track_hits(p, r_prod, parts.vertex[:, 2], R, cot)
    eff = p.track_eff_plateau * np.clip((pt - p.track_eff_pt0) / p.track_eff_width, 0, 1)
    sel = (
        (q != 0)
        & (np.abs(eta) < p.track_max_eta)
        & (r_prod < p.track_max_prod_radius)
        & (nhits >= p.track_min_hits)
        & (rng.random(len(pt)) < eff)
    )
    idx = np.flatnonzero(sel)
    n = len(idx)
    pt_t, eta_t, phi_t, q_t = pt[idx], eta[idx], phi[idx], q[idx]
    sin_theta = 1 / np.cosh(eta_t)
    rel = np.hypot(p.pt_res_a * pt_t, p.pt_res_b / np.sqrt(sin_theta))
    pt_r = np.abs(pt_t * (1 + rel * rng.standard_normal(n))) + 1e-3
    theta_r = np.clip(
        2 * np.arctan(np.exp(-eta_t)) + p.angle_res * rng.standard_normal(n), 1e-3, np.pi - 1e-3
    )
    eta_r = -np.log(np.tan(theta_r / 2))
    phi_r = phi_t + p.angle_res * rng.standard_normal(n)
    p_r = pt_r / np.sin(theta_r)
    mom = pt_t * np.cosh(eta_t)
    sd0 = np.hypot(p.d0_res_a, p.d0_res_b / (mom * sin_theta**1.5))
    v = parts.vertex[idx]
    d0 = v[:, 0] * np.sin(phi_t) - v[:, 1] * np.cos(phi_t) + sd0 * rng.standard_normal(n)
    z0 = v[:, 2] + sd0 * rng.standard_normal(n)
    hits = nhits[idx]
    ndf = 2 * hits - 5
    dedx = _dedx(mom, parts.mass[idx]) * (1 + p.dedx_res * rng.standard_normal(n))
    f = np.zeros((n, 16), np.float32)
    f[:, 0] = 1
    f[:, 1] = pt_r
    f[:, 2] = eta_r
    f[:, 3] = np.sin(phi_r)
    f[:, 4] = np.cos(phi_r)
    f[:, 5] = p_r
    f[:, 6] = rng.chisquare(np.maximum(ndf, 1))
    f[:, 7] = ndf
    f[:, 8] = dedx
    f[:, 9] = p.dedx_res * np.abs(dedx)
    f[:, 10] = innermost[idx]
    f[:, 11] = 1 / np.tan(theta_r)
    f[:, 12] = d0
    f[:, 13] = q_t * p.curvature / pt_r
    f[:, 14] = z0
    return Tracks(particle=idx, event=parts.event[idx], features=f, charge=q_t)


def _deposits(parts: Particles, p: DetectorParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Calorimeter deposits: (particle, event, calo 0/1, energy, position) before clustering."""
    n = len(parts)
    pt, eta, phi = pt_eta_phi(parts.p4)
    cot = np.sinh(eta)
    apdg = np.abs(parts.pdg)
    em = (apdg == 11) | (apdg == 22)
    mu = apdg == 13
    had = ~(em | mu)
    energy = parts.p4[:, 3]
    # Nucleons deposit their kinetic energy only.
    e_avail = np.where(np.isin(apdg, (2212, 2112)), np.maximum(energy - parts.mass, 0), energy)
    frac_ecal = np.where(em, 1.0, 0.0)
    starts_ecal = had & (rng.random(n) < p.had_ecal_prob)
    frac_ecal = np.where(starts_ecal, rng.uniform(*p.had_ecal_frac, n), frac_ecal)
    e_ecal = e_avail * frac_ecal
    e_hcal = e_avail - e_ecal
    mom = pt * np.cosh(eta)
    e_ecal = np.where(mu, np.minimum(p.mu_ecal, e_avail), e_ecal)
    mu_h = np.minimum(rng.gamma(8.0, p.mu_hcal / 8.0, n), np.maximum(e_avail - p.mu_ecal, 0))
    e_hcal = np.where(mu, np.where(mom > p.mu_hcal_min_p, mu_h, 0.0), e_hcal)
    common = {"curvature": p.curvature, "max_eta": p.calo_max_eta}
    ecal = propagate(
        pt, cot, phi, parts.charge, parts.vertex, radius=p.ecal_r, half_length=p.ecal_z, **common
    )
    hcal = propagate(
        pt, cot, phi, parts.charge, parts.vertex, radius=p.hcal_r, half_length=p.hcal_z, **common
    )
    # A shower that reaches the ECAL but not the HCAL front stays in the ECAL.
    e_ecal = np.where(ecal.reached & ~hcal.reached, e_ecal + np.where(mu, 0, e_hcal), e_ecal)
    e_hcal = np.where(hcal.reached, e_hcal, 0.0)
    e_ecal = np.where(ecal.reached, e_ecal, 0.0)
    rows = np.arange(n)
    part_l, calo_l, e_l, pos_l = [rows], [np.zeros(n, np.int8)], [e_ecal], [ecal.pos]
    # split-off fragments of hadronic showers, displaced sideways
    split = np.flatnonzero(had & (e_hcal > 0) & (rng.random(n) < p.splitoff_prob))
    k = rng.integers(1, p.splitoff_max + 1, len(split))
    src = np.repeat(split, k)
    frac = rng.uniform(*p.splitoff_frac, len(src))
    e_frag = e_hcal[src] * frac
    np.subtract.at(e_hcal, src, e_frag)
    offset = rng.standard_normal((len(src), 3))
    radial = hcal.pos[src] / np.maximum(np.linalg.norm(hcal.pos[src], axis=1, keepdims=True), 1e-9)
    offset -= (offset * radial).sum(axis=1, keepdims=True) * radial
    offset /= np.maximum(np.linalg.norm(offset, axis=1, keepdims=True), 1e-9)
    offset *= rng.uniform(*p.splitoff_dist, len(src))[:, None]
    part_l += [rows, src]
    calo_l += [np.ones(n, np.int8), np.ones(len(src), np.int8)]
    e_l += [e_hcal, e_frag]
    pos_l += [hcal.pos, hcal.pos[src] + offset]
    # electronic noise in the ECAL barrel
    n_noise = rng.poisson(p.noise_mean, parts.n_events)
    ev_noise = np.repeat(np.arange(parts.n_events), n_noise)
    m = len(ev_noise)
    phi_n = rng.uniform(-np.pi, np.pi, m)
    pos_n = np.stack(
        [p.ecal_r * np.cos(phi_n), p.ecal_r * np.sin(phi_n), rng.uniform(-p.ecal_z, p.ecal_z, m)], 1
    )
    particle = np.concatenate([*part_l, np.full(m, -1)])
    event = np.concatenate([parts.event[np.concatenate(part_l)], ev_noise])
    calo = np.concatenate([*calo_l, np.zeros(m, np.int8)])
    e = np.concatenate([*e_l, rng.uniform(*p.noise_energy, m)])
    pos = np.concatenate([*pos_l, pos_n])
    keep = np.where(calo == 0, e > p.ecal_threshold, e > p.hcal_threshold)
    return {
        "particle": particle[keep],
        "event": event[keep],
        "calo": calo[keep],
        "energy": e[keep],
        "pos": pos[keep],
    }


def _cluster_labels(dep: dict[str, np.ndarray], p: DetectorParams) -> np.ndarray:
    """Connected components of the deposit link graph (KD-tree neighbour search, not all pairs)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(dep["energy"])
    if n == 0:
        return np.zeros(0, np.int64)
    coords = on_front_sphere(dep["pos"], p.ecal_r)
    coords[:, 0] += dep["event"] * _EVENT_SPACING
    pairs = cKDTree(coords).query_pairs(
        r=max(p.link_ecal, p.link_hcal, p.link_ecal_hcal), output_type="ndarray"
    )
    if len(pairs):
        d = np.linalg.norm(coords[pairs[:, 0]] - coords[pairs[:, 1]], axis=1)
        limits = np.array([[p.link_ecal, p.link_ecal_hcal], [p.link_ecal_hcal, p.link_hcal]])
        pairs = pairs[d <= limits[dep["calo"][pairs[:, 0]], dep["calo"][pairs[:, 1]]]]
    graph = (
        coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        if len(pairs)
        else coo_matrix((n, n))
    )
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, np.int64)


def _smear(e: np.ndarray, stoch: float, const: float, rng: np.random.Generator) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.hypot(stoch / np.sqrt(np.maximum(e, 1e-6)), const)
    return np.where(e > 0, np.maximum(e * (1 + sigma * rng.standard_normal(len(e))), 0.0), 0.0)


def simulate_clusters(
    parts: Particles, p: DetectorParams, rng: np.random.Generator
) -> tuple[Clusters, np.ndarray]:
    from scipy.sparse import csr_matrix

    dep = _deposits(parts, p, rng)
    labels = _cluster_labels(dep, p)
    # number clusters event by event (labels of connected_components are in first-seen order)
    first = np.full(labels.max() + 1 if len(labels) else 0, len(labels), np.int64)
    np.minimum.at(first, labels, np.arange(len(labels)))
    order = np.lexsort((first, dep["event"][np.minimum(first, len(labels) - 1)])) if len(first) else first
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    cid = rank[labels]
    nc = len(order)
    w = dep["energy"]
    is_e = dep["calo"] == 0
    e_ecal_true = np.bincount(cid, w * is_e, nc)
    e_hcal_true = np.bincount(cid, w * ~is_e, nc)
    e_tot_true = e_ecal_true + e_hcal_true
    mean = np.stack([np.bincount(cid, w * dep["pos"][:, k], nc) for k in range(3)], 1) / e_tot_true[:, None]
    var = np.stack([np.bincount(cid, w * (dep["pos"][:, k] - mean[cid, k]) ** 2, nc) for k in range(3)], 1)
    spread = np.sqrt(np.maximum(var / e_tot_true[:, None], 0))
    e_ecal = _smear(e_ecal_true, p.ecal_stoch, p.ecal_const, rng)
    e_hcal = _smear(e_hcal_true, p.hcal_stoch, p.hcal_const, rng)
    energy = e_ecal + e_hcal
    em_like = e_ecal_true >= 0.5 * e_tot_true
    pos = mean + np.where(em_like, p.pos_res_em, p.pos_res_had)[:, None] * rng.standard_normal((nc, 3))
    width = np.where(em_like, p.width_em, p.width_had)[:, None]
    sigma = np.hypot(spread, width)
    rho = np.hypot(pos[:, 0], pos[:, 1])
    theta = np.arctan2(rho, pos[:, 2])
    phi = np.arctan2(pos[:, 1], pos[:, 0])
    hits = rng.poisson(p.hits_ecal * e_ecal_true**0.9 + p.hits_hcal * e_hcal_true**0.9) + 1
    f = np.zeros((nc, 17), np.float32)
    f[:, 0] = 2
    f[:, 1] = energy * np.sin(theta)
    f[:, 2] = -np.log(np.tan(np.clip(theta, 1e-6, np.pi - 1e-6) / 2))
    f[:, 3] = np.sin(phi)
    f[:, 4] = np.cos(phi)
    f[:, 5] = energy
    f[:, 6:9] = pos
    f[:, 9] = theta
    f[:, 10] = e_ecal
    f[:, 11] = e_hcal
    f[:, 13] = hits
    f[:, 14:17] = sigma
    c_event = dep["event"][np.minimum(first[order], len(labels) - 1)] if nc else np.zeros(0, np.int64)
    has_p = dep["particle"] >= 0
    deposit = csr_matrix(
        (w[has_p], (dep["particle"][has_p], cid[has_p])), shape=(len(parts), nc)
    )  # duplicates are summed
    keep = energy > p.min_cluster_energy
    if not np.all(keep):
        f, c_event, deposit = f[keep], c_event[keep], deposit[:, np.flatnonzero(keep)]
    return Clusters(event=np.asarray(c_event, np.int64), features=f, deposit=deposit.tocsr()), np.asarray(
        deposit.sum(axis=1)
    ).ravel()


def simulate(parts: Particles, p: DetectorParams, rng: np.random.Generator) -> DetectorOutput:
    tracks = simulate_tracks(parts, p, rng)
    clusters, _ = simulate_clusters(parts, p, rng)
    # total deposit of each particle (before the cluster energy cut: visibility uses the truth)
    particle_deposit = np.asarray(clusters.deposit.sum(axis=1)).ravel()
    particle_track = np.full(len(parts), -1, np.int64)
    particle_track[tracks.particle] = np.arange(len(tracks.particle))
    return DetectorOutput(tracks, clusters, particle_deposit, particle_track)
