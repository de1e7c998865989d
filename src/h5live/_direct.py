"""Whole chunks read with ``read_direct_chunk`` and decoded in Python, skipping HDF5's filters.

Contract:

- :func:`direct_chunk_reader` inspects a dataset's filter pipeline once and returns a
  :class:`DirectChunkReader`, or ``None`` with one DEBUG line saying why: not an h5py dataset,
  not chunked, a dtype h5py converts when reading, a filter with no Python decoder, its Python
  package missing, or a codec that :data:`DIRECT_BY_DEFAULT` says HDF5 decodes faster. With
  ``require=True`` it returns a reader whenever decoding is possible at all and raises
  :class:`~h5live.errors.DirectChunkError` instead of returning ``None``.
- :meth:`DirectChunkReader.read_into` decodes one whole chunk into a caller's C-contiguous
  array of ``chunk_shape`` and ``dtype``; its bytes equal h5py's read of that chunk bit for bit
  (an edge chunk is stored whole: the caller keeps the part inside the dataset). It returns
  ``False`` for a chunk that is not allocated; the caller then reads through h5py, which gives
  the fill value.
- Filters are undone in reverse pipeline order; a filter whose bit is set in the chunk's
  ``filter_mask`` was skipped when that chunk was written and is skipped here too.
- Decoders check sizes before writing into the destination, so a corrupt chunk raises
  :class:`~h5live.errors.DirectChunkError` instead of writing out of bounds. Fletcher32
  checksums are verified, as HDF5 does.
- Optional packages (``blosc2`` or ``blosc``, ``bitshuffle``, ``lz4``, ``zstandard``) are
  imported when a dataset needs them. A reader may be used from several threads at once, each
  call with its own ``out``.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import struct
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType, ModuleType
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from h5live._keys import dataset_label
from h5live.errors import DirectChunkError

__all__ = [
    "DIRECT_BY_DEFAULT",
    "DirectChunkReader",
    "direct_chunk_reader",
    "fletcher32",
]

logger = logging.getLogger(__name__)

# HDF5 filter ids: built in, and registered plugin filters (as hdf5plugin writes them).
FILTER_DEFLATE = 1
FILTER_SHUFFLE = 2
FILTER_FLETCHER32 = 3
FILTER_BLOSC = 32001
FILTER_LZ4 = 32004
FILTER_BITSHUFFLE = 32008
FILTER_ZSTD = 32015
FILTER_BLOSC2 = 32026

# Names of filters, those we cannot decode too, for messages.
_FILTER_NAMES: Mapping[int, str] = MappingProxyType(
    {
        FILTER_DEFLATE: "deflate",
        FILTER_SHUFFLE: "shuffle",
        FILTER_FLETCHER32: "fletcher32",
        4: "szip",
        5: "nbit",
        6: "scaleoffset",
        307: "bzip2",
        32000: "lzf",
        FILTER_BLOSC: "blosc",
        FILTER_LZ4: "lz4",
        FILTER_BITSHUFFLE: "bitshuffle",
        FILTER_ZSTD: "zstd",
        FILTER_BLOSC2: "blosc2",
    }
)
_DECODABLE = "deflate, shuffle, fletcher32, blosc, blosc2, bitshuffle, lz4, zstd"

# Which codecs are read directly by default: True where read_direct_chunk + Python decoding
# measured faster than h5py's read of the same chunk. A pipeline is direct by default when all
# its filters are. Per frame, one frame per chunk, uint16 frames of poisson(20) noise, cold chunk
# cache (rdcc_nbytes=0), best of 7 passes per fresh process on the 2-core dev VM (python 3.11,
# h5py 3.16, HDF5 2.0, hdf5plugin 7.1); script /tmp/bench_direct.py, not committed.
# h5py dataset[i:i+1] vs DirectChunkReader.read, microseconds per frame:
#   codec                 256x256: h5py direct      32x32: h5py direct
#   TABLE
DIRECT_BY_DEFAULT: Mapping[str, bool] = MappingProxyType(
    {
        "none": True,
        "blosc": True,
        "blosc2": True,
        "bitshuffle": False,
        "bitshuffle-lz4": False,
        "bitshuffle-zstd": False,
        "lz4": False,
        "zstd": True,
        "deflate": False,
        "shuffle": False,
        "fletcher32": False,
    }
)

# Unfiltered chunks at least this big are read by HDF5 straight into ``out``; smaller ones are
# faster read as bytes and copied (h5py's ``out=`` path costs ~1 us more per call).
_READ_INTO_MIN_NBYTES = 1 << 15

_Buffer = Any  # 1-D bytes: bytes, bytearray, a "B" memoryview or a uint8 array; len() = size
_Bytes = npt.NDArray[np.uint8]


def _import_optional(name: str) -> ModuleType | None:
    """Import an optional decoding package, or None if it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _copy_exact(data: _Buffer, dest: _Bytes, what: str) -> None:
    """Copy decoded bytes into ``dest``, which they must fill exactly."""
    src = np.frombuffer(data, dtype=np.uint8)
    if src.size != dest.size:
        raise ValueError(f"{what} gave {src.size} bytes, expected {dest.size}")
    dest[...] = src


