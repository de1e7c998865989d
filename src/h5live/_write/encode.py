"""Chunks encoded in Python into the bytes HDF5's filter pipeline would store.

Contract
--------
- :meth:`ChunkEncoder.for_dataset` reads a destination dataset's filter pipeline (filter ids,
  flags and the ``cd_values`` its creation recorded) and returns an encoder that turns one
  chunk's array into exactly what HDF5 stores for it, with the chunk's filter mask: deflate,
  shuffle, fletcher32, Zstd (32015), LZ4 (32004), Blosc (32001), Blosc2 (32026) and
  bitshuffle (32008, alone or with LZ4 or Zstd), in any order HDF5 allows.
- Byte for byte: deflate goes through Python's zlib (the zlib HDF5 links here), shuffle and
  fletcher32 are HDF5's algorithms in numpy, the plugin filters call the compression library
  of hdf5plugin's own plugin (:mod:`h5live._write.plugin_codecs`) with the filter's framing. Blosc2
  is the exception: python-blosc2 builds the frame the filter builds (same chunk, block shape
  and parameters) with its own c-blosc2, whose frame header differs by a few bytes from the
  plugin's; HDF5 decodes it to the same data (tested).
- A filter that fails where HDF5's would (Blosc output larger than the chunk, ...) is skipped
  when it is optional and its bit set in the filter mask, as HDF5 does; a mandatory one raises.
- Edge chunks are padded to the whole chunk with the dataset's fill value, as HDF5 pads the
  chunk buffer it filters.
- A filter, option or dtype without an encoder here raises :class:`DirectWriteError` (a
  ``ValueError``) naming the dataset, the filter and the fix: the caller writes that dataset
  through HDF5's own pipeline instead.
- Encoding touches no HDF5 object and releases the GIL in the codecs (zlib, ctypes calls,
  numpy copies): :class:`~h5live._write.parallel.ParallelChunkWriter` runs it in worker threads.
"""

from __future__ import annotations

import importlib
import os
import struct
import zlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from h5live._read.codecs import (
    FILTER_BITSHUFFLE,
    FILTER_BLOSC,
    FILTER_BLOSC2,
    FILTER_DEFLATE,
    FILTER_FLETCHER32,
    FILTER_LZ4,
    FILTER_SHUFFLE,
    FILTER_ZSTD,
    filter_label,
    fletcher32,
)
from h5live._write.plugin_codecs import (
    BitshuffleLibrary,
    BloscLibrary,
    Lz4Library,
    PluginUnavailable,
    ZstdLibrary,
)
from h5live.errors import DirectWriteError

__all__ = ["ENCODABLE", "ChunkEncoder"]

Bytes = npt.NDArray[np.uint8]

#: The filters h5live encodes, for messages.
ENCODABLE = "deflate, shuffle, fletcher32, zstd, lz4, blosc, blosc2, bitshuffle (lz4, zstd)"
_OPTIONAL = 0x0001  # H5Z_FLAG_OPTIONAL: HDF5 skips the filter (mask bit) when it fails
_INT32_MAX = 2**31 - 1
_LZ4_DEFAULT_BLOCK = 1 << 30  # the filter's block size when its option is 0
# c-blosc reads these in blosc_compress (the filter's call), not in blosc_compress_ctx (ours)
_BLOSC_ENVIRONMENT = (
    "BLOSC_CLEVEL",
    "BLOSC_SHUFFLE",
    "BLOSC_TYPESIZE",
    "BLOSC_COMPRESSOR",
    "BLOSC_BLOCKSIZE",
    "BLOSC_SPLITMODE",
)
_BITSHUFFLE_CODECS = {0: "", 2: "lz4", 3: "zstd"}  # cd_values[4]


class _Unsupported(Exception):
    """Why a filter cannot be encoded here (message) and the fix; becomes DirectWriteError."""

    def __init__(self, reason: str, fix: str = "") -> None:
        super().__init__(reason)
        self.fix = fix


# ----------------------------------------------------------------------------- stages


