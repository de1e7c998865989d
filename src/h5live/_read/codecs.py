"""Python decoders for HDF5 filter pipelines: the stages of a direct chunk read.

Each stage undoes one HDF5 filter (deflate, shuffle, fletcher32, Blosc, Blosc2, bitshuffle, LZ4,
Zstd) on a chunk's bytes, checking sizes before it writes into its destination. ``make_stage``
builds the stage for a filter of a dataset's pipeline, or raises ``Unsupported`` saying why not
and what would fix it. Optional packages are imported when a dataset needs them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import math
import struct
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FIX_FALLBACK",
    "Bytes",
    "Stage",
    "Unsupported",
    "copy_exact",
    "filter_label",
    "fletcher32",
    "make_stage",
]

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
_Buffer = Any  # 1-D bytes: bytes, bytearray, a "B" memoryview or a uint8 array; len() = size
Bytes = npt.NDArray[np.uint8]


def _import_optional(name: str) -> ModuleType | None:
    """Import an optional decoding package, or None if it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def copy_exact(data: _Buffer, dest: Bytes, what: str) -> None:
    """Copy decoded bytes into ``dest``, which they must fill exactly."""
    src = np.frombuffer(data, dtype=np.uint8)
    if src.size != dest.size:
        raise ValueError(f"{what} gave {src.size} bytes, expected {dest.size}")
    dest[...] = src


class Stage:
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

    def decode_into(self, src: _Buffer, dest: Bytes) -> None:
        copy_exact(self.decode(src, dest.size), dest, self.name)


class _DeflateStage(Stage):
    name = "deflate"

    def decode(self, src: _Buffer, chunk_nbytes: int) -> _Buffer:
        return zlib.decompress(src, bufsize=max(chunk_nbytes, 1))


class _ShuffleStage(Stage):
    """HDF5's byte shuffle: byte ``j`` of all elements stored together; a tail kept as is."""

    name = "shuffle"

    def __init__(self, index: int, elem_size: int) -> None:
        super().__init__(index)
        self.elem_size = elem_size

    def decode(self, src: _Buffer, chunk_nbytes: int) -> _Buffer:
        dest = np.empty(len(src), dtype=np.uint8)
        self.decode_into(src, dest)
        return dest

    def decode_into(self, src: _Buffer, dest: Bytes) -> None:
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


class _Fletcher32Stage(Stage):
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


class _BloscStage(Stage):
    """Blosc (filter 32001), decoded by c-blosc2 (which reads the Blosc 1 format) or c-blosc."""

    name = "blosc"
    _HEADER = struct.Struct("<III")  # nbytes, blocksize, cbytes at byte 4

    def __init__(self, index: int, into: Callable[[_Buffer, Bytes], object]) -> None:
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

    def decode_into(self, src: _Buffer, dest: Bytes) -> None:
        nbytes = self._nbytes(src)
        if nbytes != dest.size:  # checked here: neither package bounds its writes by dest
            raise ValueError(f"Blosc header says {nbytes} bytes, expected {dest.size}")
        self._into(src, dest)


_Layout = tuple[tuple[int, ...], tuple[int, ...]]  # a B2ND array's shape and block shape


