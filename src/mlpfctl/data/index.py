"""The open-time index of a directory without a manifest: event counts and sizes per file.

Real datasets (CLIC, CLD: hundreds of Parquet files, no manifest of ours) need the number of
events and the elements of every event before the first batch can be planned. Reading them costs
the two X columns of a Parquet file (the targets, candidates and jets stay on disk); a pickle has
no metadata and is decoded once. The answers are kept in ``.mlpfctl-index.json`` next to the
data, or, where the data directory is not writable, under ``$MLPFCTL_CACHE_DIR/index`` (default
``$XDG_CACHE_HOME/mlpfctl/index``, i.e. ``~/.cache/mlpfctl/index``). A file whose size or
modification time changed is read again; every later open reads one small JSON file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mlpfctl.atomic import atomic_write_text
from mlpfctl.data.readers import lengths_for

INDEX_NAME = ".mlpfctl-index.json"
INDEX_VERSION = 1


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("MLPFCTL_CACHE_DIR"):
        return Path(env["MLPFCTL_CACHE_DIR"]).expanduser()
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mlpfctl"


def index_paths(directory: Path, env: Mapping[str, str] | None = None) -> tuple[Path, Path]:
    """Where the index of ``directory`` lives: next to the data, else in the cache directory."""
    key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:20]
    return directory / INDEX_NAME, cache_dir(env) / "index" / f"{key}.json"


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _load(paths: Sequence[Path]) -> dict[str, Any]:
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("version") == INDEX_VERSION:
            files = data.get("files")
            if isinstance(files, dict):
                return files
    return {}


def _store(paths: Sequence[Path], files: dict[str, Any]) -> Path | None:
    text = json.dumps({"version": INDEX_VERSION, "files": files}, separators=(",", ":")) + "\n"
    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
            os.chmod(path, 0o644)  # others who read the data may use it too
            return path
        except OSError:
            continue
    return None  # nowhere writable: the next open reads the files again


def file_lengths(
    directory: Path, files: Sequence[Path], formats: Sequence[str], *, threads: int | None = None
) -> list[np.ndarray]:
    """Elements per event of each file, from the index where it is current, else read (and indexed)."""
    paths = index_paths(directory)
    known = _load(paths)
    out: list[np.ndarray | None] = []
    todo: list[int] = []
    for i, (f, fmt) in enumerate(zip(files, formats, strict=True)):
        entry = known.get(f.name)
        size, mtime = _stamp(f)
        if (
            isinstance(entry, dict)
            and entry.get("size") == size
            and entry.get("mtime_ns") == mtime
            and entry.get("format") == fmt
        ):
            out.append(np.asarray(entry["lengths"], dtype=np.int64))
        else:
            out.append(None)
            todo.append(i)
    if todo:
        # pyarrow and bz2 release the GIL: threads read several files at once
        workers = threads or min(8, os.cpu_count() or 1, len(todo))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = pool.map(lambda i: lengths_for(formats[i])(files[i]), todo)
            for i, lengths in zip(todo, results, strict=True):
                out[i] = lengths
        current = {f.name for f in files}
        kept = {name: entry for name, entry in known.items() if name not in current}
        for f, fmt, found in zip(files, formats, out, strict=True):
            assert found is not None
            size, mtime = _stamp(f)
            kept[f.name] = {"size": size, "mtime_ns": mtime, "format": fmt, "lengths": found.tolist()}
        _store(paths, kept)
    return [x for x in out if x is not None]
