"""DatasetSink: writes one live dataset's chunks into its destination dataset.

Contract
--------
- A sink owns one destination dataset (chunked, growing along its first axis) and writes each
  :class:`~hdmf.data_utils.DataChunk` it is given at the chunk's selection, growing the dataset
  to that selection first (never shrinking it): the dataset's extent covers only what was
  written, so a reader that trusts the shape never reads a fill value as a frame.
- How, chosen once per dataset (:attr:`DatasetSink.how`):
  ``"raw"``: the source's stored chunks are copied as they are (same chunk shape, filters and
  dtype; :func:`~h5live._write.passthrough.passthrough_refusal`), never decoded; ``"direct"``: the
  destination has no filters, so decoded whole chunks go in with ``write_direct_chunk``;
  ``"decoded: <why not raw>"``: h5py assignment, through HDF5's filters.
- Raw and direct writes need whole chunks. A selection that starts or ends inside a chunk (a
  release for the latency bound) is split along the first axis: its whole chunks go raw or
  direct, the parts of chunks at its ends through h5py (HDF5 reads the chunk back, merges and
  writes it again: the price of a chunk written in parts). Only a
  :class:`~h5live._iterate.iterator.SourceChunk` that has not been read can be copied raw; the
  rest is decoded.
- ``before_write(nbytes)`` runs before every write (a conversion checks the free space there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from hdmf.data_utils import DataChunk

from h5live._iterate.iterator import SourceChunk
from h5live._write.passthrough import DirectChunkWrite, RawChunkCopy, passthrough_refusal

__all__ = ["DatasetSink", "split_rows"]

logger = logging.getLogger(__name__)

Selection = tuple[slice, ...]


def split_rows(selection: Selection, rows: int, edge: int | None = None) -> list[Selection]:
    """``selection`` cut along its first axis where chunks of ``rows`` rows start: the part of a
    chunk at its start, its whole chunks, the part of a chunk at its end (empty parts left
    out). A selection ending at ``edge`` (the source's extent) ends a whole chunk there."""
    first, rest = selection[0], selection[1:]
    lo, hi = int(first.start), int(first.stop)
    head = min(-(-lo // rows) * rows, hi)
    tail = hi if hi == edge else max(hi // rows * rows, head)
    cuts = [(lo, head), (head, tail), (tail, hi)]
    return [(slice(a, b), *rest) for a, b in cuts if b > a]


class DatasetSink:
    """Writes the chunks of one live dataset into ``destination``.

    Parameters
    ----------
    destination
        The h5py dataset written (chunked, resizable along the first axis).
    source
        The h5py dataset the frames come from, whose stored chunks may be copied raw; None if
        the frames are changed on their way (processing stages) or come from elsewhere.
    before_write
        Called with the bytes about to be written, before each write.

    Attributes
    ----------
    how
        ``"raw"``, ``"direct"``, or ``"decoded: "`` and why not raw.
    bytes_written
        Data bytes written so far, as stored (compressed, for chunks copied raw).
    """

    def __init__(
        self,
        destination: Any,
        source: Any | None = None,
        *,
        before_write: Callable[[int], None] | None = None,
    ) -> None:
        self.destination = destination
        self.before_write = before_write
        self.bytes_written = 0
        self._raw: RawChunkCopy | None = None
        self._direct: DirectChunkWrite | None = None
        refusal = (
            "the frames are changed on their way"
            if source is None
            else passthrough_refusal(source, destination)
        )
        if refusal is None:
            self._raw = RawChunkCopy(source, destination, self._before)
            self.how = "raw"
            return
        if DirectChunkWrite.refusal(destination) is None:
            self._direct = DirectChunkWrite(destination, self._before)
            self.how = "direct"
            return
        self.how = f"decoded: {refusal}"
        logger.info("%s: chunks are decoded and encoded again: %s", destination.name, refusal)

    @classmethod
    def for_iterator(cls, destination: Any, iterator: Any) -> DatasetSink:
        """The sink of ``destination`` fed by a :class:`~h5live.LiveDataChunkIterator`: its
        source's stored chunks may be copied raw unless stages change the frames."""
        return cls(destination, None if iterator.stages else iterator.dataset)

    @property
    def rows(self) -> int:
        """Rows of a destination chunk along the first axis."""
        return int(self.destination.chunks[0])

    def write(self, chunk: DataChunk) -> int:
        """Write ``chunk`` at its selection; the bytes written (as stored)."""
        selection = tuple(chunk.selection)
        if self._raw is not None and isinstance(chunk, SourceChunk) and not chunk.is_read:
            written = self._write_raw(chunk, selection)
        elif self._direct is not None:
            written = self._write_direct(chunk, selection)
        else:
            written = self._assign(selection, chunk.data)
        self.bytes_written += written
        return written

    # ------------------------------------------------------------------ ways to write

    def _before(self, nbytes: int) -> None:
        if self.before_write is not None:
            self.before_write(nbytes)

    def _grow(self, selection: Selection) -> None:
        shape = self.destination.shape
        bounds = tuple(max(int(s.stop), int(n)) for s, n in zip(selection, shape, strict=True))
        if bounds != tuple(shape):
            self.destination.id.extend(bounds)

    def _assign(self, selection: Selection, data: npt.NDArray[Any]) -> int:
        self._before(data.nbytes)
        self._grow(selection)
        self.destination[selection] = data
        return int(data.nbytes)

    def _write_raw(self, chunk: SourceChunk, selection: Selection) -> int:
        raw = self._raw
        assert raw is not None
        edge = int(raw.source.shape[0])
        written = 0
        for part in split_rows(selection, raw.chunks[0], edge):
            copied = raw.copy(part) if raw.aligned(part) else None
            written += copied if copied is not None else self._assign(part, chunk.read(part))
        return written

    def _write_direct(self, chunk: DataChunk, selection: Selection) -> int:
        direct = self._direct
        assert direct is not None
        written = 0
        for part in split_rows(selection, direct.chunks[0]):
            data = _part_of(chunk, selection, part)
            if direct.fits(part) and data.flags.c_contiguous:
                direct.write(part, data)
                written += int(data.nbytes)
            else:
                written += self._assign(part, data)
        return written

    def __repr__(self) -> str:
        return (
            f"<DatasetSink {self.destination.name!r} how={self.how!r} "
            f"bytes_written={self.bytes_written}>"
        )


def _part_of(chunk: DataChunk, selection: Selection, part: Selection) -> npt.NDArray[Any]:
    """The data of ``part`` (a selection inside the chunk's ``selection``)."""
    if part == selection:
        return np.asarray(chunk.data)
    if isinstance(chunk, SourceChunk) and not chunk.is_read:
        return chunk.read(part)
    lo = int(part[0].start) - int(selection[0].start)
    return np.asarray(chunk.data)[lo : lo + int(part[0].stop) - int(part[0].start)]