class _Stage:
    """One filter of the pipeline, undone in Python.

    ``decode`` returns the bytes the filter was given when writing (in the middle of a
    pipeline their size is not known in advance); ``decode_into`` undoes the first filter of
    the pipeline straight into the destination, a whole chunk.
    """

    name = "?"

    def __init__(self, index: int) -> None:
        self.index = index  # position in the pipeline: bit ``index`` of filter_mask skips it

    def decode(self, src: _Buffer, chunk_nbytes: int) -> _Buffer:
        raise NotImplementedError

    def decode_into(self, src: _Buffer, dest: _Bytes) -> None:
        _copy_exact(self.decode(src, dest.size), dest, self.name)


class _DeflateStage(_Stage):
    name = "deflate"

    def decode(self, src: _Buffer, chunk_nbytes: int) -> _Buffer:
        return zlib.decompress(src, bufsize=max(chunk_nbytes, 1))


class _ShuffleStage(_Stage):
    """HDF5's byte shuffle: byte ``j`` of all elements stored together; a tail kept as is."""

    name = "shuffle"

    def __init__(self, index: int, elem_size: int) -> None:
        super().__init__(index)
        self.elem_size = elem_size

    def decode(self, src: _Buffer, chunk_nbytes: int) -> _Buffer:
        dest = np.empty(len(src), dtype=np.uint8)
        self.decode_into(src, dest)
        return dest

    def decode_into(self, src: _Buffer, dest: _Bytes) -> None:
        data = np.frombuffer(src, dtype=np.uint8)
        if data.size != dest.size:
            raise ValueError(f"shuffled data has {data.size} bytes, expected {dest.size}")
        size = self.elem_size
        count = data.size // size
        if size <= 1 or count <= 1:  # HDF5 leaves these as they are
            dest[...] = data
            return
        body = count * size
        elements = dest[:body].reshape(count, size)
        for j in range(size):  # one strided copy per byte plane: ~6x faster than ``.T``
            elements[:, j] = data[j * count : (j + 1) * count]
        dest[body:] = data[body:]


def _fold_fletcher(total: int, nonzero: bool) -> int:
    """A sum reduced as HDF5's end-around carries do: 0 only for all-zero data, else 1..65535."""
    return ((total - 1) % 0xFFFF) + 1 if nonzero else 0


# Words per block of the checksum: a block's weighted sum stays below 2**53, exact in float64.
_FLETCHER_BLOCK = 1 << 18
_FLETCHER_WEIGHTS = np.arange(_FLETCHER_BLOCK, 0, -1, dtype=np.float64)


