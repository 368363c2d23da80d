"""Detector descriptions: the geometry and resolutions that physics-informed model inputs need.

The MLPF link features (``mlpfctl.models.features``) propagate every track to the calorimeter
front and compare its momentum with the energy of the cluster it points at. That needs the
solenoid field, where the calorimeters start and how well they measure energy: numbers that
belong to the detector, not to the model. A description travels with the dataset:

- generated data: ``manifest.json`` holds the description of the simulated detector
  (``mlpfctl.data.sim.params.DetectorParams.description``);
- real files: the reader names the detector (CLIC, CLD from the path) and the documented default
  below applies; ``model.detector`` picks another one (or ``none``).

Datasets without a description (Delphes) train without link features.

Units: tesla, millimetres, GeV. The defaults are approximate public numbers (sources per entry);
they only steer a feature computation, so a few per cent off costs little.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from mlpfctl.errors import ConfigError


@dataclass(frozen=True)
class DetectorDescription:
    """What the link features need to know about a detector."""

    name: str
    # Solenoid field (T) along +z; pT [GeV] = 3e-4 * B * R [mm].
    b_field: float
    # Front faces of the calorimeters (mm): barrel inner radius and endcap |z|.
    ecal_r: float
    ecal_z: float
    hcal_r: float
    hcal_z: float
    # Hadronic energy resolution sigma/E = stochastic / sqrt(E) (+) constant: how far a cluster's
    # energy may fluctuate around the momenta of the tracks that point at it.
    hcal_stochastic: float
    hcal_constant: float
    # A track links to its nearest cluster within this distance (mm) on the calorimeter front.
    link_distance: float = 150.0
    # +1 when the track curvature column (omega) has the sign of the charge.
    omega_charge_sign: float = 1.0
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorDescription:
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in data]
        unknown = sorted(set(data) - known)
        if missing or unknown:
            raise ConfigError(
                f"invalid detector description (missing: {missing}, unknown: {unknown})",
                f"fields: {', '.join(sorted(known))}",
            )
        return cls(**data)


# Documented defaults per known detector. CLIC and CLD are what the reference's Key4hep files
# (mlpf-reference.md §4) come from; CMS for its PF datasets (which carry their own track
# impact coordinates, but no reader here yet).
KNOWN_DETECTORS: dict[str, DetectorDescription] = {
    "clic": DetectorDescription(
        name="clic",
        b_field=4.0,
        ecal_r=1500.0,
        ecal_z=2310.0,
        hcal_r=1740.0,
        hcal_z=2540.0,
        hcal_stochastic=0.55,
        hcal_constant=0.05,
        source="CLIC_o3_v14 / CLIC CDR (docs/physics-data.md §5); field as in the reference conf.py",
    ),
    "cld": DetectorDescription(
        name="cld",
        b_field=2.0,
        ecal_r=2150.0,
        ecal_z=2310.0,
        hcal_r=2400.0,
        hcal_z=2540.0,
        hcal_stochastic=0.55,
        hcal_constant=0.05,
        source="FCC-ee CLD (arXiv:1911.12230, approximate); field as in the reference conf.py",
    ),
    "cms": DetectorDescription(
        name="cms",
        b_field=3.8,
        ecal_r=1290.0,
        ecal_z=3170.0,
        hcal_r=1770.0,
        hcal_z=3880.0,
        hcal_stochastic=1.0,
        hcal_constant=0.05,
        link_distance=100.0,
        source="CMS detector paper (JINST 3 S08004), approximate",
    ),
}
DETECTOR_CHOICES: tuple[str, ...] = (*KNOWN_DETECTORS, "none")


def known_detector(name: str) -> DetectorDescription | None:
    """The documented default for ``name`` (``none`` -> None)."""
    if name == "none":
        return None
    try:
        return KNOWN_DETECTORS[name]
    except KeyError:
        raise ConfigError(f"unknown detector {name!r}", f"available: {', '.join(DETECTOR_CHOICES)}") from None
