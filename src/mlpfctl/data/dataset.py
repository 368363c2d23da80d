"""``EventDataset``: the events of a directory of shards or a single file.

Shards are decoded whole (one Parquet read is much cheaper than many small ones) into a
per-process ``ShardCache`` bounded in bytes and shared by every view (train/valid/test) of one
dataset. ``ds[i]`` returns a copy of the event, never a view into a decoded shard: a view would
keep its whole shard alive after the cache dropped it (a batch of 70 events from 70 shards held
70 shards, 3.5 GB with a 32 MB cache). Loaders that know the order of the epoch
(``mlpfctl.data.loader``) read through the same cache. The dataset pickles without the cached
shards (cheap to send to workers and DDP ranks).
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from mlpfctl.data.block import EventBlock, batch_bytes_per_event
from mlpfctl.data.detectors import DetectorDescription
from mlpfctl.data.events import DatasetSchema, Event
from mlpfctl.data.readers import SUFFIXES, check_format, detect_format, reader_for, schema_for
from mlpfctl.errors import ConfigError, DataError

MANIFEST_NAME = "manifest.json"
DEFAULT_CACHE_BYTES = 1 << 30


class ShardCache:
    """Decoded shards of one process, within ``budget`` bytes (least recently used go first).

    Keys are a shard index (whole decoded shards, for ``ds[i]``) or a loader's key for a compact
    part of one; loaders that know the epoch's order evict by next use instead (``drop``). Both
    count bytes here. Pickles empty: every process decodes what it reads itself.
    """

    def __init__(self, budget: int) -> None:
        self.budget = int(budget)
        self.blocks: OrderedDict[Hashable, EventBlock] = OrderedDict()
        self.nbytes = 0

    def __contains__(self, shard: object) -> bool:
        return shard in self.blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def get(self, shard: Hashable) -> EventBlock | None:
        block = self.blocks.get(shard)
        if block is not None:
            self.blocks.move_to_end(shard)
        return block

    def put(self, shard: Hashable, block: EventBlock, *, evict_lru: bool = True) -> None:
        self.drop(shard)
        self.blocks[shard] = block
        self.nbytes += block.nbytes
        while evict_lru and len(self.blocks) > 1 and self.nbytes > self.budget:
            self.drop(next(iter(self.blocks)))

    def drop(self, shard: Hashable) -> None:
        block = self.blocks.pop(shard, None)
        if block is not None:
            self.nbytes -= block.nbytes

    def clear(self) -> None:
        self.blocks.clear()
        self.nbytes = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"budget": self.budget}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["budget"])  # type: ignore[misc]


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
        cache: ShardCache | None = None,
    ) -> None:
        self.sources = sources
        self.schema = schema
        self.format = format
        self.cache = cache if cache is not None else ShardCache(cache_bytes)
        self._groups: ShardGroups | None = None
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

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_groups": None}  # rebuilt where needed

    @property
    def cache_bytes(self) -> int:
        return self.cache.budget

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> Event:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"event {i} out of range for a dataset of {n} events")
        j = int(i % n if self.indices is None else self.indices[i])
        shard = int(np.searchsorted(self._starts, j, side="right") - 1)
        event = self.block(shard).event(j - int(self._starts[shard]))
        # a copy: a view would keep the whole decoded shard alive after the cache dropped it
        return Event(
            X=event.X.copy(),
            ytarget=event.ytarget.copy(),
            ycand=event.ycand.copy(),
            genmet=event.genmet,
            genjets=event.genjets.copy(),
            targetjets=event.targetjets.copy(),
        )

    def block(self, shard: int) -> EventBlock:
        """The decoded events of one source file (cached, least recently used dropped first)."""
        cached = self.cache.get(shard)
        if cached is not None:
            return cached
        block = self.read_shard(shard)
        self.cache.put(shard, block)
        return block

    def read_shard(self, shard: int) -> EventBlock:
        """Decode one source file and check it against what the manifest or index said (no caching)."""
        src = self.sources[shard]
        block = reader_for(src.format)(src.path)
        a, b = int(self._starts[shard]), int(self._starts[shard + 1])
        if len(block) != src.events or not np.array_equal(block.lengths, self._all_lengths[a:b]):
            raise DataError(
                f"{src.path}: holds {len(block)} events of other sizes than the manifest or index "
                f"says ({src.events} events)",
                hint="the file changed after the manifest was written: regenerate the dataset",
            )
        return block

    # -- what the batch planner and the streaming loader need -----------------------------
    def global_indices(self, indices: np.ndarray | None = None) -> np.ndarray:
        """Positions in the whole dataset of (some of) this view's events."""
        base = np.arange(len(self._all_lengths)) if self.indices is None else self.indices
        return base if indices is None else base[np.asarray(indices, dtype=np.int64)]

    def locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard, event within the shard) of view events ``indices``."""
        j = self.global_indices(indices)
        shard = np.searchsorted(self._starts, j, side="right") - 1
        return shard, j - self._starts[shard]

    def shard_ids(self) -> np.ndarray:
        """The shard of every event of this view."""
        return np.searchsorted(self._starts, self.global_indices(), side="right") - 1

    def event_nbytes(self) -> np.ndarray:
        """Bytes each event of this view takes in a loader's compact shard (``EventBlock.compact``)."""
        return batch_bytes_per_event(self.lengths, self.schema.num_features)

    def shard_groups(self) -> ShardGroups:
        """This view's events grouped by shard (computed once per view and process)."""
        if self._groups is None:
            self._groups = ShardGroups(self)
        return self._groups

    def decoded_bytes(self) -> int:
        """What a loader holds to keep every event of this view in memory."""
        return int(self.event_nbytes().sum())

    def view(self, indices: np.ndarray) -> EventDataset:
        """A dataset of a subset of these events (same files, schema and cache policy)."""
        base = np.arange(len(self._all_lengths)) if self.indices is None else self.indices
        return EventDataset(
            self.sources,
            self.schema,
            self._all_lengths,
            indices=base[np.asarray(indices, dtype=np.int64)],
            format=self.format,
            cache=self.cache,
        )