class _Stage:
    """One filter of the pipeline, applied in Python as HDF5 applies it when writing."""

    name = "?"

    def __init__(self, optional: bool) -> None:
        self.optional = optional

    def encode(self, data: Bytes) -> Bytes | None:
        """The filter's output for ``data``, or None where HDF5's filter fails."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class _ShuffleStage(_Stage):
    """HDF5's byte shuffle (``H5Z_filter_shuffle``): byte ``j`` of every element stored
    together; the bytes after the last whole element kept as they are."""

    name = "shuffle"

    def __init__(self, optional: bool, elem_size: int) -> None:
        super().__init__(optional)
        self.elem_size = elem_size

    def encode(self, data: Bytes) -> Bytes | None:
        size = self.elem_size
        count = data.size // size
        if size <= 1 or count <= 1:  # HDF5 leaves these as they are
            return data
        out = np.empty_like(data)
        body = count * size
        out[:body].reshape(size, count)[...] = data[:body].reshape(count, size).T
        out[body:] = data[body:]
        return out


class _DeflateStage(_Stage):
    """HDF5's deflate (``compress2`` at the level): ``zlib.compress`` makes the same call."""

    def __init__(self, optional: bool, level: int) -> None:
        super().__init__(optional)
        self.level = level
        self.name = f"deflate({level})"

    def encode(self, data: Bytes) -> Bytes | None:
        return np.frombuffer(zlib.compress(data.data, self.level), dtype=np.uint8)


class _Fletcher32Stage(_Stage):
    """HDF5's Fletcher-32: the checksum of the bytes appended, little-endian."""

    name = "fletcher32"

    def encode(self, data: Bytes) -> Bytes | None:
        out = np.empty(data.size + 4, dtype=np.uint8)
        out[: data.size] = data
        struct.pack_into("<I", out.data, data.size, fletcher32(data))
        return out


class _ZstdStage(_Stage):
    """hdf5plugin's Zstd filter: one frame from ``ZSTD_compress`` at the clamped level."""

    def __init__(self, optional: bool, library: ZstdLibrary, level: int) -> None:
        super().__init__(optional)
        self.library = library
        self.level = min(max(level, library.min_level), library.max_level)
        self.name = f"zstd({self.level})"

    def encode(self, data: Bytes) -> Bytes | None:
        return self.library.compress(data, self.level)


class _Lz4Stage(_Stage):
    """hdf5plugin's LZ4 filter: total size (8 bytes) and block size (4 bytes), big-endian,
    then per block its size (4 bytes) and the LZ4 block, or the block as it is when LZ4 saves
    nothing."""

    def __init__(self, optional: bool, library: Lz4Library, block_size: int) -> None:
        super().__init__(optional)
        self.library = library
        self.block_size = block_size or _LZ4_DEFAULT_BLOCK
        self.name = "lz4" if not block_size else f"lz4(block {block_size})"

    def encode(self, data: Bytes) -> Bytes | None:
        total = data.size
        if total > _INT32_MAX or total == 0:  # the filter refuses these
            return None
        block = min(self.block_size, total)
        blocks = (total - 1) // block + 1
        out = np.empty(12 + blocks * (4 + self.library.bound(block)), dtype=np.uint8)
        struct.pack_into(">qI", out.data, 0, total, block)
        pos = 12
        for start in range(0, total, block):
            size = min(block, total - start)
            packed = self.library.compress_into(data, start, size, out, pos + 4)
            if packed == 0:
                return None
            if packed >= size:  # nothing saved: the block as it is
                out[pos + 4 : pos + 4 + size] = data[start : start + size]
                packed = size
            struct.pack_into(">I", out.data, pos, packed)
            pos += 4 + packed
        return out[:pos]


class _BloscStage(_Stage):
    """hdf5plugin's Blosc filter: c-blosc's chunk, in room for the filter input's size."""

    def __init__(
        self,
        optional: bool,
        library: BloscLibrary,
        typesize: int,
        clevel: int,
        shuffle: int,
        compressor: bytes,
    ) -> None:
        super().__init__(optional)
        self.library = library
        self.typesize, self.clevel, self.shuffle = typesize, clevel, shuffle
        self.compressor = compressor
        self.name = f"blosc({compressor.decode()}, {clevel}, shuffle {shuffle})"

    def encode(self, data: Bytes) -> Bytes | None:
        return self.library.compress(
            data, self.clevel, self.shuffle, self.typesize, self.compressor
        )


