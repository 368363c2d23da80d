"""The MLPF target rules on hand-made events (docs/physics-data.md §4)."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from mlpfctl.data.sim.detector import Clusters, DetectorOutput, Tracks
from mlpfctl.data.sim.pythia_source import Particles
from mlpfctl.data.sim.targets import assign_targets


def _particles(rows: list[tuple[int, float, float]]) -> Particles:
    """(pdg, charge, energy) per particle, all in event 0, moving along +x."""
    n = len(rows)
    p4 = np.zeros((n, 4))
    p4[:, 0] = [e for _, _, e in rows]
    p4[:, 3] = [e for _, _, e in rows]
    return Particles(
        event=np.zeros(n, np.int64),
        pdg=np.array([p for p, _, _ in rows], np.int64),
        charge=np.array([q for _, q, _ in rows]),
        p4=p4,
        mass=np.zeros(n),
        vertex=np.zeros((n, 3)),
        ispu=np.zeros(n),
        n_events=1,
    )


def _detector(
    n: int, tracked: list[int], deposits: list[tuple[int, int, float]], n_cl: int
) -> DetectorOutput:
    dep = csr_matrix(
        ([e for _, _, e in deposits], ([p for p, _, _ in deposits], [c for _, c, _ in deposits])),
        shape=(n, n_cl),
    )
    tracks = Tracks(
        particle=np.array(tracked, np.int64),
        event=np.zeros(len(tracked), np.int64),
        features=np.zeros((len(tracked), 16), np.float32),
        charge=np.ones(len(tracked)),
    )
    clusters = Clusters(
        event=np.zeros(n_cl, np.int64), features=np.zeros((n_cl, 17), np.float32), deposit=dep
    )
    particle_track = np.full(n, -1, np.int64)
    particle_track[tracked] = np.arange(len(tracked))
    return DetectorOutput(tracks, clusters, np.asarray(dep.sum(axis=1)).ravel(), particle_track)


def test_reference_rules() -> None:
    parts = _particles(
        [
            (211, 1, 10.0),  # 0: tracked pion, its shower in cluster 0
            (22, 0, 8.0),  # 1: photon, cluster 1 (shared with 2)
            (22, 0, 3.0),  # 2: softer photon in the same cluster -> merged into 1
            (130, 0, 5.0),  # 3: neutral hadron alone in cluster 2
            (13, -1, 20.0),  # 4: tracked muon
            (11, -1, 6.0),  # 5: untracked electron with a cluster -> 22 on the cluster
            (2112, 0, 4.0),  # 6: neutron depositing 0.2 GeV (5 % < 10 %) -> invisible
            (211, 1, 2.0),  # 7: charged pion without track but 0.6 GeV deposited -> visible, owns cluster 4
        ]
    )
    det = _detector(
        8,
        tracked=[0, 4],
        deposits=[(0, 0, 9.0), (1, 1, 8.0), (2, 1, 3.0), (3, 2, 4.0), (5, 3, 6.0), (6, 2, 0.2), (7, 4, 0.6)],
        n_cl=5,
    )
    yt_trk, yt_cl = assign_targets(parts, det)
    assert yt_trk[:, 0].tolist() == [211, 13]
    assert yt_trk[:, 1].tolist() == [1, -1]
    # cluster 0: the pion's own shower is "none"; 1: the harder photon with the softer one merged in;
    # 2: the neutral hadron (the invisible neutron leaves no particle); 3: electron -> photon class;
    # 4: an untracked charged hadron on a cluster becomes a neutral hadron with charge 0
    assert yt_cl[:, 0].tolist() == [0, 22, 130, 22, 130]
    assert np.all(yt_cl[:, 1] == 0)
    assert yt_cl[1, 6] == np.float32(11.0)  # 8 + 3 GeV
    assert yt_cl[2, 6] == np.float32(5.0)
    assert yt_cl[0, 6] == 0 and yt_cl[0, 13] == 0
    # total target energy = visible particles only (neutron dropped)
    assert np.isclose(yt_trk[:, 6].sum() + yt_cl[:, 6].sum(), 10 + 8 + 3 + 5 + 20 + 6 + 2)
    assert np.all(yt_trk[:, 12] == -1)  # jets are assigned later


def test_a_particle_takes_its_next_best_unused_cluster() -> None:
    parts = _particles([(22, 0, 10.0), (22, 0, 5.0)])
    # both deposit most in cluster 0; the softer one also has cluster 1 available
    det = _detector(2, tracked=[], deposits=[(0, 0, 10.0), (1, 0, 3.0), (1, 1, 2.0)], n_cl=2)
    _, yt_cl = assign_targets(parts, det)
    assert yt_cl[:, 6].tolist() == [10.0, 5.0]