class _Blosc2Stage(Stage):
    """Blosc2 (filter 32026): hdf5plugin stores each chunk as a Blosc2 frame of one chunk.

    The frame's data chunk is decompressed straight from the frame: parsing it with
    ``blosc2.schunk_from_cframe`` costs ~30 us, more than decoding a small chunk. It holds the
    HDF5 chunk in C order when the frame is a plain super-chunk or a B2ND array of one block.
    A B2ND array of several blocks stores them one after another, each padded to the block
    shape: they are put in C order with numpy, the block shape read from the frame's ``b2nd``
    metalayer. Anything else (a special-valued chunk the frame does not store, an unexpected
    layout) goes through ``blosc2.ndarray_from_cframe``, as the HDF5 filter goes through
    ``b2nd_get_slice_cbuffer``.
    """

    name = "blosc2"
    _MAGIC = b"b2frame\x00"
    _CHUNK = struct.Struct("<iii")  # nbytes, blocksize, cbytes at byte 4 of a chunk
    _B2ND_KEY = b"\xa4b2nd\xd2"  # the metalayer's name (fixstr 4) and its offset (int32) next

    def __init__(self, index: int, blosc2: ModuleType, msgpack: ModuleType | None) -> None:
        super().__init__(index)
        self._blosc2 = blosc2
        self._msgpack = msgpack
        # b2nd metalayer bytes -> (chunk shape, block shape); one entry per dataset in practice
        self._layouts: dict[bytes, _Layout | None] = {}

    def _data_chunk(self, view: memoryview) -> tuple[int, memoryview | None]:
        """The frame's header size and its first chunk (None when it cannot be one)."""
        if len(view) < 24 or view[2:10] != self._MAGIC or view[10] != 0xD2:
            raise ValueError("chunk is not a Blosc2 frame (no 'b2frame' magic)")
        (header_size,) = struct.unpack_from(">i", view, 11)
        if header_size <= 0 or header_size + 32 > len(view):
            return header_size, None
        nbytes, _, cbytes = self._CHUNK.unpack_from(view, header_size + 4)
        # A frame whose chunk is special-valued (all zeros, say) stores no data chunk: its
        # index chunk (8 bytes per chunk) comes first. Never take an 8-byte chunk for data.
        if nbytes <= 8 or cbytes < 16 or header_size + cbytes > len(view):
            return header_size, None
        return header_size, view[header_size : header_size + cbytes]

    def _b2nd_layout(self, header: bytes) -> tuple[bool, _Layout | None]:
        """Whether the frame holds a B2ND array, and its (shape, block shape) if readable."""
        key = header.find(self._B2ND_KEY)
        if key < 0:
            return b"caterva" in header, None  # caterva: B2ND's former name, left to blosc2
        (offset,) = struct.unpack_from(">i", header, key + len(self._B2ND_KEY))
        if offset + 5 > len(header) or header[offset] != 0xC6:  # bin32
            return True, None
        (length,) = struct.unpack_from(">I", header, offset + 1)
        content = header[offset + 5 : offset + 5 + length]
        if content not in self._layouts:
            self._layouts[content] = self._parse_b2nd(content)
        return True, self._layouts[content]

    def _parse_b2nd(self, content: bytes) -> _Layout | None:
        if self._msgpack is None:
            return None
        try:  # [version, ndim, shape, chunk shape, block shape, dtype format, dtype]
            meta = self._msgpack.unpackb(content)
            shape, blocks = tuple(int(n) for n in meta[2]), tuple(int(n) for n in meta[4])
        except (ValueError, TypeError, IndexError):
            return None
        if len(shape) != len(blocks) or min(shape + blocks, default=0) <= 0:
            return None
        return shape, blocks

    def _decode_frame(self, view: memoryview) -> _Buffer:
        frame = view.tobytes()
        schunk = self._blosc2.schunk_from_cframe(frame, copy=False)
        if "b2nd" in schunk.meta or "caterva" in schunk.meta:
            array = self._blosc2.ndarray_from_cframe(frame, copy=False)
            return np.ascontiguousarray(array[()]).reshape(-1).view(np.uint8)
        return schunk.decompress_chunk(0)

    def decode(self, src: _Buffer, chunk_nbytes: int) -> _Buffer:
        view = memoryview(src)
        header_size, chunk = self._data_chunk(view)
        if chunk is not None and not self._b2nd_layout(view[:header_size].tobytes())[0]:
            return self._blosc2.decompress(chunk)
        return self._decode_frame(view)

    def decode_into(self, src: _Buffer, dest: Bytes) -> None:
        view = memoryview(src)
        header_size, chunk = self._data_chunk(view)
        if chunk is not None and self._chunk_into(view, header_size, chunk, dest):
            return
        copy_exact(self._decode_frame(view), dest, self.name)

    def _chunk_into(
        self, view: memoryview, header_size: int, chunk: memoryview, dest: Bytes
    ) -> bool:
        """Decode the data chunk into dest if its layout is known; False if it is not."""
        nbytes, blocksize, _ = self._CHUNK.unpack_from(chunk, 4)
        if nbytes == dest.size and blocksize == nbytes:  # one block: C order
            self._blosc2.decompress(chunk, dst=dest)  # size checked: dst does not bound it
            return True
        b2nd, layout = self._b2nd_layout(view[:header_size].tobytes())
        if not b2nd:  # a plain super-chunk: blocks are runs of bytes, in order
            if nbytes != dest.size:
                raise ValueError(f"Blosc2 chunk holds {nbytes} bytes, expected {dest.size}")
            self._blosc2.decompress(chunk, dst=dest)
            return True
        if layout is None:
            return False
        shape, blocks = layout
        typesize = chunk[3]
        grid = tuple(-(-n // b) for n, b in zip(shape, blocks, strict=True))
        padded = math.prod(g * b for g, b in zip(grid, blocks, strict=True))
        if (
            math.prod(shape) * typesize != dest.size
            or padded * typesize != nbytes
            or math.prod(blocks) * typesize != blocksize
        ):
            return False
        data = np.frombuffer(self._blosc2.decompress(chunk), dtype=np.uint8)
        if data.size != nbytes:
            raise ValueError(f"Blosc2 chunk gave {data.size} bytes, expected {nbytes}")
        ndim = len(shape)
        # blocks in C order over the block grid, each block in C order: interleave the axes
        stored = data.reshape(*grid, *blocks, typesize)
        order = [axis for i in range(ndim) for axis in (i, ndim + i)]
        whole = stored.transpose(*order, 2 * ndim).reshape(
            *(g * b for g, b in zip(grid, blocks, strict=True)), typesize
        )
        dest.reshape(*shape, typesize)[...] = whole[tuple(slice(0, n) for n in shape)]
        return True


_OMP_PINNED = threading.local()


def _one_omp_thread(bitshuffle: ModuleType) -> None:
    """Run bitshuffle's OpenMP loops on one thread, in the calling thread.

    The bitshuffle wheel's OpenMP threads made one 512 KiB LZ4 chunk take 3.6 ms instead of
    0.34 ms on 2 cores (measured with HDF5 2.0, bitshuffle 0.5: its threads spin against each
    other and against the writer). Only the wheel's own copy of libgomp is told, so no other
    library's threads change; a bitshuffle linked with a shared libgomp is left as it is.
    """
    _OMP_PINNED.done = True
    gomp = _vendored_gomp(bitshuffle)
    if gomp is not None:
        gomp.omp_set_num_threads(1)


@functools.lru_cache(maxsize=1)
def _vendored_gomp(bitshuffle: ModuleType) -> Any:
    folder = Path(bitshuffle.__file__ or "").resolve().parent.parent / "bitshuffle.libs"
    for path in sorted(folder.glob("libgomp*.so*")):
        with contextlib.suppress(OSError, AttributeError):
            library = ctypes.CDLL(str(path))  # the copy the module loaded: the same handle
            library.omp_set_num_threads.argtypes = [ctypes.c_int]
            return library
    return None


# bitshuffle's compression codes (cd_values[4]) and the names of what they add
_BITSHUFFLE_CODES: Mapping[int, str] = MappingProxyType({0: "", 2: "lz4", 3: "zstd"})


class _BitshuffleStage(Stage):
    """Bitshuffle (filter 32008), optionally with LZ4 or Zstd, as bitshuffle's HDF5 filter.

    Compressed chunks start with the total size (8 bytes) and the block size in bytes
    (4 bytes), both big-endian; uncompressed ones are the bit-shuffled bytes alone.
    """

    _HEADER = struct.Struct(">QI")
    _BLOCK = struct.Struct(">I")

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
        if not getattr(_OMP_PINNED, "done", False):
            _one_omp_thread(self._bitshuffle)
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
        count, block = total // size, block_bytes // size
        self._check_blocks(memoryview(src), count, block)
        body = np.frombuffer(src, dtype=np.uint8, offset=self._HEADER.size)
        items = self._decompress(body, (count,), self._elem_dtype, block)
        return items.view(np.uint8)

    def _check_blocks(self, view: memoryview, count: int, block: int) -> None:
        """Check that every block lies inside the chunk: bitshuffle reads them without
        knowing the chunk's size. Blocks of ``block`` elements, then one of the rest rounded
        down to a multiple of 8, each a 4-byte big-endian size and the compressed bytes; then
        the last ``count % 8`` elements stored as they are."""
        if block <= 0 or block % 8:
            raise ValueError(f"bitshuffle block of {block} elements is not a multiple of 8")
        blocks = count // block + (1 if count % block >= 8 else 0)
        end = len(view)
        pos = self._HEADER.size
        for _ in range(blocks):
            if pos + 4 > end:
                raise ValueError(f"bitshuffle chunk of {end} bytes is cut short")
            (csize,) = self._BLOCK.unpack_from(view, pos)
            pos += 4 + csize
        if pos + count % 8 * self.elem_size > end:
            raise ValueError(f"bitshuffle chunk of {end} bytes is cut short")


class _Lz4Stage(Stage):
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

    def decode_into(self, src: _Buffer, dest: Bytes) -> None:
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


class _ZstdStage(Stage):
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

    def decode_into(self, src: _Buffer, dest: Bytes) -> None:
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


class Unsupported(Exception):  # an internal signal, never leaves h5live._read.direct
    """Why a dataset's chunks are not read directly (message), and the fix."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


FIX_FALLBACK = "pass use_direct_chunk=True (not 'require') to fall back to h5py reads"


def _need(package: str, pip_name: str, filter_label: str) -> ModuleType:
    module = _import_optional(package)
    if module is None:
        raise Unsupported(
            f"{filter_label} needs the Python package {pip_name!r}, which is not installed",
            f"`pip install {pip_name}`, or {FIX_FALLBACK}",
        )
    return module


def filter_label(code: int, name: bytes | str) -> str:
    known = _FILTER_NAMES.get(code)
    if known is not None:
        return f"filter {code} ({known})"
    text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return f"filter {code} ({text.split(';')[0].strip() or 'unnamed'})"


def _blosc_stage(index: int, label: str) -> Stage:
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
    raise Unsupported(
        f"{label} needs the Python package 'blosc2' (or 'blosc'), neither is installed",
        f"`pip install blosc2`, or {FIX_FALLBACK}",
    )


def _bitshuffle_stage(index: int, cd_values: Sequence[int], label: str, itemsize: int) -> Stage:
    # cd_values: major, minor, element size, block size, compression[, level]
    compression = int(cd_values[4]) if len(cd_values) > 4 else 0
    if compression not in _BITSHUFFLE_CODES:
        raise Unsupported(
            f"{label} uses compression code {compression!r}, which h5live cannot decode "
            "(it decodes 0 = none, 2 = LZ4, 3 = Zstd)",
            FIX_FALLBACK,
        )
    elem_size = int(cd_values[2]) if len(cd_values) > 2 else itemsize
    block_size = int(cd_values[3]) if len(cd_values) > 3 else 0
    if elem_size <= 0:
        raise Unsupported(f"{label} has element size {elem_size!r}", FIX_FALLBACK)
    bitshuffle = _need("bitshuffle", "bitshuffle", label)
    return _BitshuffleStage(index, bitshuffle, elem_size, block_size, compression)


def make_stage(index: int, code: int, cd_values: Sequence[int], label: str, itemsize: int) -> Stage:
    """The Python decoder of one filter, or raise Unsupported."""
    if code == FILTER_DEFLATE:
        return _DeflateStage(index)
    if code == FILTER_SHUFFLE:
        return _ShuffleStage(index, int(cd_values[0]) if cd_values else itemsize)
    if code == FILTER_FLETCHER32:
        return _Fletcher32Stage(index)
    if code == FILTER_BLOSC:
        return _blosc_stage(index, label)
    if code == FILTER_BLOSC2:
        blosc2 = _need("blosc2", "blosc2", label)
        return _Blosc2Stage(index, blosc2, _import_optional("msgpack"))
    if code == FILTER_BITSHUFFLE:
        return _bitshuffle_stage(index, cd_values, label, itemsize)
    if code == FILTER_LZ4:
        return _Lz4Stage(index, _need("lz4.block", "lz4", label))
    if code == FILTER_ZSTD:
        return _ZstdStage(index, _need("zstandard", "zstandard", label))
    raise Unsupported(
        f"{label} has no Python decoder in h5live (it decodes {_DECODABLE})",
        FIX_FALLBACK,
    )
