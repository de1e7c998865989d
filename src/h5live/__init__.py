"""h5live: follow HDF5 files while they are written (SWMR) and stream them, chunk-aligned.

Public API; everything in underscore modules is private.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from h5live import chunk_utils, errors, utils
from h5live._follow.follower import FollowPolicy, KeyFollower, StopReason
from h5live._follow.rows import RowKeyFollower
from h5live._iterate.iterator import LiveDataChunkIterator
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
from h5live._write.conversion import ConversionResult
from h5live._write.copy import copy_live
from h5live._write.live_io import LiveHDF5IO
from h5live._write.nwb import to_nwb
from h5live._write.options import ConversionOptions

if TYPE_CHECKING:
    from h5live._write.live_nwb import LiveNWBHDF5IO


def __getattr__(name: str) -> Any:
    """``LiveNWBHDF5IO`` is imported when first used: it imports pynwb."""
    if name == "LiveNWBHDF5IO":
        from h5live._write.live_nwb import LiveNWBHDF5IO

        return LiveNWBHDF5IO
    raise AttributeError(f"module 'h5live' has no attribute {name!r}")


try:
    __version__ = version("h5live")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

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
