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

import logging
import math
import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from h5live._follow.keys import dataset_label
from h5live._read.codecs import (
    FIX_FALLBACK,
    Bytes,
    Stage,
    Unsupported,
    copy_exact,
    filter_label,
    fletcher32,
    make_stage,
)
from h5live.errors import DirectChunkError

__all__ = [
    "DIRECT_BY_DEFAULT",
    "DirectChunkReader",
    "direct_chunk_reader",
    "fletcher32",
]

logger = logging.getLogger(__name__)

# HDF5 filter ids: built in, and registered plugin filters (as hdf5plugin writes them).

# When chunks are read directly by default: filter pipeline (DirectChunkReader.codec) -> the
# smallest chunk, in bytes, read directly (0: all; None: never). Pipelines not listed are read
# directly only when required. Chosen from the figures below: from the smallest measured chunk
# size at which direct reads were at least as fast as h5py (ratio >= 0.97) at that size and every
# larger one, if they were clearly faster (>= 1.10) at some size; never otherwise.
# Measured: microseconds per frame, h5py ``dataset[i:i+1]`` / ``DirectChunkReader.read``, one
# frame per chunk, uint16 poisson(20) frames, cold chunk cache (rdcc_nbytes=0), each figure the
# best of 7 passes in a fresh process, median of 3 runs; 2-vCPU Xeon 2.5 GHz VM shared with other
# work (noise ~10%), python 3.11, h5py 3.16, HDF5 2.0, hdf5plugin 7.1, blosc2 4.14, bitshuffle
# 0.5.2, lz4 4.4, zstandard 0.25 (script kept outside the repo).
#   codec                    32x32 2 KiB  256x256 128 KiB  512x512 512 KiB  1024x1024 2 MiB
#   none                         10 / 10          33 / 31         109 / 87        426 / 331
#   blosc                        12 / 12          69 / 55        222 / 148        888 / 563
#   blosc, python-blosc only     12 / 14          71 / 57        210 / 185        925 / 449
#   blosc2                       20 / 12          60 / 31        269 / 220      3834 / 2514
#   bitshuffle                   12 / 20          83 / 79        694 / 615      3707 / 3075
#   bitshuffle-lz4               12 / 34         97 / 108        735 / 707      3901 / 3316
#   bitshuffle-zstd              15 / 40        144 / 140        948 / 794      4850 / 3757
#   lz4                          12 / 14        115 / 123        913 / 874      4302 / 4237
#   zstd                         20 / 19        236 / 246       1323 / 877      6100 / 3729
#   deflate                      28 / 26        524 / 486      2452 / 1944     10290 / 7856
#   shuffle+deflate              24 / 27        675 / 629      3073 / 2463     13030 / 9876
#   shuffle+zstd                 17 / 18        151 / 140        987 / 904      5296 / 4563
#   fletcher32                   11 / 31         87 / 165        334 / 595      3083 / 7032
#   shuffle+deflate+fletcher32   24 / 53        686 / 802      3168 / 3456    13182 / 13664
# The python bitshuffle package costs ~10 us a call and lz4/zstandard return bytes that must be
# copied; h5py's per-read overhead (~7 us) is what direct reads save on small chunks. On large
# chunks HDF5's own buffer handling dominates and blosc/blosc2 decode with several threads.
DIRECT_BY_DEFAULT: Mapping[str, int | None] = MappingProxyType(
    {
        "none": 0,
        "blosc": 0,
        "blosc2": 0,
        "deflate": 0,
        "bitshuffle": 1 << 17,
        "bitshuffle-zstd": 1 << 17,
        "shuffle+deflate": 1 << 17,
        "shuffle+zstd": 1 << 17,
        "bitshuffle-lz4": 1 << 19,
        "zstd": 1 << 19,
        "lz4": None,
        "fletcher32": None,
        "shuffle+deflate+fletcher32": None,
    }
)

# Unfiltered chunks at least this big are read by HDF5 straight into ``out``; smaller ones are
# faster read as bytes and copied (h5py's ``out=`` path costs ~1 us more per call).
_READ_INTO_MIN_NBYTES = 1 << 15


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
        stages: Sequence[Stage],
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
        dest: Bytes = out.reshape(-1).view(np.uint8)
        try:
            if self._raw_into:  # unfiltered and big: HDF5 writes straight into ``out``
                mask, data = self._dsid.read_direct_chunk(offset, out=dest)
            else:
                mask, data = self._dsid.read_direct_chunk(offset)
        # h5py raises MemoryError when HDF5 reports an unallocated chunk's size as 0 bytes.
        except (RuntimeError, OSError, ValueError, MemoryError) as exc:
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
                copy_exact(data, dest, "the stored chunk")
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
    except Unsupported as exc:
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
        raise Unsupported(
            f"{type(dataset).__name__} is not an h5py dataset (no .id.read_direct_chunk)",
            f"pass an h5py.Dataset, or {FIX_FALLBACK}",
        )
    chunks = getattr(dataset, "chunks", None)
    if not chunks:
        raise Unsupported(
            "it is not chunked (contiguous or compact storage)",
            f"have the writer chunk it, or {FIX_FALLBACK}",
        )
    dtype = np.dtype(dataset.dtype)
    if not _plain_dtype(dataset, dtype):
        raise Unsupported(
            f"h5py converts its stored type to dtype {dtype} when reading, so the stored bytes "
            "are not the values",
            FIX_FALLBACK,
        )
    dcpl = dsid.get_create_plist()
    stages: list[Stage] = []
    for index in range(dcpl.get_nfilters()):
        code, _flags, cd_values, filter_name = dcpl.get_filter(index)
        label = filter_label(int(code), filter_name)
        stages.append(make_stage(index, int(code), tuple(cd_values), label, dtype.itemsize))
    reader = DirectChunkReader(dataset, tuple(int(n) for n in chunks), dtype, stages)
    if not require:
        _check_default(reader)
    return reader


def _check_default(reader: DirectChunkReader) -> None:
    """Raise Unsupported unless DIRECT_BY_DEFAULT reads these chunks directly."""
    codec = reader.codec
    if codec not in DIRECT_BY_DEFAULT:
        reason = f"{codec} was not measured faster decoded in Python than by HDF5"
    elif (smallest := DIRECT_BY_DEFAULT[codec]) is None:
        reason = f"{codec} measured slower decoded in Python than by HDF5"
    elif reader.nbytes < smallest:
        reason = (
            f"{codec} measured faster decoded in Python than by HDF5 only for chunks of "
            f"{smallest} bytes or more, not {reader.nbytes}-byte chunks"
        )
    else:
        return
    raise Unsupported(
        f"{reason} (see h5live._read.direct.DIRECT_BY_DEFAULT)",
        "use_direct_chunk='require' to read directly anyway",
    )
