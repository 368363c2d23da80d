"""Generation end to end: Pythia8 + detector + targets + baseline PF + jets -> shards -> readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlpfctl.data.dataset import open_dataset
from mlpfctl.data.generate import generate_dataset
from mlpfctl.data.manifest import Manifest
from tests.helpers import assert_user_error, run_cli

pytest.importorskip("pythia8mc", reason="needs the physics extra (pythia8mc)")
pytest.importorskip("fastjet", reason="needs the physics extra (fastjet)")
pytestmark = pytest.mark.physics


@pytest.fixture(scope="module")
def ttbar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ee_ttbar")
    generate_dataset(out, process="ee_ttbar", events=300, seed=7, events_per_shard=150, workers=1)
    return out


def _all(ds_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ds = open_dataset(ds_dir)
    blocks = [ds.block(i) for i in range(len(ds.sources))]
    X = np.concatenate([b.X for b in blocks])
    yt = np.concatenate([b.ytarget for b in blocks])
    yc = np.concatenate([b.ycand for b in blocks])
    return X, yt, yc, np.concatenate([np.diff(b.targetjet_offsets) for b in blocks])


def test_manifest_and_layout(ttbar: Path) -> None:
    m = Manifest.read(ttbar)
    assert m.process == "ee_ttbar" and m.events == 300 and len(m.shards) == 2
    assert m.versions["pythia8mc"] == "8.317.2"
    assert all(len(s["sha256"]) == 64 and s["events"] == len(s["lengths"]) for s in m.shards)
    import pyarrow.parquet as pq

    names = pq.read_schema(ttbar / m.shards[0]["file"]).names
    assert names == [
        "X_track", "X_cluster", "ytarget_track", "ytarget_cluster", "ycand_track",
        "ycand_cluster", "genmet", "genjet", "targetjet",
    ]  # fmt: skip
    ds = open_dataset(ttbar)
    assert len(ds) == m.totals["events"]
    assert ds.lengths.sum() == m.totals["elements"]
    # The simulated detector's description travels with the data (for link features).
    from mlpfctl.data.sim.params import DetectorParams

    assert m.detector_description == DetectorParams().description().to_dict()
    assert ds.schema.detector == DetectorParams().description()


def test_physics_sanity(ttbar: Path) -> None:
    X, yt, yc, n_jets = _all(ttbar)
    track, cluster = X[:, 0] == 1, X[:, 0] == 2
    n_ev = len(n_jets)
    # sizes close to the reference prototype (46 tracks and ~110 elements per ee->tt event)
    assert 30 < track.sum() / n_ev < 60
    assert 80 < len(X) / n_ev < 180
    # charge bookkeeping: tracks carry the particle charge, clusters are neutral
    assert set(np.unique(yt[track, 1]).tolist()) <= {-1.0, 1.0}
    assert np.all(yt[cluster, 1] == 0)
    assert np.all(yt[track, 0] != 0)  # every track belongs to a particle
    # class fractions in plausible ranges (index: none, ch.had, n.had, gamma, e, mu)
    frac = np.bincount(yt[:, 0].astype(int), minlength=6) / len(yt)
    assert 0.1 < frac[0] < 0.5 and 0.2 < frac[1] < 0.5 and 0.01 < frac[2] < 0.15 and 0.2 < frac[3] < 0.5
    assert frac[4] < 0.05 and frac[5] < 0.05
    assert set(np.unique(yt[cluster, 0]).astype(int).tolist()) <= {0, 2, 3}
    # energy bookkeeping: positive kinematics where a target exists, visible energy below sqrt(s)
    real = yt[:, 0] != 0
    assert np.all(yt[real, 2] > 0) and np.all(yt[real, 6] > 0)
    assert np.all(X[real, 1] > 0) and np.all(X[real, 5] > 0)  # the loader takes log ratios
    ds = open_dataset(ttbar)
    e_target = np.array([ds[i].ytarget[:, 6].sum() for i in range(len(ds))])
    assert np.all(e_target < 380 * 1.05)
    assert 250 < np.median(e_target) < 380
    # jets found: tt -> 6 partons
    assert 3 < n_jets.mean() < 9
    # the baseline PF: same charged multiplicity and similar total energy as the target
    assert abs((yc[:, 0] != 0).sum() / real.sum() - 1) < 0.3
    e_cand = np.array([ds[i].ycand[:, 6].sum() for i in range(len(ds))])
    assert 0.8 < np.median(e_cand / e_target) < 1.2


def test_same_seed_same_bytes_and_resume_keeps_valid_shards(ttbar: Path, tmp_path: Path) -> None:
    m1 = Manifest.read(ttbar)
    again = generate_dataset(
        tmp_path, process="ee_ttbar", events=300, seed=7, events_per_shard=150, workers=2
    )
    assert [s["sha256"] for s in again.shards] == [s["sha256"] for s in m1.shards]
    (tmp_path / again.shards[1]["file"]).write_bytes(b"damaged")
    resumed = generate_dataset(tmp_path, process="ee_ttbar", events=300, seed=7, events_per_shard=150)
    assert resumed.totals["kept_shards"] == 1 and resumed.totals["generated_shards"] == 1
    assert [s["sha256"] for s in resumed.shards] == [s["sha256"] for s in m1.shards]


def test_cli_generate_and_inspect_keep_stdout_clean(tmp_path: Path) -> None:
    out = tmp_path / "qq"
    proc = run_cli("data", "generate", "--process", "ee_qq", "--events", "100", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # nothing but JSON on stdout (no Pythia/FastJet banners)
    assert summary["events"] == 100
    proc = run_cli("data", "inspect", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["events"] == 100 and info["manifest"] and info["schema"] == "clic"
    assert info["element_types"]["track"]["target_fractions"]["ch.had"] > 0.8
    # a different dataset in the same place is refused, not silently mixed
    proc = run_cli("data", "generate", "--process", "ee_ttbar", "--events", "100", "--out", str(out))
    assert_user_error(proc, "already holds a different dataset")


def test_pp_ttbar_with_pileup(tmp_path: Path) -> None:
    m = generate_dataset(tmp_path, process="pp_ttbar", events=6, seed=1, pileup_mu=3.0)
    ds = open_dataset(tmp_path)
    assert len(ds) == m.totals["events"] == 6
    ispu = np.concatenate([ds[i].ytarget[:, 7] for i in range(len(ds))])
    assert 0 < ispu.mean() < 1


def test_bad_requests_are_usage_errors(tmp_path: Path) -> None:
    proc = run_cli("data", "generate", "--process", "nope", "--out", str(tmp_path / "x"))
    assert_user_error(proc, "nope")
    proc = run_cli("data", "generate", "--process", "ee_qq", "--pileup-mu", "5", "--out", str(tmp_path / "x"))
    assert_user_error(proc, "pile-up")
