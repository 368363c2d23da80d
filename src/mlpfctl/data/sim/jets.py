"""Jet clustering with FastJet's awkward interface over many events at once."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlpfctl.data.sim.quiet import quiet_stdout

MIN_JET_PT = 5.0  # GeV (MLPF reference)


def jet_definition(collider: str) -> Any:
    """ee_genkt R = 0.4, p = -1 for e+e- (as the MLPF CLIC/CLD reference); anti-kT R = 0.4 for pp."""
    import fastjet

    if collider == "ee":
        return fastjet.JetDefinition(fastjet.ee_genkt_algorithm, 0.4, -1.0)
    return fastjet.JetDefinition(fastjet.antikt_algorithm, 0.4)


def cluster_jets(
    p4: np.ndarray, counts: np.ndarray, jetdef: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jets of each event from ``p4`` ([n, 4] px, py, pz, E grouped by event, ``counts`` per event).

    Returns (jets [J, 4] as pt, eta, phi, E sorted by pT per event, jets per event, and for each
    input particle the pT rank of its jet, -1 if in none).
    """
    import awkward as ak
    import fastjet

    n_ev = len(counts)
    jet_of = np.full(len(p4), -1, np.int64)
    if len(p4) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(n_ev, np.int64), jet_of
    arr = ak.unflatten(ak.zip({"px": p4[:, 0], "py": p4[:, 1], "pz": p4[:, 2], "E": p4[:, 3]}), counts)
    with quiet_stdout():  # FastJet prints its banner on first use
        cs = fastjet.ClusterSequence(arr, jetdef)
        jets = cs.inclusive_jets(min_pt=MIN_JET_PT)
        constituents = cs.constituent_index(min_pt=MIN_JET_PT)
    n_jets = ak.to_numpy(ak.num(jets, axis=1)).astype(np.int64)
    px, py, pz, e = (ak.to_numpy(ak.flatten(jets[c])).astype(np.float64) for c in ("px", "py", "pz", "E"))
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    phi = np.arctan2(py, px)
    jet_event = np.repeat(np.arange(n_ev), n_jets)
    order = np.lexsort((-pt, jet_event))  # by event, then pT descending
    rank = np.empty(len(order), np.int64)
    jet_start = np.concatenate([[0], np.cumsum(n_jets)])
    rank[order] = np.arange(len(order)) - jet_start[jet_event[order]]
    out = np.stack([pt, eta, phi, e], 1)[order].astype(np.float32)
    # constituent indices are per event; map them to rows of p4
    flat_idx = ak.to_numpy(ak.flatten(constituents, axis=None)).astype(np.int64)
    jet_of_const = np.repeat(np.arange(len(jet_event)), ak.to_numpy(ak.flatten(ak.num(constituents, axis=2))))
    ev_start = np.concatenate([[0], np.cumsum(counts)])
    jet_of[ev_start[jet_event[jet_of_const]] + flat_idx] = rank[jet_of_const]
    return out, n_jets, jet_of
