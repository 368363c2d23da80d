"""Parameters of the parametric CLIC-like detector, each with its source.

Values are approximate CLIC_o3_v14 / CLIC CDR numbers collected in docs/physics-data.md §5
(geometry, resolutions, thresholds) and tuned only for event sizes and class fractions; they are
not a validated detector description.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlpfctl.data.detectors import DetectorDescription


@dataclass(frozen=True)
class DetectorParams:
    # Solenoid field in tesla (CLIC 4 T; CLD would be 2 T).
    b_field: float = 4.0
    # Barrel tracker layer radii in mm: 6 vertex layers then 6 main-tracker layers (CLIC_o3_v14).
    tracker_layers: tuple[float, ...] = (31, 33, 44, 46, 58, 60, 127, 340, 554, 819, 1153, 1486)
    # Endcap disks |z| in mm (3 vertex disks, 7 tracker disks) and their outer radius (CLIC CDR).
    tracker_disks: tuple[float, ...] = (160, 207, 257, 524, 808, 1093, 1377, 1661, 1946, 2190)
    disk_outer_radius: float = 1400.0
    tracker_half_length: float = 2200.0
    # Tracking acceptance |eta| < 2.5, production radius < 600 mm, >= 4 hits (ndf = 2 nhits - 5 > 0).
    track_max_eta: float = 2.5
    track_max_prod_radius: float = 600.0
    track_min_hits: int = 4
    # Efficiency 0.99 * clip((pT - 0.1) / 0.2, 0, 1): turn-on between 0.1 and 0.3 GeV.
    track_eff_plateau: float = 0.99
    track_eff_pt0: float = 0.1
    track_eff_width: float = 0.2
    # sigma(pT)/pT = a pT (+) b / sqrt(sin theta)  (CLIC CDR: 2e-5 /GeV and 1e-3).
    pt_res_a: float = 2e-5
    pt_res_b: float = 1e-3
    # Angular resolution of the track direction (rad), impact-parameter resolution
    # sigma(d0) = 5 um (+) 15 um / (p sin^1.5 theta) (CLIC CDR), dE/dx resolution 8 %.
    angle_res: float = 1e-4
    d0_res_a: float = 0.005
    d0_res_b: float = 0.015
    dedx_res: float = 0.08
    # Calorimeter front faces (mm): ECAL barrel r / endcap |z|, HCAL barrel r / endcap |z|; |eta| < 3.
    ecal_r: float = 1500.0
    ecal_z: float = 2310.0
    hcal_r: float = 1740.0
    hcal_z: float = 2540.0
    calo_max_eta: float = 3.0
    # Hadron showers: probability to start in the ECAL and the ECAL fraction U(lo, hi) if so.
    had_ecal_prob: float = 0.55
    had_ecal_frac: tuple[float, float] = (0.1, 0.6)
    # Split-off fragments of hadron showers: probability, count 1..max, energy fraction, distance (mm).
    splitoff_prob: float = 0.3
    splitoff_max: int = 3
    splitoff_frac: tuple[float, float] = (0.1, 0.2)
    splitoff_dist: tuple[float, float] = (50.0, 150.0)
    # Muons: MIP deposits 0.25 GeV in the ECAL, ~1.6 GeV in the HCAL above 3 GeV (real CLD ~2 GeV).
    mu_ecal: float = 0.25
    mu_hcal: float = 1.6
    mu_hcal_min_p: float = 3.0
    # Cell thresholds (GeV): 20 MeV ECAL, 100 MeV HCAL.
    ecal_threshold: float = 0.02
    hcal_threshold: float = 0.1
    # Noise clusters per event (Poisson mean) with energy U(lo, hi) GeV in the ECAL.
    noise_mean: float = 1.0
    noise_energy: tuple[float, float] = (0.03, 0.3)
    # Clustering: deposits linked if closer than these distances (mm) on the ECAL front sphere.
    link_ecal: float = 20.0
    link_hcal: float = 120.0
    link_ecal_hcal: float = 150.0
    # Energy resolutions: ECAL 17 %/sqrt(E) (+) 1 %, HCAL 55 %/sqrt(E) (+) 5 % (CLIC CDR).
    ecal_stoch: float = 0.17
    ecal_const: float = 0.01
    hcal_stoch: float = 0.55
    hcal_const: float = 0.05
    # Cluster position smearing (mm) and intrinsic widths (mm) for EM / hadronic clusters.
    pos_res_em: float = 3.0
    pos_res_had: float = 30.0
    width_em: float = 15.0
    width_had: float = 60.0
    # Number of calorimeter hits ~ Poisson(25 E_ecal^0.9 + 12 E_hcal^0.9).
    hits_ecal: float = 25.0
    hits_hcal: float = 12.0
    # Smallest reconstructed cluster energy kept (GeV).
    min_cluster_energy: float = 0.02

    @property
    def curvature(self) -> float:
        """pT [GeV] = curvature * R [mm]  (0.3 B[T] R[m])."""
        return 3e-4 * self.b_field

    def description(self) -> DetectorDescription:
        """What a model's link features need to know about this detector (stored in the manifest)."""
        return DetectorDescription(
            name="clic-parametric",
            b_field=self.b_field,
            ecal_r=self.ecal_r,
            ecal_z=self.ecal_z,
            hcal_r=self.hcal_r,
            hcal_z=self.hcal_z,
            hcal_stochastic=self.hcal_stoch,
            hcal_constant=self.hcal_const,
            source="mlpfctl.data.sim.params.DetectorParams (the simulated detector)",
        )
