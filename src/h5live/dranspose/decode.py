"""Worker-side decoding of the STINS frames h5live sends (and of other bslz4 streams).

h5live forwards bitshuffle-LZ4 chunks as they are stored in HDF5 (``compression="bslz4"``):
a 12-byte header (the uncompressed size, 8 bytes, and the block size in bytes, 4 bytes, both
big-endian) and then the compressed blocks. Dectris streams and ``bitshuffle.compress_lz4``
omit that header. :func:`decode_bslz4` accepts both. It uses the bitshuffle decoder of h5live's
direct chunk reads, which checks that every block lies inside the buffer before bitshuffle
reads it (bitshuffle itself reads out of bounds on a wrong block size).

Only :func:`parse_stins` needs dranspose; :func:`decode_bslz4` needs ``bitshuffle``.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from h5live._read.codecs import FILTER_BITSHUFFLE, Stage, Unsupported, make_stage

__all__ = ["decode_bslz4", "default_block_size", "parse_stins"]

_HEADER = struct.Struct(">QI")


def default_block_size(itemsize: int) -> int:
    """bitshuffle's block size in elements when it is given 0 (``bshuf_default_block_size``):
    8 KiB worth of elements, a multiple of 8, at least 128."""
    return max(8192 // itemsize // 8 * 8, 128)


@functools.lru_cache(maxsize=32)
def _stage(itemsize: int, block: int) -> Stage:
    """h5live's bitshuffle-LZ4 decoder (as for HDF5 filter 32008) for one element size."""
    try:
        return make_stage(0, FILTER_BITSHUFFLE, (0, 0, itemsize, block, 2), "bslz4", itemsize)
    except Unsupported as exc:
        raise ImportError(f"cannot decode bslz4: {exc.reason}. Fix: {exc.fix}.") from None


def _has_header(view: memoryview, nbytes: int, itemsize: int) -> bool:
    """Whether ``view`` starts with the 12-byte HDF5 filter header for ``nbytes`` of data.

    Without the header a buffer starts with the first block's compressed size (4 bytes, never
    0), so its first 8 bytes cannot read as a size below 4 GiB.
    """
    if len(view) < _HEADER.size:
        return False
    total, block_bytes = _HEADER.unpack_from(view, 0)
    return bool(total == nbytes and block_bytes > 0 and block_bytes % (8 * itemsize) == 0)


def decode_bslz4(
    data: Any,
    shape: Sequence[int],
    dtype: npt.DTypeLike,
    *,
    block_size: int = 0,
) -> npt.NDArray[Any]:
    """Decode one bitshuffle-LZ4 frame, with or without the 12-byte HDF5 header.

    Parameters
    ----------
    data
        The compressed bytes (``bytes``, a ``zmq.Frame``'s ``.buffer``, a memoryview...).
    shape, dtype
        The frame's shape and dtype (a STINS image header's ``shape`` and ``type``).
    block_size
        Elements per block for data without the header; 0: bitshuffle's default
        (:func:`default_block_size`). Ignored when the header is there (it says).

    Returns
    -------
    numpy.ndarray
        A new array of ``shape`` and ``dtype``.

    Raises
    ------
    ValueError
        The bytes do not decode to a frame of that shape and dtype.
    ImportError
        The ``bitshuffle`` package is not installed.

    Examples
    --------
    >>> import bitshuffle  # doctest: +SKIP
    >>> frame = np.arange(12, dtype="uint16").reshape(3, 4)  # doctest: +SKIP
    >>> decode_bslz4(bitshuffle.compress_lz4(frame), (3, 4), "uint16")  # doctest: +SKIP
    """
    dt = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    nbytes = math.prod(shape) * dt.itemsize
    view = memoryview(getattr(data, "buffer", data)).cast("B")
    itemsize = dt.itemsize
    block = block_size or default_block_size(itemsize)
    if block <= 0 or block % 8:
        raise ValueError(f"block_size must be a positive multiple of 8, got {block_size!r}.")
    stage = _stage(itemsize, block)
    if _has_header(view, nbytes, itemsize):
        chunk: Any = view
    else:
        chunk = _HEADER.pack(nbytes, block * itemsize) + view
    try:
        raw = stage.decode(chunk, nbytes)
    except (ValueError, RuntimeError) as exc:  # bitshuffle raises RuntimeError on bad LZ4
        raise ValueError(
            f"cannot decode {len(view)} bytes of bslz4 as a {dt} frame of shape {shape}: "
            f"{exc}. Fix: check the shape and type in the image header (and block_size for "
            "data without the 12-byte header)."
        ) from exc
    values = np.frombuffer(raw, dtype=np.uint8)
    if values.size != nbytes:
        raise ValueError(
            f"bslz4 data decoded to {values.size} bytes, but a {dt} frame of shape {shape} has "
            f"{nbytes}. Fix: check the shape and type in the image header."
        )
    return values.view(dt).reshape(shape)


def parse_stins(data: Any) -> Any:
    """Parse a STINS stream of an event into its packet, with images decoded.

    Like ``dranspose.middlewares.stream1.parse``, which decodes ``compression="none"`` only;
    this also decodes ``"bslz4"`` (with or without the header), so a worker handles both.

    Parameters
    ----------
    data : dranspose.event.StreamData
        ``event.streams[name]`` of a STINS stream.

    Returns
    -------
    Stream1Start, Stream1Data or Stream1End
        For an image, ``packet.data`` is the frame as a numpy array.

    Raises
    ------
    ValueError
        An image with a compression other than ``none`` and ``bslz4``, or undecodable bytes.
    """
    from dranspose.middlewares.stream1 import parse

    packet = parse(data)
    if getattr(packet, "htype", None) != "image" or hasattr(packet, "data"):
        return packet
    if packet.compression != "bslz4":
        raise ValueError(
            f"image {packet.frame} of a STINS stream has compression {packet.compression!r}; "
            "h5live decodes 'none' and 'bslz4'. Fix: decode it in the worker."
        )
    payload = data.frames[1]
    packet.data = decode_bslz4(payload, packet.shape, packet.type)
    return packet
