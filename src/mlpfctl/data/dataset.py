"""``EventDataset``: random access to the events of a directory of shards or a single file.

Shards are decoded whole (one Parquet read is much cheaper than many small ones) and kept in a
small per-process cache bounded in bytes, so DataLoader workers each hold only what they touch.
The dataset itself pickles without its cache (cheap to send to workers and DDP ranks).
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from mlpfctl.data.block import EventBlock
from mlpfctl.data.detectors import DetectorDescription
from mlpfctl.data.events import DatasetSchema, Event
from mlpfctl.data.readers import SUFFIXES, check_format, detect_format, reader_for, schema_for
from mlpfctl.errors import ConfigError, DataError

MANIFEST_NAME = "manifest.json"
DEFAULT_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class Source:
    """One file of a dataset and how many (non-empty) events it holds."""

    path: Path
    format: str
    events: int


class EventDataset(torch.utils.data.Dataset[Event]):
    """Events of one or more files; ``ds[i]`` is an ``Event`` with class indices in column 0."""

    def __init__(
        self,
        sources: list[Source],
        schema: DatasetSchema,
        lengths: np.ndarray,
        *,
        indices: np.ndarray | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        format: str = "key4hep",
    ) -> None:
        self.sources = sources
        self.schema = schema
        self.format = format
        self.cache_bytes = cache_bytes
        self._all_lengths = np.asarray(lengths, dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum([s.events for s in sources])]).astype(np.int64)
        if int(self._starts[-1]) != len(self._all_lengths):
            raise DataError(
                f"{len(self._all_lengths)} event lengths for {int(self._starts[-1])} events",
                hint="the dataset manifest does not match its shards: regenerate it",
            )
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self.lengths: np.ndarray = (
            self._all_lengths if self.indices is None else self._all_lengths[self.indices]
        )
        self._cache: OrderedDict[int, EventBlock] = OrderedDict()

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> Event:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"event {i} out of range for a dataset of {n} events")
        j = int(i % n if self.indices is None else self.indices[i])
        shard = int(np.searchsorted(self._starts, j, side="right") - 1)
        event = self.block(shard).event(j - int(self._starts[shard]))
        if len(event) != int(self._all_lengths[j]):
            raise DataError(
                f"{self.sources[shard].path}: event {j - int(self._starts[shard])} has {len(event)} "
                f"elements, the manifest says {int(self._all_lengths[j])}",
                hint="the shard changed after the manifest was written: regenerate the dataset",
            )
        return event

    def block(self, shard: int) -> EventBlock:
        """The decoded events of one source file (cached)."""
        cached = self._cache.get(shard)
        if cached is not None:
            self._cache.move_to_end(shard)
            return cached
        src = self.sources[shard]
        block = reader_for(src.format)(src.path)
        if len(block) != src.events:
            raise DataError(
                f"{src.path}: holds {len(block)} events, the manifest says {src.events}",
                hint="the shard changed after the manifest was written: regenerate the dataset",
            )
        self._cache[shard] = block
        while len(self._cache) > 1 and sum(b.nbytes for b in self._cache.values()) > self.cache_bytes:
            self._cache.popitem(last=False)
        return block

    def view(self, indices: np.ndarray) -> EventDataset:
        """A dataset of a subset of these events (same files, schema and cache policy)."""
        base = np.arange(len(self._all_lengths)) if self.indices is None else self.indices
        return EventDataset(
            self.sources,
            self.schema,
            self._all_lengths,
            indices=base[np.asarray(indices, dtype=np.int64)],
            cache_bytes=self.cache_bytes,
            format=self.format,
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state


def _files_of(directory: Path) -> list[Path]:
    patterns = [f"*{s}" for v in SUFFIXES.values() for s in v]
    files = sorted({p for pat in patterns for p in directory.glob(pat) if p.is_file()})
    # Hidden files are our half-written temporaries (atomic writes).
    return [p for p in files if not p.name.startswith(".")]


def _from_manifest(directory: Path, cache_bytes: int) -> EventDataset:
    path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        shards = manifest["shards"]
        detector = str(manifest.get("detector", "clic"))
        sources = [Source(directory / s["file"], "key4hep", int(s["events"])) for s in shards]
        lengths = np.concatenate(
            [np.asarray(s["lengths"], np.int64) for s in shards] or [np.zeros(0, np.int64)]
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: unreadable dataset manifest ({exc})", hint="regenerate with 'mlpfctl data generate'"
        ) from exc
    for src in sources:
        if not src.path.is_file():
            raise DataError(f"{src.path}: shard listed in {path} is missing", hint="regenerate the dataset")
    schema = schema_for("key4hep", detector)
    description = manifest.get("detector_description")
    if description is not None:  # the simulated detector itself, not the documented default
        try:
            schema = dataclasses.replace(schema, detector=DetectorDescription.from_dict(description))
        except (ConfigError, TypeError) as exc:
            raise DataError(
                f"{path}: invalid detector_description ({exc})", hint="regenerate the dataset"
            ) from None
    return EventDataset(sources, schema, lengths, cache_bytes=cache_bytes, format="key4hep")


def _guess_detector(path: Path) -> str:
    return "cld" if "cld" in str(path).lower() else "clic"


def open_dataset(
    path: str | Path, format: str = "auto", *, cache_bytes: int = DEFAULT_CACHE_BYTES
) -> EventDataset:
    """Open a directory of shards (with or without our manifest) or a single file.

    Files without a manifest are read once here to count their events and check them, so a
    corrupt file fails now, naming the file, rather than in a DataLoader worker later.
    """
    fmt = check_format(format)
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or directory", hint="generate data with 'mlpfctl data generate'")
    if p.is_dir():
        if (p / MANIFEST_NAME).is_file() and fmt in ("auto", "key4hep"):
            return _from_manifest(p, cache_bytes)
        files = _files_of(p)
        if fmt != "auto":
            files = [f for f in files if f.name.lower().endswith(SUFFIXES[fmt])]
        if not files:
            raise DataError(
                f"{p}: no data files (.parquet, .pkl.bz2, .pkl) in this directory",
                hint="generate data with 'mlpfctl data generate' or point at the right directory",
            )
    else:
        files = [p]
    formats = [detect_format(f) if fmt == "auto" else fmt for f in files]
    if len(set(formats)) > 1:
        raise DataError(f"{p}: mixes file formats ({', '.join(sorted(set(formats)))})")
    sources: list[Source] = []
    lengths: list[np.ndarray] = []
    for f, ff in zip(files, formats, strict=True):
        block = reader_for(ff)(f)
        sources.append(Source(f, ff, len(block)))
        lengths.append(block.lengths)
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    return EventDataset(
        sources,
        schema_for(formats[0], _guess_detector(p)),
        all_lengths,
        cache_bytes=cache_bytes,
        format=formats[0],
    )


def split_dataset(
    ds: EventDataset, valid_fraction: float, test_fraction: float, seed: int
) -> tuple[EventDataset, EventDataset, EventDataset]:
    """Deterministic random (train, valid, test) views of ``ds``."""
    if not (
        0.0 <= valid_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and valid_fraction + test_fraction < 1.0
    ):
        raise DataError(
            f"valid_fraction {valid_fraction} + test_fraction {test_fraction} must be in [0, 1)",
            hint="set data.valid_fraction and data.test_fraction to smaller values",
        )
    n = len(ds)
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(n)
    n_valid = round(n * valid_fraction)
    n_test = round(n * test_fraction)
    if n - n_valid - n_test < 1 and n > 0:
        raise DataError(
            f"{n} events are too few for valid_fraction {valid_fraction} and test_fraction {test_fraction}",
            hint="generate more events or lower the fractions",
        )
    valid = np.sort(order[:n_valid])
    test = np.sort(order[n_valid : n_valid + n_test])
    train = np.sort(order[n_valid + n_test :])
    return ds.view(train), ds.view(valid), ds.view(test)