class _Blosc2Stage(_Stage):
    """hdf5plugin's Blosc2 filter, rebuilt with python-blosc2: a chunk whose size is the
    dataset chunk's becomes a B2ND frame of one chunk (block shape chosen as the filter
    chooses it); anything else (after fletcher32, say) a super-chunk frame of one chunk."""

    def __init__(self, optional: bool, blosc2: ModuleType, values: Sequence[int]) -> None:
        super().__init__(optional)
        self._blosc2 = blosc2
        blocksize, self.typesize, chunk_bytes = values[1], values[2], values[3]
        clevel, shuffle = values[4], values[5]
        codec = values[6] if len(values) > 6 else 0  # BLOSC_BLOSCLZ
        self.shape: tuple[int, ...] = ()
        if len(values) > 7:
            ndim = values[7]
            if ndim < 1 or len(values) < 8 + ndim:
                raise _Unsupported(f"its chunk rank {ndim} does not match its options")
            self.shape = tuple(values[8 : 8 + ndim])
        self.nbytes = self.typesize * int(np.prod(self.shape)) if self.shape else -1
        self.name = f"blosc2({codec}, {clevel}, shuffle {shuffle})"
        self._cparams: dict[str, Any] = {
            "codec": codec,
            "clevel": clevel,
            "typesize": self.typesize,
            "nthreads": 1,
            "splitmode": blosc2.SplitMode.FORWARD_COMPAT_SPLIT,  # c-blosc2's default
            "filters": [0, 0, 0, 0, 0, shuffle],
            "filters_meta": [0] * 6,
        }
        if blocksize == 0:  # the filter asks c-blosc2 for the block size of a zeroed chunk
            zeros = blosc2.compress2(
                np.zeros(chunk_bytes, dtype=np.uint8),
                cparams=blosc2.CParams(**{**self._cparams, "filters": [0, 0, 0, 0, 0, 1]}),
            )
            blocksize = int(blosc2.get_cbuffer_sizes(zeros)[2])
        self.blocksize = blocksize
        self.blocks = _b2nd_block_shape(blocksize, self.typesize, self.shape)

    def encode(self, data: Bytes) -> Bytes | None:
        blosc2 = self._blosc2
        if self.shape and data.size == self.nbytes:
            items = data.view(f"V{self.typesize}").reshape(self.shape)
            cparams = blosc2.CParams(**self._cparams)
            array = blosc2.asarray(items, chunks=self.shape, blocks=self.blocks, cparams=cparams)
            frame = array.to_cframe()
        else:
            cparams = blosc2.CParams(**{**self._cparams, "blocksize": self.blocksize})
            frame = blosc2.SChunk(chunksize=data.size, data=data, cparams=cparams).to_cframe()
        return np.frombuffer(frame, dtype=np.uint8)


def _b2nd_block_shape(block_bytes: int, typesize: int, chunk: Sequence[int]) -> tuple[int, ...]:
    """The Blosc2 filter's ``compute_b2nd_block_shape``: start at 2 (1 on a size-1 axis) and
    double from the innermost axis while the block stays under ``block_bytes``."""
    if not chunk:
        return ()
    items = block_bytes // max(typesize, 1)
    block = [1 if c == 1 else 2 for c in chunk]
    count = int(np.prod(block))
    while count < items:
        before = count
        for i in range(len(chunk) - 1, -1, -1):
            if block[i] * 2 <= chunk[i]:
                if count * 2 <= items:
                    count *= 2
                    block[i] *= 2
            elif block[i] < chunk[i]:
                grown = count // block[i] * chunk[i]
                if grown <= items:
                    count = grown
                    block[i] = chunk[i]
        if count == before:
            break
    return tuple(block)