def fletcher32(data: _Buffer) -> int:
    """HDF5's Fletcher-32 checksum (``H5_checksum_fletcher32``) of a byte buffer.

    Parameters
    ----------
    data : bytes-like
        The bytes checked (a chunk without its 4-byte checksum).

    Returns
    -------
    int
        ``sum2 << 16 | sum1`` over big-endian 16-bit words ``w`` (an odd last byte padded with
        a zero byte): ``sum1`` is the sum of ``w[i]``, ``sum2`` the sum of ``(n - i) * w[i]``,
        each reduced modulo 65535 into 1..65535 (0 only for all-zero data) as HDF5's
        end-around carries do.

    Notes
    -----
    Sums are exact: float64 dot products over blocks small enough to stay below 2**53.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size % 2:
        raw = np.concatenate([raw, np.zeros(1, dtype=np.uint8)])
    words = raw.view(">u2")
    count = words.size
    sum1 = sum2 = 0
    for start in range(0, count, _FLETCHER_BLOCK):
        block = words[start : start + _FLETCHER_BLOCK].astype(np.uint16).astype(np.float64)
        size = block.size
        total = int(block.sum())
        weighted = int(block @ _FLETCHER_WEIGHTS[_FLETCHER_BLOCK - size :])
        sum2 += (count - start - size) * total + weighted
        sum1 += total
    nonzero = sum1 > 0
    return (_fold_fletcher(sum2, nonzero) << 16) | _fold_fletcher(sum1, nonzero)


class _Fletcher32Stage(_Stage):
    """Strip the 4-byte checksum HDF5 appends, after verifying it as HDF5 does."""

    name = "fletcher32"

    def decode(self, src: _Buffer, chunk_nbytes: int) -> _Buffer:
        view = memoryview(src)
        if len(view) < 4:
            raise ValueError(f"chunk of {len(view)} bytes is too short for a Fletcher32 checksum")
        body = view[:-4]
        (stored,) = struct.unpack_from("<I", view, len(view) - 4)
        computed = fletcher32(body)
        # HDF5 before 1.6.3 stored the checksum with the bytes of each half swapped.
        swapped = ((computed & 0x00FF00FF) << 8) | ((computed >> 8) & 0x00FF00FF)
        if stored not in (computed, swapped):
            raise ValueError(
                f"Fletcher32 checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            )
        return body


class _BloscStage(_Stage):
    """Blosc (filter 32001), decoded by c-blosc2 (which reads the Blosc 1 format) or c-blosc."""

    name = "blosc"
    _HEADER = struct.Struct("<III")  # nbytes, blocksize, cbytes at byte 4

    def __init__(self, index: int, into: Callable[[_Buffer, _Bytes], object]) -> None:
        super().__init__(index)
        self._into = into  # decompress a checked chunk into a destination of its size

    def _nbytes(self, src: _Buffer) -> int:
        size = len(src)
        if size < 16:
            raise ValueError(f"Blosc chunk of {size} bytes is shorter than a Blosc header")
        nbytes, _, cbytes = self._HEADER.unpack_from(src, 4)
        if cbytes > size:
            raise ValueError(f"Blosc header says {cbytes} compressed bytes, chunk has {size}")
        return int(nbytes)

    def decode(self, src: _Buffer, chunk_nbytes: int) -> _Buffer:
        dest = np.empty(self._nbytes(src), dtype=np.uint8)
        self._into(src, dest)
        return dest

    def decode_into(self, src: _Buffer, dest: _Bytes) -> None:
        nbytes = self._nbytes(src)
        if nbytes != dest.size:  # checked here: neither package bounds its writes by dest
            raise ValueError(f"Blosc header says {nbytes} bytes, expected {dest.size}")
        self._into(src, dest)


class _Blosc2Stage(_Stage):
    """Blosc2 (filter 32026): hdf5plugin stores each chunk as a one-chunk Blosc2 frame.

    Fast path: when the frame's first chunk decodes to the whole HDF5 chunk in C order (a
    plain super-chunk, or a B2ND array made of one block), it is decompressed straight into
    the destination; parsing the frame with ``blosc2.schunk_from_cframe`` costs ~30 us, more
    than decoding a small chunk. Anything else (B2ND blocks smaller than the chunk, stored one
    after another and maybe padded; a special-valued chunk the frame does not store) goes
    through ``blosc2.ndarray_from_cframe``, as the HDF5 filter goes through
    ``b2nd_get_slice_cbuffer``.
    """

    name = "blosc2"
    _MAGIC = b"b2frame\x00"
    _CHUNK = struct.Struct("<iii")  # nbytes, blocksize, cbytes at byte 4 of a chunk

    def __init__(self, index: int, blosc2: ModuleType) -> None:
        super().__init__(index)
        self._blosc2 = blosc2

    def _first_chunk(self, view: memoryview, expected: int) -> memoryview | None:
        """The frame's first chunk if it decodes to ``expected`` bytes in C order, else None."""
        if len(view) < 24 or view[2:10] != self._MAGIC or view[10] != 0xD2:
            raise ValueError("chunk is not a Blosc2 frame (no 'b2frame' magic)")
        (header_size,) = struct.unpack_from(">i", view, 11)
        # A frame whose data chunk is special-valued (all zeros, say) stores no data chunk:
        # its index chunk (8 bytes per chunk) comes first. An 8-byte chunk could not tell them
        # apart; leave it to the slow path.
        if expected <= 8 or header_size <= 0 or header_size + 16 > len(view):
            return None
        nbytes, blocksize, cbytes = self._CHUNK.unpack_from(view, header_size + 4)
        if nbytes != expected or cbytes < 16 or header_size + cbytes > len(view):
            return None
        if blocksize != nbytes:
            header = view[:header_size].tobytes()
            if b"b2nd" in header or b"caterva" in header:
                return None
        return view[header_size : header_size + cbytes]

    def _decode_frame(self, view: memoryview) -> _Buffer:
        frame = view.tobytes()
        schunk = self._blosc2.schunk_from_cframe(frame, copy=False)
        if "b2nd" in schunk.meta or "caterva" in schunk.meta:
            array = self._blosc2.ndarray_from_cframe(frame, copy=False)
            return np.ascontiguousarray(array[()]).reshape(-1).view(np.uint8)
        return schunk.decompress_chunk(0)

    def decode(self, src: _Buffer, chunk_nbytes: int) -> _Buffer:
        view = memoryview(src)
        chunk = self._first_chunk(view, chunk_nbytes)
        if chunk is not None:
            return self._blosc2.decompress(chunk)
        return self._decode_frame(view)

    def decode_into(self, src: _Buffer, dest: _Bytes) -> None:
        view = memoryview(src)
        chunk = self._first_chunk(view, dest.size)
        if chunk is not None:  # size checked: blosc2 does not bound its writes by dst
            self._blosc2.decompress(chunk, dst=dest)
        else:
            _copy_exact(self._decode_frame(view), dest, self.name)


