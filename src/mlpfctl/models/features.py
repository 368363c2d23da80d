"""Model inputs computed from the raw element features: scaling and track-cluster link features.

Raw Key4hep features span orders of magnitude (positions in mm, hit counts, GeV), and whether a
cluster's energy belongs to a charged hadron depends on where that hadron's helix meets the
calorimeter, which the raw features only encode implicitly. This module (no trainable
parameters) turns ``X [B, N, F]`` into what the encoder sees:

- ``input_scaling = log``: sign(x) log(1 + |x|) on every column but the element type;
  ``standard`` then centres and scales every feature per element type by its median and IQR in
  the training data (``spec.input_stats``): a track curvature of 1e-3 / mm, invisible after the
  log alone, becomes O(1), so a model without link features can learn where tracks bend;
- link features (``LINK_FEATURE_NAMES``), from the detector description that travels with the
  dataset (``mlpfctl.data.detectors``): every track is propagated as a helix to the ECAL and
  HCAL fronts and links to the nearest cluster within ``link_distance`` (as the rule-based
  baseline does); clusters learn the momentum sum of their linked tracks, E/sum p, the excess
  E - sum p and its significance in units of the hadronic resolution.

It also returns the cluster *reference energy*: its excess over the linked tracks' momenta
(at least one resolution unit and at most its own energy). With ``outputs = corrections`` the
model predicts a cluster's particle pT and energy relative to that reference instead of the
cluster's full energy, which for a cluster shared with a charged hadron is mostly not its own.

Everything is dense tensor algebra (one [B, N, N] distance matrix, no data-dependent shapes),
so it runs on any device and exports to ONNX with the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mlpfctl.data.detectors import DetectorDescription
from mlpfctl.models.spec import ModelSpec

# Key4hep columns (mlpfctl.data.events.TRACK_FEATURES / CLUSTER_FEATURES).
_TYPE, _PT, _ETA, _SIN, _COS, _P_OR_E = 0, 1, 2, 3, 4, 5
_OMEGA, _Z0 = 13, 14
TRACK, CLUSTER = 1, 2
# pT [GeV] = _CURVATURE * B [T] * R [mm]
_CURVATURE = 3e-4
_CLIP = 10.0  # standardised features beyond 10 IQR units (displaced vertices' D0) are clipped
_FAR = 1e3  # distance (in link distances) standing for "no partner in this event"


@dataclass
class ElementInputs:
    """What the encoder and the output heads need from one batch."""

    values: torch.Tensor  # [B, N, input_dim]: column 0 the element type, then scaled features
    log_reference: torch.Tensor  # [B, N]: log(E_reference / E_element); 0 where none applies


def signed_log(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


# Hyperbolic functions from exp/log: the ONNX exporter (opset 17) has no Cosh/Sinh for aten.


def cosh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.exp(x) + torch.exp(-x))


def sinh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.exp(x) - torch.exp(-x))


def asinh(x: torch.Tensor) -> torch.Tensor:
    a = x.abs()
    return torch.sign(x) * torch.log(a + torch.sqrt(a * a + 1.0))


def hypot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(a * a + b * b)


def _unit_from_angles(eta: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    inv_cosh = 1.0 / cosh(eta)
    return torch.stack([cos * inv_cosh, sin * inv_cosh, torch.tanh(eta)], dim=-1)


def _squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B, N, M] squared Euclidean distances of [B, N, 3] and [B, M, 3] points, as one batched
    product of augmented vectors: [a, |a|^2, 1] . [-2 b, 1, |b|^2] = |a - b|^2.

    Float64, because the expansion cancels for nearby points (float32 would lose millimetres, and
    ONNX Runtime and PyTorch would disagree); one matmul instead of a [B, N, M, 3] difference.
    """
    a64, b64 = a.double(), b.double()
    na, nb = (a64 * a64).sum(-1, keepdim=True), (b64 * b64).sum(-1, keepdim=True)
    lhs = torch.cat([a64, na, torch.ones_like(na)], dim=-1)
    rhs = torch.cat([-2.0 * b64, torch.ones_like(nb), nb], dim=-1)
    return torch.bmm(lhs, rhs.transpose(1, 2))


