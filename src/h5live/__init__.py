"""h5live: follow HDF5 files while they are written (SWMR) and stream them, chunk-aligned.

Public API; everything in underscore modules is private.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from h5live import chunk_utils, errors, utils
from h5live._follow.follower import FollowPolicy, KeyFollower, StopReason
from h5live._follow.rows import RowKeyFollower
from h5live._read.chunksource import ChunkSource
from h5live._read.datasource import DataSource
from h5live._read.reader import FrameReader, SliceDict
from h5live._source.spec import KNOWN_LAYOUTS, Layout, SourceSpec, open_source
from h5live._stages import (
    Stage,
    StageChain,
    bin_frames,
    cast_frames,
    crop_frames,
    sum_frames,
)

if TYPE_CHECKING:
    __version__: str
    from h5live._iterate.iterator import LiveDataChunkIterator
    from h5live._write.conversion import ConversionResult
    from h5live._write.copy import copy_live
    from h5live._write.live_io import LiveHDF5IO
    from h5live._write.live_nwb import LiveNWBHDF5IO
    from h5live._write.nwb import to_nwb
    from h5live._write.options import ConversionOptions

#: Names imported when first used, and their modules: the iterator and the write path import
#: hdmf (and with it pandas and zarr), LiveNWBHDF5IO pynwb. A process that only follows or
#: reads (a writer, a beamline script, ``h5live follow``) starts without them, in a third of
#: the time.
_LAZY = {
    "LiveDataChunkIterator": "h5live._iterate.iterator",
    "ConversionOptions": "h5live._write.options",
    "ConversionResult": "h5live._write.conversion",
    "LiveHDF5IO": "h5live._write.live_io",
    "LiveNWBHDF5IO": "h5live._write.live_nwb",
    "copy_live": "h5live._write.copy",
    "to_nwb": "h5live._write.nwb",
}


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("h5live")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def __getattr__(name: str) -> Any:
    """Import a name of ``_LAZY`` from its module on first use (``__version__``: read it)."""
    module = _LAZY.get(name)
    if name == "__version__":
        value: Any = _installed_version()
    elif module is None:
        raise AttributeError(f"module 'h5live' has no attribute {name!r}")
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "__version__"})


__all__ = [
    "KNOWN_LAYOUTS",
    "ChunkSource",
    "ConversionOptions",
    "ConversionResult",
    "DataSource",
    "FollowPolicy",
    "FrameReader",
    "KeyFollower",
    "Layout",
    "LiveDataChunkIterator",
    "LiveHDF5IO",
    "LiveNWBHDF5IO",
    "RowKeyFollower",
    "SliceDict",
    "SourceSpec",
    "Stage",
    "StageChain",
    "StopReason",
    "__version__",
    "bin_frames",
    "cast_frames",
    "chunk_utils",
    "copy_live",
    "crop_frames",
    "errors",
    "open_source",
    "sum_frames",
    "to_nwb",
    "utils",
]
