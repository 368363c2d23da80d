"""The one in-memory event representation shared by every reader, the loaders and evaluation.

Every format (our generated Key4hep-layout Parquet, the reference Key4hep Parquet for CLIC/CLD,
the Delphes pickles) is converted into ``Event`` objects described by a ``DatasetSchema``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlpfctl.data.detectors import KNOWN_DETECTORS, DetectorDescription

# Key4hep (CLIC/CLD) conventions, from the reference post-processing (mlpf-reference.md §2-3).
CLIC_CLASS_PDGIDS: tuple[int, ...] = (0, 211, 130, 22, 11, 13)
CLIC_CLASS_NAMES: tuple[str, ...] = ("none", "ch.had", "n.had", "gamma", "e", "mu")
CLIC_ELEMENT_TYPES: dict[int, str] = {1: "track", 2: "cluster"}
CLIC_NUM_FEATURES = 17
YTARGET_COLUMNS: tuple[str, ...] = (
    "PDG",
    "charge",
    "pt",
    "eta",
    "sin_phi",
    "cos_phi",
    "energy",
    "ispu",
    "generatorStatus",
    "simulatorStatus",
    "gp_to_track",
    "gp_to_cluster",
    "jet_idx",
    "particle_number",
)


@dataclass(frozen=True)
class DatasetSchema:
    """What the arrays of a dataset mean (features, element types, particle classes)."""

    name: str  # e.g. "clic", "cld", "delphes"
    num_features: int
    feature_names: tuple[str, ...]
    element_types: dict[int, str]  # X[:, 0] code -> name; 0 = padding
    class_pdgids: tuple[int, ...]  # class index -> PDG-like code (index 0 = no particle)
    class_names: tuple[str, ...]
    # Geometry for physics-informed inputs (link features); None where the format has none.
    detector: DetectorDescription | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_pdgids)


@dataclass
class Event:
    """One event: detector elements with their target and baseline-PF particles.

    ``X`` is ``[N, F]`` float32 (column 0 the element type, columns 1-5 pt|Et, eta, sin_phi,
    cos_phi, p|E). ``ytarget`` and ``ycand`` are ``[N, 14]`` float32 in the Key4hep column order
    (``YTARGET_COLUMNS``) with column 0 already mapped to the class *index* of the schema.
    Jets are ``[J, 4]`` (pt, eta, phi, E).
    """

    X: np.ndarray
    ytarget: np.ndarray
    ycand: np.ndarray
    genmet: float = 0.0
    genjets: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    targetjets: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))

    def __len__(self) -> int:
        return int(self.X.shape[0])


# Per-element feature columns of the reference Key4hep post-processing (mlpf-reference.md §2).
# Tracks carry 16 columns on disk and are zero-padded to the 17 cluster columns in memory.
TRACK_FEATURES: tuple[str, ...] = (
    "elemtype",
    "pt",
    "eta",
    "sin_phi",
    "cos_phi",
    "p",
    "chi2",
    "ndf",
    "dEdx",
    "dEdxError",
    "radiusOfInnermostHit",
    "tanLambda",
    "D0",
    "omega",
    "Z0",
    "time",
)
CLUSTER_FEATURES: tuple[str, ...] = (
    "elemtype",
    "et",
    "eta",
    "sin_phi",
    "cos_phi",
    "energy",
    "position.x",
    "position.y",
    "position.z",
    "iTheta",
    "energy_ecal",
    "energy_hcal",
    "energy_other",
    "num_hits",
    "sigma_x",
    "sigma_y",
    "sigma_z",
)
# One name per shared column: "track|cluster" where the two element types differ.
CLIC_FEATURE_NAMES: tuple[str, ...] = tuple(
    c if t == c else f"{t}|{c}" for t, c in zip((*TRACK_FEATURES, "-"), CLUSTER_FEATURES, strict=True)
)

# The CERN openlab Delphes dataset (zenodo 4559324): 12 features, element types reversed w.r.t. CLIC.
DELPHES_ELEMENT_TYPES: dict[int, str] = {1: "tower", 2: "track"}
DELPHES_NUM_FEATURES = 12
DELPHES_FEATURE_NAMES: tuple[str, ...] = (
    "elemtype",
    "pt|Et",
    "eta",
    "sin_phi",
    "cos_phi",
    "p|E",
    "eta_outer|Eem",
    "sin_phi_outer|Ehad",
    "cos_phi_outer",
    "charge",
    "is_gen_muon",
    "is_gen_electron",
)
DELPHES_CLASS_PDGIDS: tuple[int, ...] = (0, 211, 130, 1, 2, 22, 11, 13)
DELPHES_CLASS_NAMES: tuple[str, ...] = ("none", "ch.had", "n.had", "hfem", "hfhad", "gamma", "e", "mu")
NUM_TARGET_COLUMNS = len(YTARGET_COLUMNS)


def key4hep_schema(detector: str = "clic") -> DatasetSchema:
    """The schema of CLIC/CLD Key4hep data (ours or the reference post-processing's)."""
    return DatasetSchema(
        name=detector,
        num_features=CLIC_NUM_FEATURES,
        feature_names=CLIC_FEATURE_NAMES,
        element_types=dict(CLIC_ELEMENT_TYPES),
        class_pdgids=CLIC_CLASS_PDGIDS,
        class_names=CLIC_CLASS_NAMES,
        detector=KNOWN_DETECTORS.get(detector),
    )


def delphes_schema() -> DatasetSchema:
    return DatasetSchema(
        name="delphes",
        num_features=DELPHES_NUM_FEATURES,
        feature_names=DELPHES_FEATURE_NAMES,
        element_types=dict(DELPHES_ELEMENT_TYPES),
        class_pdgids=DELPHES_CLASS_PDGIDS,
        class_names=DELPHES_CLASS_NAMES,
    )