def helix_impact(
    pt: torch.Tensor,
    eta: torch.Tensor,
    sin_phi: torch.Tensor,
    cos_phi: torch.Tensor,
    charge: torch.Tensor,
    z0: torch.Tensor,
    *,
    b_field: float,
    radius: float,
    half_length: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit direction of the impact point [.., 3], reached) of helices from (0, 0, z0) on a
    barrel of ``radius`` closed by endcaps at ``half_length`` (mm).

    Barrel: the turning angle alpha solves the chord 2 R sin(alpha / 2) = radius. Endcap: alpha =
    path length / R at |z| = half_length, within one turn. The azimuth at the surface is
    phi - q alpha / 2 (positive charges bend clockwise in +B_z).
    """
    big_r = pt.clamp_min(1e-3) / (_CURVATURE * b_field)
    cot = sinh(eta)
    ratio = radius / (2.0 * big_r)
    alpha_b = 2.0 * torch.asin(ratio.clamp(max=1.0))
    z_b = z0 + big_r * alpha_b * cot
    barrel = (ratio <= 1.0) & (z_b.abs() <= half_length)
    safe_cot = torch.where(cot.abs() > 1e-6, cot, torch.full_like(cot, 1e-6))
    s_e = (torch.sign(safe_cot) * half_length - z0) / safe_cot
    alpha_e = s_e / big_r
    endcap = ~barrel & (s_e > 0) & (alpha_e < 2.0 * math.pi)
    alpha = torch.where(barrel, alpha_b, alpha_e.clamp(0.0, 2.0 * math.pi))
    rho = torch.where(barrel, torch.full_like(pt, radius), 2.0 * big_r * torch.sin(alpha / 2.0).abs())
    z = torch.where(barrel, z_b, torch.sign(safe_cot) * half_length)
    # azimuth phi - q alpha / 2 by rotating (cos phi, sin phi): no atan2, which ONNX turns into NaN at 0/0
    turn = charge * alpha / 2.0
    cos_t, sin_t = torch.cos(turn), torch.sin(turn)
    cos_i = cos_phi * cos_t + sin_phi * sin_t
    sin_i = sin_phi * cos_t - cos_phi * sin_t
    pos = torch.stack([rho * cos_i, rho * sin_i, z], dim=-1)
    unit = pos / pos.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return unit, barrel | endcap


def link_features(
    x: torch.Tensor, mask: torch.Tensor, det: DetectorDescription
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [B, N, len(LINK_FEATURE_NAMES)], log reference energy [B, N]) of Key4hep elements."""
    kind = x[..., _TYPE].round()
    is_trk = (kind == TRACK) & mask
    is_cl = (kind == CLUSTER) & mask
    eta, sin, cos = x[..., _ETA], x[..., _SIN], x[..., _COS]
    mom = x[..., _P_OR_E].clamp_min(0.0)  # track p, cluster E
    charge = torch.sign(x[..., _OMEGA]) * det.omega_charge_sign
    own = _unit_from_angles(eta, sin, cos)
    common = {"b_field": det.b_field}
    u_e, reached_e = helix_impact(
        x[..., _PT], eta, sin, cos, charge, x[..., _Z0], radius=det.ecal_r, half_length=det.ecal_z, **common
    )
    u_h, reached_h = helix_impact(
        x[..., _PT], eta, sin, cos, charge, x[..., _Z0], radius=det.hcal_r, half_length=det.hcal_z, **common
    )
    reached = is_trk & (reached_e | reached_h)
    far = _FAR * det.link_distance
    # [B, N, N] squared distances (mm^2) of track impacts to cluster directions on the ECAL and
    # HCAL fronts, the nearer of the two. Pairs that are not (reached track, cluster) get points
    # far apart on opposite sides, so no mask matrices are needed.
    away = torch.zeros_like(own)
    away[..., 0] = 10.0 * far

    def points(unit: torch.Tensor, valid: torch.Tensor, radius: float, side: float) -> torch.Tensor:
        return torch.where(valid[..., None], unit * radius, side * away)

    d2 = torch.minimum(
        _squared_distance(
            points(u_e, reached_e & reached, det.ecal_r, 1.0), points(own, is_cl, det.ecal_r, -1.0)
        ),
        _squared_distance(
            points(u_h, reached_h & reached, det.hcal_r, 1.0), points(own, is_cl, det.hcal_r, -1.0)
        ),
    ).to(x.dtype)
    d2_trk, nearest = d2.min(dim=-1)  # each track's nearest cluster
    d_trk = d2_trk.clamp(0.0, far**2).sqrt()
    d_cl = d2.min(dim=1).values.clamp(0.0, far**2).sqrt()  # each cluster's nearest track impact
    linked = reached & (d_trk < det.link_distance)
    flinked = linked.to(x.dtype)
    # Links as index arithmetic (O(N)): cluster sums by scatter-add, track lookups by gather.
    sum_p = torch.zeros_like(mom).scatter_add(1, nearest, mom * flinked)  # per cluster: its tracks' p
    n_link = torch.zeros_like(mom).scatter_add(1, nearest, flinked)
    e_link = torch.gather(mom, 1, nearest) * flinked  # per track: energy of its cluster
    sum_p_link = torch.gather(sum_p, 1, nearest) * flinked  # per track: all tracks on that cluster

    def sigma(e: torch.Tensor) -> torch.Tensor:
        e = e.clamp_min(0.0)
        return hypot(det.hcal_stochastic * e.sqrt(), det.hcal_constant * e).clamp_min(0.1)

    has_cl = n_link > 0
    excess_cl = mom - sum_p  # unlinked clusters: their whole energy
    excess_trk = e_link - sum_p_link
    zero = torch.zeros_like(mom)
    ratio_cl = torch.where(has_cl, torch.log(mom.clamp_min(1e-3) / sum_p.clamp_min(1e-3)), zero)
    ratio_trk = torch.where(linked, torch.log(e_link.clamp_min(1e-3) / sum_p_link.clamp_min(1e-3)), zero)
    feats_trk = [
        reached.to(x.dtype),
        torch.log1p(d_trk / det.link_distance),
        torch.log1p(sum_p_link),
        torch.log1p(e_link),
        ratio_trk.clamp(-5.0, 5.0),
        torch.where(linked, asinh(excess_trk / sigma(e_link)), zero),
        torch.where(linked, mom / sum_p_link.clamp_min(1e-3), zero),
    ]
    feats_cl = [
        has_cl.to(x.dtype),
        torch.log1p(d_cl / det.link_distance),
        torch.log1p(sum_p),
        torch.log1p(n_link),
        ratio_cl.clamp(-5.0, 5.0),
        asinh(excess_cl / sigma(mom)),
        excess_cl.clamp_min(0.0) / mom.clamp_min(1e-3),
    ]
    calo = torch.where(reached_e[..., None], u_e, torch.where(reached_h[..., None], u_h, own))
    calo = torch.where(is_trk[..., None], calo, own)
    rho = hypot(calo[..., 0], calo[..., 1]).clamp_min(1e-6)
    columns = [asinh(calo[..., 2] / rho), calo[..., 1] / rho, calo[..., 0] / rho]
    columns += [torch.where(is_trk, t, c) for t, c in zip(feats_trk, feats_cl, strict=True)]
    out = torch.stack(columns, dim=-1) * mask[..., None].to(x.dtype)
    # Reference energy of a cluster: its excess over the linked tracks, floored at one resolution
    # unit (a real neutral under a charged shower is small, not absent) and capped at E.
    e_cl = mom.clamp_min(1e-3)
    reference = torch.maximum(excess_cl, torch.minimum(e_cl, sigma(mom)))
    log_ref = torch.where(is_cl & has_cl, torch.log(reference.clamp_min(1e-3) / e_cl), zero)
    return out, log_ref


