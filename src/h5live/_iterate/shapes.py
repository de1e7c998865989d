"""Chunk and buffer shapes of a live iterator, as pure functions of the data's shape.

Contract
--------
- Default chunks are whole frames, as many as fit in ``chunk_mb`` (at least one), the fast scan
  axis first (:func:`frame_chunk_shape`); at most :data:`LIVE_CHUNK_FRAMES` while the length is
  unknown. A ``chunk_mb`` given that is smaller than one frame gets hdmf's own chunk shape
  (:func:`hdmf_chunk_shape`, hdmf 6.2's ``_get_default_chunk_shape``).
- Default buffers are whole chunks along the first axis and everything else whole, within
  ``buffer_gb`` (:func:`chunk_buffer_shape`); with processing stages they are sized by the
  *source* frames they read.
- Option errors are hdmf's texts, as :class:`~h5live.errors.IteratorOptionError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from h5live.errors import IteratorOptionError

__all__ = [
    "LIVE_CHUNK_FRAMES",
    "chunk_buffer_shape",
    "frame_chunk_shape",
    "hdmf_chunk_shape",
    "rows_within",
]

#: At most this many frames in a default chunk while the length is unknown: 10 MB of small
#: frames (1.25 million 8-byte samples) would make chunks that take minutes to fill; 4096 fill
#: in 0.14 s at 30 kHz and in 4 s at 1 kHz (a latency bound releases them in parts meanwhile).
LIVE_CHUNK_FRAMES = 4096


def rows_within(rows: int, final_rows: int) -> int:
    """``rows`` cut to a scan of ``final_rows`` rows, at least one: HDF5 and hdmf refuse chunks
    longer than a dataset of fixed length, and chunks of no row (a scan that ended before its
    first frame gets chunks of one)."""
    return max(1, min(int(rows), int(final_rows)))


def hdmf_chunk_shape(
    maxshape: Sequence[int], itemsize: int, chunk_mb: float
) -> tuple[int, ...] | None:
    """The chunk shape hdmf's GenericDataChunkIterator picks for ``chunk_mb`` (hdmf 6.2's
    ``_get_default_chunk_shape``): the data's axis ratios, scaled to fit ``chunk_mb``.

    None for data with an empty axis (hdmf divides by the smallest axis).
    """
    smallest = min(maxshape, default=0)
    if smallest <= 0:
        return None
    chunk_bytes = chunk_mb * 1e6
    ratios = tuple(n // smallest for n in maxshape)
    while math.prod(ratios) * itemsize > chunk_bytes and math.prod(ratios) != 1:
        step = min(x for x in ratios if x != 1)
        ratios = tuple(x // step if x != 1 else x for x in ratios)
    k = math.floor((chunk_bytes / (math.prod(ratios) * itemsize)) ** (1 / len(maxshape)))
    return tuple(min(k * x, n) for x, n in zip(ratios, maxshape, strict=True))


def frame_chunk_shape(
    chunk_mb: float,
    *,
    scan_shape: Sequence[int],
    frame_shape: Sequence[int],
    itemsize: int,
    final_rows: int | None,
    hdmf_if_larger: bool,
    most_frames: int | None = None,
) -> tuple[int, ...]:
    """Whole frames, as many as fit in ``chunk_mb`` (at least one), fast scan axis first.

    Parameters
    ----------
    chunk_mb
        The chunk size wanted.
    scan_shape, frame_shape, itemsize
        The scan (its first axis as long as known, or nominal), a frame, and the bytes of one
        value (after any stages).
    final_rows
        The scan's final length along its first axis, or None while unknown (then at most
        :data:`LIVE_CHUNK_FRAMES` frames).
    hdmf_if_larger
        ``chunk_mb`` was given: when one frame alone is larger, whole frames cannot honour it;
        the chunk shape is then hdmf's own.
    most_frames
        At most this many frames (a buffer of source frames, with stages), or None.
    """
    if chunk_mb <= 0:
        raise IteratorOptionError(f"chunk_mb ({chunk_mb}) must be greater than zero!")
    rank = len(scan_shape)
    frame_bytes = math.prod(frame_shape) * itemsize
    if hdmf_if_larger and most_frames is None and frame_bytes > chunk_mb * 1e6:
        hdmf = hdmf_chunk_shape((*scan_shape, *frame_shape), itemsize, chunk_mb)
        if hdmf is not None:
            return hdmf
    budget = max(1, int(chunk_mb * 1e6 // max(frame_bytes, 1)))
    if final_rows is None:  # live: a chunk should fill within seconds
        budget = min(budget, LIVE_CHUNK_FRAMES)
    if most_frames is not None:
        budget = min(budget, max(1, most_frames))
    chunk = [1] * rank
    for axis in reversed(range(rank)):
        take = min(budget, scan_shape[axis]) if axis else budget
        chunk[axis] = max(1, take)
        if take < scan_shape[axis]:
            break
        budget //= max(scan_shape[axis], 1)
    if rank and final_rows is not None:
        chunk[0] = rows_within(chunk[0], final_rows)
    return (*chunk, *frame_shape)


def chunk_buffer_shape(
    chunk: Sequence[int],
    buffer_gb: float,
    *,
    maxshape: Sequence[int],
    itemsize: int,
    final: bool,
    row_bytes_read: int = 0,
) -> tuple[int, ...]:
    """Whole chunks along the first axis, everything else whole, within ``buffer_gb``.

    ``maxshape``: the data's (nominal while the length is unknown); ``final``: its first axis
    is the final length (a buffer is then at most that long); ``row_bytes_read``: the bytes
    read per row when that is more than written (source frames before the stages).
    """
    if buffer_gb <= 0:
        raise IteratorOptionError(f"buffer_gb ({buffer_gb}) must be greater than zero!")
    row = max(math.prod(maxshape[1:]) * itemsize, row_bytes_read)
    rows = max(1, int(buffer_gb * 1e9 // max(row, 1)))
    rows = max(int(chunk[0]), rows // int(chunk[0]) * int(chunk[0]))
    if final:  # whole chunks still (a chunk of a scan of no frames is one row)
        rows = max(int(chunk[0]), min(rows, int(maxshape[0])))
    return (rows, *(int(n) for n in maxshape[1:]))