class _BitshuffleStage(_Stage):
    """hdf5plugin's bitshuffle filter: bit-shuffled blocks, alone, or compressed with LZ4 or
    Zstd after a header of the total size (8 bytes) and the block size in bytes (4 bytes),
    big-endian."""

    def __init__(
        self,
        optional: bool,
        library: BitshuffleLibrary,
        elem_size: int,
        block_size: int,
        codec: str,
        level: int,
    ) -> None:
        super().__init__(optional)
        self.library = library
        self.elem_size, self.codec, self.level = elem_size, codec, level
        self.block_size = block_size or library.default_block_size(elem_size)
        self.name = f"bitshuffle-{codec}" if codec else "bitshuffle"

    def encode(self, data: Bytes) -> Bytes | None:
        if data.size % self.elem_size:  # the filter refuses a partial element
            return None
        if not self.codec:
            return self.library.bitshuffle(data, self.elem_size, self.block_size)
        out, end = self.library.compress(
            data, self.elem_size, self.block_size, self.codec, self.level, 12
        )
        struct.pack_into(">QI", out.data, 0, data.size, self.block_size * self.elem_size)
        return out[:end]


_LIBRARIES: dict[type[Any], Any] = {}  # one binding per library, shared by every encoder


def _library(kind: type[Any]) -> Any:
    if kind not in _LIBRARIES:
        _LIBRARIES[kind] = kind()
    return _LIBRARIES[kind]


def _plugin(kind: type[Any], label: str) -> Any:
    try:
        return _library(kind)
    except PluginUnavailable as exc:
        raise _Unsupported(
            f"{label} is encoded with hdf5plugin's own library, which is unavailable: {exc}",
            "`pip install hdf5plugin`, or let HDF5's filter pipeline write this dataset",
        ) from exc


def _signed(value: int) -> int:
    """A cd_value (C unsigned int) read as the int the filter casts it to."""
    return value - (1 << 32) if value >= 1 << 31 else value


def _make_stage(code: int, flags: int, values: Sequence[int], label: str, itemsize: int) -> _Stage:
    optional = bool(flags & _OPTIONAL)
    if code == FILTER_SHUFFLE:
        return _ShuffleStage(optional, values[0] if values else itemsize)
    if code == FILTER_DEFLATE:
        return _DeflateStage(optional, values[0] if values else 6)
    if code == FILTER_FLETCHER32:
        return _Fletcher32Stage(optional)
    if code == FILTER_ZSTD:
        level = _signed(values[0]) if values else 3  # ZSTD_CLEVEL_DEFAULT
        return _ZstdStage(optional, _plugin(ZstdLibrary, label), level)
    if code == FILTER_LZ4:
        if len(values) > 1 and _signed(values[1]) not in (0, 1):
            raise _Unsupported(
                f"{label} has the encoder option {_signed(values[1])}, which plugins of "
                "different versions apply differently"
            )
        return _Lz4Stage(optional, _plugin(Lz4Library, label), values[0] if values else 0)
    if code == FILTER_BLOSC:
        return _blosc_stage(optional, values, label)
    if code == FILTER_BLOSC2:
        if len(values) < 6:
            raise _Unsupported(f"{label} has {len(values)} options, the filter needs 6")
        try:
            blosc2 = importlib.import_module("blosc2")
        except ImportError as exc:
            raise _Unsupported(
                f"{label} needs the Python package 'blosc2', which is not installed",
                "`pip install blosc2`, or let HDF5's filter pipeline write this dataset",
            ) from exc
        return _Blosc2Stage(optional, blosc2, values)
    if code == FILTER_BITSHUFFLE:
        return _bitshuffle_stage(optional, values, label)
    raise _Unsupported(f"{label} has no encoder in h5live (it encodes {ENCODABLE})")


def _blosc_stage(optional: bool, values: Sequence[int], label: str) -> _Stage:
    if len(values) < 4:
        raise _Unsupported(f"{label} has {len(values)} options, the filter needs 4")
    overrides = [name for name in _BLOSC_ENVIRONMENT if os.environ.get(name)]
    if overrides:
        raise _Unsupported(
            f"{label}: the environment sets {', '.join(overrides)}, which change what "
            "c-blosc stores",
            f"unset {', '.join(overrides)}, or let HDF5's filter pipeline write this dataset",
        )
    library: BloscLibrary = _plugin(BloscLibrary, label)
    clevel = values[4] if len(values) > 4 else 5
    shuffle = values[5] if len(values) > 5 else 1
    compressor = library.compressor_name(values[6]) if len(values) > 6 else b"blosclz"
    if compressor is None:
        raise _Unsupported(f"{label} uses compressor {values[6]}, which this c-blosc lacks")
    return _BloscStage(optional, library, values[2], clevel, shuffle, compressor)