# bitshuffle's compression codes (cd_values[4]) and the names of what they add
_BITSHUFFLE_CODES: Mapping[int, str] = MappingProxyType({0: "", 2: "lz4", 3: "zstd"})


class _BitshuffleStage(_Stage):
    """Bitshuffle (filter 32008), optionally with LZ4 or Zstd, as bitshuffle's HDF5 filter.

    Compressed chunks start with the total size (8 bytes) and the block size in bytes
    (4 bytes), both big-endian; uncompressed ones are the bit-shuffled bytes alone.
    """

    _HEADER = struct.Struct(">QI")

    def __init__(
        self, index: int, bitshuffle: ModuleType, elem_size: int, block_size: int, compression: int
    ) -> None:
        super().__init__(index)
        self._bitshuffle = bitshuffle
        self.elem_size = elem_size
        self.block_size = block_size  # elements; 0 = bitshuffle's default (uncompressed only)
        self.compression = _BITSHUFFLE_CODES[compression]
        self.name = f"bitshuffle-{self.compression}" if self.compression else "bitshuffle"
        self._elem_dtype = (
            np.dtype(f"u{elem_size}") if elem_size in (1, 2, 4, 8) else np.dtype(f"V{elem_size}")
        )
        if self.compression == "lz4":
            self._decompress: Callable[..., npt.NDArray[Any]] = bitshuffle.decompress_lz4
        elif self.compression == "zstd":
            self._decompress = bitshuffle.decompress_zstd

    def decode(self, src: _Buffer, chunk_nbytes: int) -> _Buffer:
        size = self.elem_size
        if not self.compression:
            data = np.frombuffer(src, dtype=np.uint8)
            if data.size % size:
                raise ValueError(
                    f"bit-shuffled data has {data.size} bytes, not whole {size}-byte elements"
                )
            items = self._bitshuffle.bitunshuffle(data.view(self._elem_dtype), self.block_size)
            return items.view(np.uint8)
        if len(src) < self._HEADER.size:
            raise ValueError(f"bitshuffle chunk of {len(src)} bytes is shorter than its header")
        total, block_bytes = self._HEADER.unpack_from(src, 0)
        if total % size or block_bytes % size:
            raise ValueError(
                f"bitshuffle header says {total} bytes in blocks of {block_bytes} bytes, not "
                f"whole {size}-byte elements"
            )
        body = np.frombuffer(src, dtype=np.uint8, offset=self._HEADER.size)
        items = self._decompress(body, (total // size,), self._elem_dtype, block_bytes // size)
        return items.view(np.uint8)


class _Lz4Stage(_Stage):
    """HDF5's LZ4 filter (32004).

    Total size (8 bytes) and block size (4 bytes), big-endian, then per block its compressed
    size (4 bytes, big-endian) and the LZ4 block, stored raw when that size equals the block's.
    """

    name = "lz4"
    _HEADER = struct.Struct(">qI")
    _BLOCK = struct.Struct(">I")

    def __init__(self, index: int, lz4_block: ModuleType) -> None:
        super().__init__(index)
        self._decompress = lz4_block.decompress

    def _header(self, view: memoryview) -> tuple[int, int]:
        if len(view) < self._HEADER.size:
            raise ValueError(f"LZ4 chunk of {len(view)} bytes is shorter than its header")
        total, block = self._HEADER.unpack_from(view, 0)
        if total < 0 or (block == 0 and total > 0):
            raise ValueError(f"LZ4 header says {total} bytes in blocks of {block} bytes")
        return int(total), int(min(block, total))

    def decode(self, src: _Buffer, chunk_nbytes: int) -> _Buffer:
        total, _ = self._header(memoryview(src))
        dest = np.empty(total, dtype=np.uint8)
        self.decode_into(src, dest)
        return dest

    def decode_into(self, src: _Buffer, dest: _Bytes) -> None:
        view = memoryview(src)
        total, block = self._header(view)
        if total != dest.size:
            raise ValueError(f"LZ4 header says {total} bytes, expected {dest.size}")
        out = dest.data
        pos = self._HEADER.size
        if total <= block:  # one block, the usual case
            (csize,) = self._BLOCK.unpack_from(view, pos)
            self._block_into(view[pos + 4 : pos + 4 + csize], csize, out)
            return
        done = 0
        while done < total:
            size = min(block, total - done)
            (csize,) = self._BLOCK.unpack_from(view, pos)
            pos += 4
            self._block_into(view[pos : pos + csize], csize, out[done : done + size])
            pos += csize
            done += size

    def _block_into(self, part: memoryview, csize: int, target: memoryview) -> None:
        size = len(target)
        if len(part) != csize:
            raise ValueError(f"LZ4 block of {csize} bytes is cut short at {len(part)} bytes")
        if csize == size:  # stored raw
            target[:] = part
            return
        data = self._decompress(part, uncompressed_size=size)
        if len(data) != size:
            raise ValueError(f"LZ4 block gave {len(data)} bytes, expected {size}")
        target[:] = data


class _ZstdStage(_Stage):
    """HDF5's Zstd filter (32015): one Zstandard frame."""

    name = "zstd"

    def __init__(self, index: int, zstandard: ModuleType) -> None:
        super().__init__(index)
        self._zstandard = zstandard
        self._local = threading.local()  # a ZstdDecompressor must not be shared by threads

    def _decompressor(self) -> Any:
        decompressor = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = self._local.decompressor = self._zstandard.ZstdDecompressor()
        return decompressor

    def decode(self, src: _Buffer, chunk_nbytes: int) -> _Buffer:
        # A frame without its content size needs a bound on its output: the chunk's size.
        return self._decompressor().decompress(src, max_output_size=max(chunk_nbytes, 1))

    def decode_into(self, src: _Buffer, dest: _Bytes) -> None:
        size = self._zstandard.frame_content_size(src)  # -1: not in the frame header
        if size < 0:
            super().decode_into(src, dest)
            return
        if size != dest.size:
            raise ValueError(f"Zstd frame holds {size} bytes, expected {dest.size}")
        # Straight into dest: saves the copy of a bytes result (~1.5 us on 2 KiB chunks).
        reader = self._decompressor().stream_reader(src, read_across_frames=False)
        out = dest.data
        filled = 0
        while filled < size:
            count = reader.readinto(out[filled:])
            if count <= 0:
                raise ValueError(f"Zstd frame ended after {filled} of {size} bytes")
            filled += count


class _Unsupported(Exception):  # an internal signal, never leaves this module
    """Why a dataset's chunks are not read directly (message), and the fix."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


_FIX_FALLBACK = "or pass use_direct_chunk=True (not 'require') to fall back to h5py reads"


def _need(package: str, pip_name: str, filter_label: str) -> ModuleType:
    module = _import_optional(package)
    if module is None:
        raise _Unsupported(
            f"{filter_label} needs the Python package {pip_name!r}, which is not installed",
            f"`pip install {pip_name}`, {_FIX_FALLBACK}",
        )
    return module


def _filter_label(code: int, name: bytes | str) -> str:
    known = _FILTER_NAMES.get(code)
    if known is not None:
        return f"filter {code} ({known})"
    text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return f"filter {code} ({text.split(';')[0].strip() or 'unnamed'})"


def _blosc_stage(index: int, label: str) -> _Stage:
    # c-blosc2 reads Blosc 1 chunks and writes into a numpy array without asking for its
    # address (python-blosc's decompress_ptr needs ``ndarray.ctypes.data``: ~1.5 us a call).
    blosc2 = _import_optional("blosc2")
    if blosc2 is not None:
        unpack = blosc2.decompress
        return _BloscStage(index, lambda src, dest: unpack(src, dst=dest))
    blosc = _import_optional("blosc")
    if blosc is not None:
        ptr = blosc.decompress_ptr
        return _BloscStage(index, lambda src, dest: ptr(src, dest.ctypes.data))
    raise _Unsupported(
        f"{label} needs the Python package 'blosc2' (or 'blosc'), neither is installed",
        f"`pip install blosc2`, {_FIX_FALLBACK}",
    )


def _bitshuffle_stage(index: int, cd_values: Sequence[int], label: str, itemsize: int) -> _Stage:
    # cd_values: major, minor, element size, block size, compression[, level]
    compression = int(cd_values[4]) if len(cd_values) > 4 else 0
    if compression not in _BITSHUFFLE_CODES:
        raise _Unsupported(
            f"{label} uses compression code {compression!r}, which h5live cannot decode "
            "(it decodes 0 = none, 2 = LZ4, 3 = Zstd)",
            f"read it through h5py, {_FIX_FALLBACK}",
        )
    elem_size = int(cd_values[2]) if len(cd_values) > 2 else itemsize
    block_size = int(cd_values[3]) if len(cd_values) > 3 else 0
    if elem_size <= 0:
        raise _Unsupported(
            f"{label} has element size {elem_size!r}", f"read it through h5py, {_FIX_FALLBACK}"
        )
    bitshuffle = _need("bitshuffle", "bitshuffle", label)
    return _BitshuffleStage(index, bitshuffle, elem_size, block_size, compression)


def _make_stage(
    index: int, code: int, cd_values: Sequence[int], label: str, itemsize: int
) -> _Stage:
    """The Python decoder of one filter, or raise _Unsupported."""
    if code == FILTER_DEFLATE:
        return _DeflateStage(index)
    if code == FILTER_SHUFFLE:
        return _ShuffleStage(index, int(cd_values[0]) if cd_values else itemsize)
    if code == FILTER_FLETCHER32:
        return _Fletcher32Stage(index)
    if code == FILTER_BLOSC:
        return _blosc_stage(index, label)
    if code == FILTER_BLOSC2:
        return _Blosc2Stage(index, _need("blosc2", "blosc2", label))
    if code == FILTER_BITSHUFFLE:
        return _bitshuffle_stage(index, cd_values, label, itemsize)
    if code == FILTER_LZ4:
        return _Lz4Stage(index, _need("lz4.block", "lz4", label))
    if code == FILTER_ZSTD:
        return _ZstdStage(index, _need("zstandard", "zstandard", label))
    raise _Unsupported(
        f"{label} has no Python decoder in h5live (it decodes {_DECODABLE})",
        f"read it through h5py, {_FIX_FALLBACK}",
    )


def _plain_dtype(dataset: Any, dtype: np.dtype[Any]) -> bool:
    """Whether h5py reads the stored bytes unconverted (its memory type equals the file's)."""
    if dtype.hasobject or dtype.kind not in "biufcSV":
        return False
    try:
        return bool(dataset.id.get_type() == h5py.h5t.py_create(dtype))
    except (TypeError, ValueError, AttributeError, RuntimeError):
        return False


class DirectChunkReader:
    """Reads whole chunks of one dataset with ``read_direct_chunk`` and decodes them in Python.

    Made by :func:`direct_chunk_reader`, which checks that every filter can be decoded.

    Attributes
    ----------
    chunk_shape : tuple of int
        Shape of one chunk (``dataset.chunks``).
    dtype : numpy.dtype
        Element type; decoded bytes are exactly those h5py returns for this dtype.
    codec : str
        The filter pipeline in pipeline order, e.g. ``"none"``, ``"blosc"``,
        ``"bitshuffle-lz4"`` or ``"shuffle+deflate+fletcher32"``.
    nbytes : int
        Bytes in one decoded chunk.
    """

    def __init__(
        self,
        dataset: Any,
        chunk_shape: tuple[int, ...],
        dtype: np.dtype[Any],
        stages: Sequence[_Stage],
    ) -> None:
        self.dataset = dataset
        self.filename, self.name = dataset_label(dataset)
        self.chunk_shape = chunk_shape
        self.dtype = dtype
        self.nbytes = math.prod(chunk_shape) * dtype.itemsize
        self.codec = "+".join(stage.name for stage in stages) or "none"
        self._dsid = dataset.id
        self._stages = tuple(stages)
        self._decode_order = tuple(reversed(self._stages))  # all of them: filter_mask == 0
        self._raw_into = not stages and self.nbytes >= _READ_INTO_MIN_NBYTES

    def __repr__(self) -> str:
        return (
            f"<DirectChunkReader {os.path.basename(self.filename)!r} {self.name!r} "
            f"codec={self.codec!r} chunk_shape={self.chunk_shape} dtype={self.dtype}>"
        )

    def read(self, offset: Sequence[int]) -> npt.NDArray[Any] | None:
        """The chunk whose first element is at ``offset``, as a new array, or None.

        Parameters
        ----------
        offset : sequence of int
            Index of the chunk's first element (a multiple of ``chunk_shape``).

        Returns
        -------
        numpy.ndarray or None
            The whole chunk (``chunk_shape``, ``dtype``); None if it is not allocated.

        Raises
        ------
        DirectChunkError
            As :meth:`read_into`.
        """
        out = np.empty(self.chunk_shape, dtype=self.dtype)
        return out if self.read_into(offset, out) else None

    def read_into(self, offset: Sequence[int], out: npt.NDArray[Any]) -> bool:
        """Decode the chunk whose first element is at ``offset`` into ``out``.

        Parameters
        ----------
        offset : sequence of int
            Index of the chunk's first element (a multiple of ``chunk_shape``).
        out : numpy.ndarray
            C-contiguous and writeable, of shape ``chunk_shape`` and dtype ``dtype``.

        Returns
        -------
        bool
            True if ``out`` now holds the chunk, bit for bit as h5py reads it (an edge chunk
            whole: the part outside the dataset is whatever the writer stored); False if the
            chunk is not allocated and ``out`` is untouched: read it through h5py, which gives
            the fill value.

        Raises
        ------
        DirectChunkError
            ``out`` has the wrong shape, dtype or layout, the offset is not a chunk's first
            element, or the chunk's bytes do not decode to a whole chunk.
        """
        if (
            out.shape != self.chunk_shape
            or out.dtype != self.dtype
            or not out.flags.c_contiguous
            or not out.flags.writeable
        ):
            raise DirectChunkError(
                f"read_into got an array of shape {out.shape}, dtype {out.dtype} "
                f"(C-contiguous={out.flags.c_contiguous}, writeable={out.flags.writeable}) for "
                f"a chunk of dataset {self.name!r} in {self.filename!r}. Fix: pass a writeable "
                f"C-contiguous array of shape {self.chunk_shape} and dtype {self.dtype}."
            )
        if type(offset) is not tuple:
            offset = tuple(offset)
        dest: _Bytes = out.reshape(-1).view(np.uint8)
        try:
            if self._raw_into:  # unfiltered and big: HDF5 writes straight into ``out``
                mask, data = self._dsid.read_direct_chunk(offset, out=dest)
            else:
                mask, data = self._dsid.read_direct_chunk(offset)
        except (RuntimeError, OSError, ValueError) as exc:
            if self._unallocated(offset):
                return False
            raise self._read_failed(offset, exc) from exc
        if self._raw_into:
            if len(data) != dest.size:
                raise self._decode_failed(
                    offset, "none", ValueError(f"{len(data)} bytes stored, not {dest.size}")
                )
            return True
        stages = self._decode_order
        if mask:
            stages = tuple(stage for stage in stages if not mask >> stage.index & 1)
        name = "none"
        try:
            if not stages:
                _copy_exact(data, dest, "the stored chunk")
                return True
            for stage in stages[:-1]:
                name = stage.name
                data = stage.decode(data, dest.size)
            name = stages[-1].name
            stages[-1].decode_into(data, dest)
        except Exception as exc:  # codecs raise their own types: zlib.error, ZstdError, ...
            raise self._decode_failed(offset, name, exc) from exc
        return True

    def _unallocated(self, offset: tuple[int, ...]) -> bool:
        try:
            info = self._dsid.get_chunk_info_by_coord(offset)
        except (RuntimeError, OSError, ValueError, TypeError):
            return False
        return info.byte_offset is None

    def _read_failed(self, offset: tuple[int, ...], exc: BaseException) -> DirectChunkError:
        return DirectChunkError(
            f"read_direct_chunk({offset}) failed on dataset {self.name!r} in "
            f"{self.filename!r}: {exc}. Fix: pass the first element of a chunk (a multiple of "
            f"chunks={self.chunk_shape}) inside the dataset, with its file open."
        )

    def _decode_failed(
        self, offset: tuple[int, ...], step: str, exc: BaseException
    ) -> DirectChunkError:
        return DirectChunkError(
            f"cannot decode the chunk at {offset} of dataset {self.name!r} in "
            f"{self.filename!r} (filters {self.codec}, failed at {step}): {exc}. Fix: read it "
            "through h5py (use_direct_chunk=False); if h5py reads it, please report an h5live "
            "bug with the file, otherwise the chunk is corrupt."
        )


def direct_chunk_reader(dataset: Any, *, require: bool = False) -> DirectChunkReader | None:
    """A reader of ``dataset``'s whole chunks, decoded in Python, or None.

    Parameters
    ----------
    dataset : h5py.Dataset or array-like
        The dataset. Anything without ``.id.read_direct_chunk`` (a numpy array) has no chunks
        to read directly.
    require : bool
        False: return None, with one DEBUG log line saying why, unless every filter can be
        decoded in Python and :data:`DIRECT_BY_DEFAULT` says that is faster than HDF5.
        True: return a reader whenever decoding is possible, even if slower; raise instead
        of returning None.

    Returns
    -------
    DirectChunkReader or None

    Raises
    ------
    DirectChunkError
        With ``require=True``, when chunks cannot be decoded in Python: not an h5py dataset,
        not chunked, a dtype h5py converts when reading, a filter with no Python decoder, or
        its package missing. The message names the file, dataset, filter and the fix.

    Examples
    --------
    >>> import numpy as np
    >>> direct_chunk_reader(np.zeros((2, 3))) is None
    True
    """
    filename, name = dataset_label(dataset)
    try:
        reader = _build_reader(dataset, require)
    except _Unsupported as exc:
        if require:
            raise DirectChunkError(
                f"cannot read chunks of dataset {name!r} in {filename!r} directly: "
                f"{exc.reason}. Fix: {exc.fix}."
            ) from None
        logger.debug("direct chunk reads off for %r in %r: %s", name, filename, exc.reason)
        return None
    logger.debug("direct chunk reads on for %r in %r: %s", name, filename, reader.codec)
    return reader


def _build_reader(dataset: Any, require: bool) -> DirectChunkReader:
    dsid: Any = getattr(dataset, "id", None)
    if not callable(getattr(dsid, "read_direct_chunk", None)):
        raise _Unsupported(
            f"{type(dataset).__name__} is not an h5py dataset (no .id.read_direct_chunk)",
            f"pass an h5py.Dataset, {_FIX_FALLBACK}",
        )
    chunks = getattr(dataset, "chunks", None)
    if not chunks:
        raise _Unsupported(
            "it is not chunked (contiguous or compact storage)",
            f"have the writer chunk it, {_FIX_FALLBACK}",
        )
    dtype = np.dtype(dataset.dtype)
    if not _plain_dtype(dataset, dtype):
        raise _Unsupported(
            f"h5py converts its stored type to dtype {dtype} when reading, so the stored bytes "
            "are not the values",
            f"read it through h5py, {_FIX_FALLBACK}",
        )
    dcpl = dsid.get_create_plist()
    stages: list[_Stage] = []
    for index in range(dcpl.get_nfilters()):
        code, _flags, cd_values, filter_name = dcpl.get_filter(index)
        label = _filter_label(int(code), filter_name)
        stages.append(_make_stage(index, int(code), tuple(cd_values), label, dtype.itemsize))
    reader = DirectChunkReader(dataset, tuple(int(n) for n in chunks), dtype, stages)
    slow = [name for name in reader.codec.split("+") if not DIRECT_BY_DEFAULT.get(name, False)]
    if slow and not require:
        raise _Unsupported(
            f"{', '.join(slow)} measured slower decoded in Python than by HDF5 (filters "
            f"{reader.codec}; see h5live._direct.DIRECT_BY_DEFAULT)",
            "use_direct_chunk='require' to read directly anyway",
        )
    return reader