class ElementFeatures(nn.Module):
    """Raw ``X`` -> ``ElementInputs`` as the spec says (scaling, link features)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.scaling = spec.input_scaling
        self.detector = spec.detector_description()
        self.num_types = spec.num_element_types
        stats = torch.tensor(spec.input_stats or [[[0.0, 1.0]] * spec.num_features] * self.num_types)
        # [types, features]: from the spec (training-data statistics), not trained
        self.center: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("center", stats[..., 0].float(), persistent=False)
        self.register_buffer("scale", stats[..., 1].float(), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> ElementInputs:
        values = x
        if self.scaling in ("log", "standard"):
            values = torch.cat([x[..., :1], signed_log(x[..., 1:])], dim=-1)
        if self.scaling == "standard":
            codes = torch.arange(1, self.num_types + 1, device=x.device, dtype=x.dtype)
            onehot = (x[..., :1].round() == codes).to(x.dtype)  # padding: all zero
            center, scale = onehot @ self.center, onehot @ self.scale + (1.0 - onehot.sum(-1, keepdim=True))
            scaled = ((values[..., 1:] - center[..., 1:]) / scale[..., 1:]).clamp(-_CLIP, _CLIP)
            values = torch.cat([x[..., :1], scaled], dim=-1)
            values = values * mask[..., None].to(x.dtype)
        log_ref = torch.zeros_like(x[..., 0])
        if self.detector is not None:
            links, log_ref = link_features(x, mask, self.detector)
            values = torch.cat([values, links], dim=-1)
        return ElementInputs(values=values, log_reference=log_ref)
