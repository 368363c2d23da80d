"""Vectorised kinematics and helix propagation to a calorimeter surface."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def pt_eta_phi(p4: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    px, py, pz = p4[:, 0], p4[:, 1], p4[:, 2]
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.sign(pz) * 1e4, where=pt > 0))
    return pt, np.clip(eta, -20, 20), np.arctan2(py, px)


def eta_of_position(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    rho = np.hypot(x, y)
    return np.asarray(np.arcsinh(np.divide(z, rho, out=np.sign(z) * 1e4, where=rho > 0)))


@dataclass
class Impact:
    reached: np.ndarray  # bool
    pos: np.ndarray  # [n, 3] mm (undefined where not reached)


def propagate(
    pt: np.ndarray,
    cot_theta: np.ndarray,
    phi0: np.ndarray,
    charge: np.ndarray,
    vertex: np.ndarray,
    *,
    curvature: float,
    radius: float,
    half_length: float,
    max_eta: float,
) -> Impact:
    """Where a helix (straight line if neutral) from ``vertex`` meets a barrel/endcap surface.

    Barrel: the turning angle alpha satisfies the chord 2 R sin(alpha/2) = radius; the track meets
    the barrel if 2 R >= radius and |z| <= half_length there. Otherwise the endcap at |z| =
    half_length, if reached within one turn at a radius inside the calorimeter acceptance.
    The azimuth at the surface is phi0 - q alpha / 2 (positive charges bend clockwise in +B_z).
    """
    n = len(pt)
    neutral = charge == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        R = np.where(neutral, np.inf, pt / curvature)
        ratio = np.clip(radius / (2 * R), 0.0, 1.0)
        alpha_b = np.where(neutral, 0.0, 2 * np.arcsin(ratio))
        s_b = np.where(neutral, radius, R * alpha_b)
        z_b = vertex[:, 2] + s_b * cot_theta
        barrel = (neutral | (radius <= 2 * R)) & (np.abs(z_b) <= half_length)
        zsign = np.sign(cot_theta)
        s_e = np.where(cot_theta != 0, (zsign * half_length - vertex[:, 2]) / cot_theta, np.inf)
        alpha_e = np.where(neutral, 0.0, s_e / R)
        rho_e = np.where(neutral, s_e, 2 * R * np.abs(np.sin(alpha_e / 2)))
        r_inner = half_length / np.sinh(max_eta)
        endcap = (
            ~barrel
            & (s_e > 0)
            & np.isfinite(s_e)
            & (rho_e >= r_inner)
            & (rho_e <= radius)
            & (alpha_e < 2 * np.pi)
        )
    reached = barrel | endcap
    alpha = np.where(barrel, alpha_b, np.where(endcap, alpha_e, 0.0))
    rho = np.where(barrel, radius, np.where(endcap, rho_e, 0.0))
    phi = phi0 - charge * alpha / 2
    pos = np.empty((n, 3))
    pos[:, 0] = vertex[:, 0] + np.nan_to_num(rho) * np.cos(phi)
    pos[:, 1] = vertex[:, 1] + np.nan_to_num(rho) * np.sin(phi)
    pos[:, 2] = np.where(barrel, z_b, zsign * half_length)
    return Impact(reached, np.nan_to_num(pos))


def on_front_sphere(pos: np.ndarray, radius: float) -> np.ndarray:
    """Positions projected radially onto a sphere: a common frame for ECAL and HCAL deposits."""
    norm = np.linalg.norm(pos, axis=1, keepdims=True)
    return np.asarray(pos / np.maximum(norm, 1e-9) * radius)
