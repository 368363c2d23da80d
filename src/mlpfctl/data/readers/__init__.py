"""Readers: one function per on-disk format, each returning an ``EventBlock``.

Every reader turns a corrupt, truncated or foreign file into a ``DataError`` that names the file
and says what is wrong; nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mlpfctl.errors import DataError

if TYPE_CHECKING:  # the names below are read by the configuration schema: no numpy on import
    import numpy as np

    from mlpfctl.data.block import EventBlock
    from mlpfctl.data.events import DatasetSchema

FORMATS: tuple[str, ...] = ("key4hep", "delphes")
SUFFIXES: dict[str, tuple[str, ...]] = {"key4hep": (".parquet",), "delphes": (".pkl.bz2", ".pkl")}


def detect_format(path: Path) -> str:
    """The format of one file, from its name (the readers then check the content)."""
    name = path.name.lower()
    for fmt, suffixes in SUFFIXES.items():
        if name.endswith(suffixes):
            return fmt
    raise DataError(
        f"{path}: unknown file type (expected {', '.join(s for v in SUFFIXES.values() for s in v)})",
        hint="pass --format key4hep or delphes, or point at a directory of Parquet shards",
    )


def check_format(fmt: str) -> str:
    if fmt not in ("auto", *FORMATS):
        raise DataError(f"unknown data format {fmt!r}", hint=f"choose one of: auto, {', '.join(FORMATS)}")
    return fmt


def reader_for(fmt: str) -> Callable[[Path], EventBlock]:
    if fmt == "key4hep":
        from mlpfctl.data.readers.key4hep import read_key4hep

        return read_key4hep
    if fmt == "delphes":
        from mlpfctl.data.readers.delphes import read_delphes

        return read_delphes
    raise DataError(f"unknown data format {fmt!r}", hint=f"choose one of: {', '.join(FORMATS)}")


def lengths_for(fmt: str) -> Callable[[Path], np.ndarray]:
    """Elements per event of one file, as cheaply as the format allows (for the open-time index)."""
    if fmt == "key4hep":
        from mlpfctl.data.readers.key4hep import key4hep_lengths

        return key4hep_lengths
    read = reader_for(fmt)  # pickles carry no metadata: decode the file once
    return lambda path: read(path).lengths


def schema_for(fmt: str, detector: str = "clic") -> DatasetSchema:
    from mlpfctl.data.events import delphes_schema, key4hep_schema

    return delphes_schema() if fmt == "delphes" else key4hep_schema(detector)
