"""Opening a directory without a manifest: event sizes from the X columns once, then from the index."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import mlpfctl.data.readers.key4hep as key4hep
from mlpfctl.data import index
from mlpfctl.data.dataset import open_dataset
from tests.unit.data.fixtures import delphes_events, write_delphes, write_key4hep_synthetic


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path) -> None:
        raise AssertionError(f"{path} was decoded")

    monkeypatch.setattr(key4hep, "read_key4hep", refuse)


def test_first_open_reads_only_x_columns_and_later_opens_only_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lengths = [write_key4hep_synthetic(tmp_path / f"f{i}.parquet", 20 + i, seed=i) for i in range(3)]
    with monkeypatch.context() as m:
        _no_decoding(m)  # the first open never decodes a whole file
        ds = open_dataset(tmp_path)
    assert (tmp_path / index.INDEX_NAME).is_file()
    np.testing.assert_array_equal(ds.lengths, np.concatenate(lengths))
    assert [s.events for s in ds.sources] == [20, 21, 22]

    def refuse(path: Path) -> None:
        raise AssertionError(f"{path} was read again")

    with monkeypatch.context() as m:
        m.setattr(key4hep, "key4hep_lengths", refuse)
        again = open_dataset(tmp_path)
    np.testing.assert_array_equal(again.lengths, ds.lengths)
    # a replaced file is read again, the others are not
    new = write_key4hep_synthetic(tmp_path / "f1.parquet", 7, seed=9)
    os.utime(tmp_path / "f1.parquet", ns=(1, 1))
    read: list[str] = []
    original = key4hep.key4hep_lengths

    def counting(path: Path) -> np.ndarray:
        read.append(path.name)
        return original(path)

    monkeypatch.setattr(key4hep, "key4hep_lengths", counting)
    third = open_dataset(tmp_path)
    assert read == ["f1.parquet"]
    np.testing.assert_array_equal(third.lengths, np.concatenate([lengths[0], new, lengths[2]]))
    assert np.array_equal(third[len(lengths[0])].X, third.read_shard(1).event(0).X)


def test_an_unwritable_data_directory_keeps_its_index_in_the_cache_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    write_key4hep_synthetic(data / "a.parquet", 10)
    write_delphes(data / "b.pkl.bz2", delphes_events(4))
    (data / index.INDEX_NAME).mkdir()  # the index cannot be written there
    monkeypatch.setenv("MLPFCTL_CACHE_DIR", str(cache))
    ds = open_dataset(data, format="key4hep")
    stored = list((cache / "index").glob("*.json"))
    assert len(stored) == 1
    _no_decoding(monkeypatch)
    monkeypatch.setattr(key4hep, "key4hep_lengths", lambda p: (_ for _ in ()).throw(AssertionError(p)))
    np.testing.assert_array_equal(open_dataset(data, format="key4hep").lengths, ds.lengths)
    # pickles carry no metadata: decoded once, then indexed too
    assert len(open_dataset(data / "b.pkl.bz2")) == 4
    assert open_dataset(data / "b.pkl.bz2").lengths.tolist() == [len(x) for x in delphes_events(4)["X"]]
