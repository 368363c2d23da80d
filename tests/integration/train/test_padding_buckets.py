"""The training data streams pad batches to the backend's fixed widths (Gaudi graph reuse)."""

from __future__ import annotations

from pathlib import Path

from mlpfctl.backends import get_backend
from mlpfctl.config import Override, resolve
from mlpfctl.train.loop import DataStreams

from .conftest import tiny_sets


def test_streams_pad_to_the_hpu_buckets(ttbar_dir: Path, tmp_path: Path) -> None:
    overrides = [
        Override(*item.split("=", 1), "test") for item in tiny_sets(ttbar_dir, "train.batch_events=4")
    ]
    cfg = resolve(None, overrides, env={}, cwd=tmp_path).config
    streams = DataStreams(cfg, 0, 1)
    plain = list(streams.loader(streams.train, streams.epoch_batches(0)))
    streams.pad_buckets = get_backend("hpu").padding_buckets()
    padded = list(streams.loader(streams.train, streams.epoch_batches(0)))
    widths = {b.X.shape[1] for b in padded}
    assert widths <= set(streams.pad_buckets) and len(widths) < len({b.X.shape[1] for b in plain})
    # the same events, only wider: the real elements are unchanged and the padding is masked out
    assert [b.num_elements for b in padded] == [b.num_elements for b in plain]