class ShardGroups:
    """The events of a view grouped by shard: what a loader keeps of a shard (``compact``).

    ``row[i]`` is view event ``i``'s row in its shard's compact block, which holds the view's
    events of that shard in view order; ``key(shard)`` names that block in the shared cache.
    """

    def __init__(self, view: EventDataset) -> None:
        shard = view.shard_ids()
        self.order = np.argsort(shard, kind="stable")
        ids, starts, counts = np.unique(shard[self.order], return_index=True, return_counts=True)
        self.row = np.empty(len(shard), np.int32)
        self.row[self.order] = np.arange(len(shard)) - np.repeat(starts, counts)
        self.span = {
            s: (a, a + c) for s, a, c in zip(ids.tolist(), starts.tolist(), counts.tolist(), strict=True)
        }
        nbytes = np.bincount(shard, weights=view.event_nbytes(), minlength=len(view.sources))
        self.nbytes = nbytes.astype(np.int64) + 8
        self.token = zlib.crc32(view.global_indices().tobytes())
        self._view = view

    def key(self, shard: int) -> tuple[int, int, int]:
        return (self.token, len(self._view), shard)

    def events(self, shard: int) -> np.ndarray:
        """Positions within ``shard`` of the view's events there, in view order."""
        a, b = self.span[shard]
        view = self._view
        local: np.ndarray = view.global_indices(self.order[a:b]) - view._starts[shard]
        return local


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

    Without a manifest, the event counts and sizes come from the directory's index
    (``mlpfctl.data.index``): the first open reads the X columns of every Parquet file (every
    pickle whole), checking each, so a corrupt file fails now, naming the file, rather than in a
    DataLoader worker later; later opens read the index only.
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
    from mlpfctl.data.index import file_lengths

    lengths = file_lengths(p if p.is_dir() else p.parent, files, formats)
    sources = [Source(f, ff, len(n)) for f, ff, n in zip(files, formats, lengths, strict=True)]
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
