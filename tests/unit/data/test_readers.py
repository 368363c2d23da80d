"""Readers of the real formats, on fixture files written in exactly those layouts; bad files fail cleanly."""

from __future__ import annotations

import bz2
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from mlpfctl.data.dataset import open_dataset, split_dataset
from mlpfctl.data.events import CLIC_NUM_FEATURES, NUM_TARGET_COLUMNS
from mlpfctl.errors import DataError
from tests.helpers import assert_user_error, run_cli
from tests.unit.data.fixtures import (
    CLIC_CODES,
    delphes_events,
    key4hep_events,
    write_delphes,
    write_key4hep_reference,
    write_key4hep_rows,
)

pytest.importorskip("awkward", reason="the reference-layout fixture is written with awkward (physics extra)")


def _check_event(ev_in: dict[str, np.ndarray], ev_out: object) -> None:
    X, yt = ev_out.X, ev_out.ytarget  # type: ignore[attr-defined]
    nt = len(ev_in["X_track"])
    assert X.shape == (nt + len(ev_in["X_cluster"]), CLIC_NUM_FEATURES)
    np.testing.assert_allclose(X[:nt, :16], ev_in["X_track"], rtol=1e-6)
    assert np.all(X[:nt, 16] == 0)  # tracks are zero-padded to 17 columns
    np.testing.assert_allclose(X[nt:], ev_in["X_cluster"], rtol=1e-6)
    assert yt.shape[1] == NUM_TARGET_COLUMNS
    codes = np.concatenate([ev_in["ytarget_track"][:, 0], ev_in["ytarget_cluster"][:, 0]])
    assert [CLIC_CODES[int(c)] for c in yt[:, 0]] == codes.astype(int).tolist()


@pytest.mark.parametrize("old_names", [False, True])
def test_reference_key4hep_parquet_reads_back(tmp_path: Path, old_names: bool) -> None:
    events = key4hep_events(12)
    write_key4hep_reference(tmp_path / "reco_p8_ee_tt_ecm380_1.parquet", events, old_names=old_names)
    ds = open_dataset(tmp_path)
    assert ds.format == "key4hep" and ds.schema.name == "clic"
    # Real files carry no geometry: the documented CLIC default applies (link features).
    assert ds.schema.detector is not None and ds.schema.detector.b_field == 4.0
    assert len(ds) == 12
    assert ds.lengths.tolist() == [len(e["X_track"]) + len(e["X_cluster"]) for e in events]
    for i in (0, 5, 11):
        _check_event(events[i], ds[i])
    assert ds[3].genmet == pytest.approx(events[3]["genmet"], rel=1e-6)
    assert ds[3].targetjets.shape == (len(events[3]["targetjet"]), 4)


def test_one_row_per_event_layout_and_cld_name(tmp_path: Path) -> None:
    events = key4hep_events(5, seed=3)
    path = tmp_path / "cld_zz.parquet"
    write_key4hep_rows(path, events)
    ds = open_dataset(path)
    assert ds.schema.name == "cld"
    assert ds.schema.detector is not None and ds.schema.detector.b_field == 2.0
    _check_event(events[2], ds[2])


def test_delphes_pickles_read_back_with_their_own_schema(tmp_path: Path) -> None:
    data = delphes_events(7)
    write_delphes(tmp_path / "tev14_pythia8_ttbar_0_0.pkl.bz2", data)
    ds = open_dataset(tmp_path)
    assert ds.format == "delphes" and ds.schema.num_features == 12
    assert ds.schema.element_types == {1: "tower", 2: "track"}
    assert ds.schema.num_classes == 8
    assert ds.schema.detector is None  # no geometry: models train without link features
    ev = ds[4]
    np.testing.assert_array_equal(ev.X, data["X"][4])
    np.testing.assert_array_equal(ev.ytarget[:, :7], data["ygen"][4])
    assert ev.ytarget.shape[1] == NUM_TARGET_COLUMNS


def test_dataset_pickles_without_its_cache_and_splits_deterministically(tmp_path: Path) -> None:
    write_key4hep_reference(tmp_path / "a.parquet", key4hep_events(40))
    ds = open_dataset(tmp_path)
    _ = ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert len(ds.cache) == 1 and len(clone.cache) == 0 and clone.cache.budget == ds.cache.budget
    np.testing.assert_array_equal(clone[7].X, ds[7].X)
    a = split_dataset(ds, 0.2, 0.1, seed=1)
    b = split_dataset(ds, 0.2, 0.1, seed=1)
    assert [len(s) for s in a] == [28, 8, 4]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.lengths, y.lengths)
        np.testing.assert_array_equal(x[0].X, y[0].X)
    all_idx = np.concatenate([s.indices for s in a])  # type: ignore[misc]
    assert sorted(all_idx.tolist()) == list(range(40))
    assert np.array_equal(a[1][2].X, ds[int(a[1].indices[2])].X)  # type: ignore[index]


class _Evil:
    """Unpickling this would run a shell command: the reader must refuse it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned > pwned.txt",))


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = tmp_path / "good.parquet"
    write_key4hep_reference(good, key4hep_events(5))
    raw = good.read_bytes()
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(raw[: len(raw) // 2])
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(os.urandom(4096))
    foreign = tmp_path / "foreign.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), foreign)
    bad_bz2 = tmp_path / "cut.pkl.bz2"
    write_delphes(bad_bz2, delphes_events(3))
    bad_bz2.write_bytes(bad_bz2.read_bytes()[:200])
    evil = tmp_path / "evil.pkl.bz2"
    evil.write_bytes(bz2.compress(pickle.dumps(_Evil())))
    shape = tmp_path / "shape.pkl.bz2"
    data = delphes_events(2)
    data["X"][1] = data["X"][1][:, :5]
    write_delphes(shape, data)
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    return {
        "truncated": (truncated, "not a readable Parquet file"),
        "garbage": (garbage, "not a readable Parquet file"),
        "foreign": (foreign, "not a Key4hep MLPF file"),
        "bz2": (bad_bz2, "truncated"),
        "evil": (evil, "not a Delphes MLPF pickle"),
        "shape": (shape, "expected (N, 12)"),
        "unknown": (unknown, "unknown file type"),
    }


def test_bad_files_raise_data_errors_naming_the_file(tmp_path: Path) -> None:
    for kind, (path, fragment) in _bad_files(tmp_path).items():
        with pytest.raises(DataError) as info:
            open_dataset(path)
        assert str(path) in info.value.message, kind
        assert fragment in info.value.message, (kind, info.value.message)
    assert not Path("pwned.txt").exists()
    with pytest.raises(DataError, match="no such file"):
        open_dataset(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no data files"):
        open_dataset(empty)


def test_cli_inspect_reports_bad_files_with_exit_2(tmp_path: Path) -> None:
    files = _bad_files(tmp_path)
    for kind in ("truncated", "foreign", "bz2"):
        path, fragment = files[kind]
        proc = run_cli("data", "inspect", str(path), "--json")
        assert_user_error(proc, str(path), fragment)


def test_cli_inspect_json_on_fixtures(tmp_path: Path) -> None:
    import json

    write_delphes(tmp_path / "d.pkl.bz2", delphes_events(4))
    proc = run_cli("data", "inspect", str(tmp_path / "d.pkl.bz2"), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["format"] == "delphes" and info["events"] == 4
    assert set(info["element_types"]) == {"tower", "track"}
    assert abs(sum(info["target_fractions"].values()) - 1) < 1e-3