def _bitshuffle_stage(optional: bool, values: Sequence[int], label: str) -> _Stage:
    # cd_values: major, minor, element size, block size, compression[, level]
    if len(values) < 3:
        raise _Unsupported(f"{label} has {len(values)} options, the filter needs 3")
    code = values[4] if len(values) > 4 else 0
    codec = _BITSHUFFLE_CODECS.get(code)
    if codec is None:
        raise _Unsupported(f"{label} uses compression code {code} (h5live encodes 0, 2 and 3)")
    if codec == "zstd" and len(values) < 6:
        raise _Unsupported(f"{label} uses Zstd without a level")
    block_size = values[3] if len(values) > 3 else 0
    if block_size % 8:
        raise _Unsupported(f"{label} has block size {block_size}, not a multiple of 8")
    level = _signed(values[5]) if codec == "zstd" else 0
    library = _plugin(BitshuffleLibrary, label)
    return _BitshuffleStage(optional, library, values[2], block_size, codec, level)


# ----------------------------------------------------------------------------- encoder


class ChunkEncoder:
    """Encodes chunks of one dataset into the bytes its filter pipeline would store.

    Build it with :meth:`for_dataset`. :meth:`prepare` turns frames into a whole chunk of the
    dataset's dtype (an edge chunk padded with the fill value); :meth:`encode` gives the
    chunk's filter mask and stored bytes, for ``dataset.id.write_direct_chunk``. Encoding
    uses no HDF5 object, so it may run in any thread.

    Parameters
    ----------
    stages : sequence
        The filters, in pipeline order (built by :meth:`from_create_plist`).
    chunks : tuple of int
        The chunk shape.
    dtype : numpy.dtype
        The dataset's dtype, byte order included.
    fillvalue : scalar, optional
        What pads an edge chunk (HDF5's default: zero).
    name, filename : str
        The dataset and its file, for messages.
    """

    def __init__(
        self,
        stages: Sequence[_Stage],
        *,
        chunks: Sequence[int],
        dtype: Any,
        fillvalue: Any = None,
        name: str = "?",
        filename: str = "?",
    ) -> None:
        self._stages = tuple(stages)
        self.chunks = tuple(int(n) for n in chunks)
        self.dtype = np.dtype(dtype)
        self.fillvalue = np.zeros((), self.dtype) if fillvalue is None else fillvalue
        self.name = name
        self.filename = filename
        self.chunk_nbytes = int(np.prod(self.chunks)) * self.dtype.itemsize

    @classmethod
    def for_dataset(cls, dataset: Any) -> ChunkEncoder:
        """The encoder of ``dataset``'s chunks (an h5py dataset, chunked).

        Raises
        ------
        DirectWriteError
            The dataset is not chunked, its dtype is converted by HDF5 on writing (strings,
            variable length, references, compounds), or a filter or option has no encoder
            here; the message names the dataset, the filter and the fix.
        """
        name, filename = str(dataset.name), str(dataset.file.filename)
        return cls.from_create_plist(
            dataset.id.get_create_plist(),
            dataset.dtype,
            fillvalue=dataset.fillvalue,
            name=name,
            filename=filename,
        )

    @classmethod
    def from_create_plist(
        cls,
        dcpl: Any,
        dtype: Any,
        *,
        fillvalue: Any = None,
        name: str = "?",
        filename: str = "?",
    ) -> ChunkEncoder:
        """The encoder for a dataset creation property list (``dataset.id.get_create_plist()``:
        the ``cd_values`` HDF5's filters recorded when the dataset was created).

        Raises
        ------
        DirectWriteError
            As :meth:`for_dataset`.
        """
        import h5py

        where = f"{name!r} in {filename!r}"
        dtype = np.dtype(dtype)
        if dcpl.get_layout() != h5py.h5d.CHUNKED:
            raise DirectWriteError(
                f"chunks of {where} cannot be written directly: the dataset is not chunked. "
                "Fix: create it chunked, or write it with h5py."
            )
        if dtype.kind not in "biufc" or dtype.hasobject:
            raise DirectWriteError(
                f"chunks of {where} cannot be encoded in Python: HDF5 converts its dtype "
                f"{dtype} on writing. Fix: let HDF5's filter pipeline write this dataset."
            )
        stages = []
        for index in range(dcpl.get_nfilters()):
            code, flags, values, filter_name = dcpl.get_filter(index)
            label = filter_label(int(code), filter_name)
            try:
                stage = _make_stage(
                    int(code), int(flags), [int(v) for v in values], label, dtype.itemsize
                )
            except _Unsupported as exc:
                fix = exc.fix or "let HDF5's filter pipeline write this dataset"
                raise DirectWriteError(
                    f"chunks of {where} cannot be encoded in Python: {exc}. Fix: {fix} (the "
                    "write path does so by itself on this error)."
                ) from exc
            stages.append(stage)
        return cls(
            stages,
            chunks=dcpl.get_chunk(),
            dtype=dtype,
            fillvalue=fillvalue,
            name=name,
            filename=filename,
        )

    @property
    def filters(self) -> tuple[str, ...]:
        """The filters, in pipeline order, with their options."""
        return tuple(stage.name for stage in self._stages)

    def prepare(self, data: Any, *, copy: bool = True) -> npt.NDArray[Any]:
        """The whole chunk holding ``data`` (the part of a chunk inside the dataset's extent,
        from its first element), C-ordered in the dataset's dtype.

        An edge chunk is padded with the fill value. ``copy=False`` returns ``data`` itself
        when it is already a whole C-ordered chunk of the dtype.

        Raises
        ------
        ValueError
            ``data`` has another rank, is larger than a chunk, or has a dtype that does not
            convert to the dataset's within its kind.
        """
        array = np.asarray(data)
        where = f"{self.name!r} in {self.filename!r}"
        if array.ndim != len(self.chunks) or any(
            n > c for n, c in zip(array.shape, self.chunks, strict=True)
        ):
            raise ValueError(
                f"data of shape {array.shape} does not fit a chunk {self.chunks} of {where}. "
                "Fix: hand the writer one chunk at a time."
            )
        if array.dtype != self.dtype and not np.can_cast(array.dtype, self.dtype, "same_kind"):
            raise ValueError(
                f"data of dtype {array.dtype} does not convert to {self.dtype} of {where}. "
                "Fix: convert the frames before writing them."
            )
        if array.shape == self.chunks:
            if copy or array.dtype != self.dtype or not array.flags.c_contiguous:
                return np.array(array, dtype=self.dtype, order="C", copy=True)
            return array
        chunk = np.full(self.chunks, self.fillvalue, dtype=self.dtype)
        chunk[tuple(slice(0, n) for n in array.shape)] = array
        return chunk

    def encode(self, chunk: npt.NDArray[Any]) -> tuple[int, Bytes]:
        """The filter mask and the stored bytes of a whole chunk (from :meth:`prepare`).

        Raises
        ------
        RuntimeError
            A mandatory filter failed where HDF5 would fail the write too.
        """
        if chunk.shape != self.chunks or chunk.dtype != self.dtype:
            raise ValueError(
                f"encode takes a whole chunk {self.chunks} of {self.dtype}, not "
                f"{chunk.shape} of {chunk.dtype}. Fix: pass it through prepare() first."
            )
        data: Bytes = np.ascontiguousarray(chunk).view(np.uint8).reshape(-1)
        mask = 0
        for index, stage in enumerate(self._stages):
            out = stage.encode(data)
            if out is None:
                if not stage.optional:
                    raise RuntimeError(
                        f"the mandatory filter {stage.name} failed on a chunk of "
                        f"{self.name!r} in {self.filename!r}, as HDF5's would"
                    )
                mask |= 1 << index
                continue
            data = out
        return mask, data

    def __repr__(self) -> str:
        filters = "+".join(self.filters) or "no filters"
        return (
            f"<ChunkEncoder {self.name!r} in {os.path.basename(self.filename)!r} "
            f"chunks={self.chunks} {self.dtype} {filters}>"
        )
