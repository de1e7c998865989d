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
  ``"parallel (N workers): <why not raw>"``: the destination's filters are encoded by a pool of
  N threads (:class:`~h5live._write.parallel.ParallelChunkWriter`) into what HDF5 would store,
  written with ``write_direct_chunk`` in order; ``"decoded: <why not raw>"``: h5py assignment,
  through HDF5's filters (``workers=0``, or filters h5live cannot encode).
- Raw, direct and parallel writes need whole chunks. A selection that starts or ends inside a
  chunk (a release for the latency bound) is split along the first axis: its whole chunks go
  raw, direct or to the pool, the parts of chunks at its ends through h5py (HDF5 reads the chunk
  back, merges and writes it again: the price of a chunk written in parts), after the pool has
  written everything before them; in a parallel sink fed by the iterator, the pool encodes such
  a chunk again from its first row, read from the source (no read back, no decode). Only a
  :class:`~h5live._iterate.iterator.SourceChunk` that has not been read can be copied raw; the
  rest is decoded.
- The pool holds at most two chunks per worker and no more than ``IN_FLIGHT_BYTES`` of them
  (at least two): memory stays bounded on a machine of many cores.
- Written is not handed over: chunks in the pool are written later (in order, at later writes,
  :meth:`DatasetSink.flush` or :meth:`DatasetSink.close`). :meth:`DatasetSink.take_written`
  gives the selections written since it was last called, in order, so that a caller marks only
  frames on disk. :meth:`DatasetSink.abort` drops what is in flight (never written).
- ``before_write(nbytes)`` runs before every write (a conversion checks the free space there).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from hdmf.data_utils import DataChunk

from h5live._iterate.iterator import SourceChunk
from h5live._write.parallel import ParallelChunkWriter, check_workers, default_workers
from h5live._write.passthrough import DirectChunkWrite, RawChunkCopy, passthrough_refusal
from h5live.errors import DirectWriteError

__all__ = ["DatasetSink", "split_rows"]

logger = logging.getLogger(__name__)

Selection = tuple[slice, ...]
#: Bytes of chunks (before encoding) a sink's pool holds at most, beyond two chunks: two
#: default buffers.
IN_FLIGHT_BYTES = 256 << 20


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
    workers
        Threads that encode a filtered destination's chunks (``None``: one per core this
        process may use; ``0``: none, HDF5's filter pipeline encodes them on this thread).

    Attributes
    ----------
    how
        ``"raw"``, ``"direct"``, ``"parallel (N workers): "`` or ``"decoded: "``, and why not raw.
    bytes_written
        Data bytes written so far, as stored (compressed, for chunks copied raw or encoded by
        the pool).
    """

    def __init__(
        self,
        destination: Any,
        source: Any | None = None,
        *,
        before_write: Callable[[int], None] | None = None,
        workers: int | None = None,
    ) -> None:
        self.destination = destination
        self.before_write = before_write
        self.bytes_written = 0
        # fixed for the dataset's life: read once (h5py asks HDF5 at each access)
        self._chunks = tuple(int(n) for n in destination.chunks or ())
        self._limits = (None, *destination.maxshape[1:])
        self._raw: RawChunkCopy | None = None
        self._direct: DirectChunkWrite | None = None
        self._pool: ParallelChunkWriter | None = None
        self._written: list[Selection] = []  # written, not yet taken
        self._in_pool: deque[list[Any]] = deque()  # [part, its chunks not yet written]
        workers = check_workers(workers, f"{destination.name!r} in {destination.file.filename!r}")
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
        self._pool = self._encoding_pool(workers)
        if self._pool is not None:
            self.how = f"parallel ({self._pool.workers} workers): {refusal}"
            return
        self.how = f"decoded: {refusal}"
        logger.info("%s: chunks are decoded and encoded again: %s", destination.name, refusal)

    def _encoding_pool(self, workers: int | None) -> ParallelChunkWriter | None:
        """The pool that encodes this destination's chunks, or None (``workers=0``, or filters
        h5live does not encode: HDF5's pipeline writes them)."""
        if workers == 0:
            return None
        workers = default_workers() if workers is None else workers
        chunk = math.prod(self._chunks) * self.destination.dtype.itemsize
        try:
            return ParallelChunkWriter(
                self.destination,
                workers=workers,
                # two per worker, within IN_FLIGHT_BYTES (64 cores, 10 MB chunks: 25, not 128)
                max_in_flight=max(2, min(2 * workers, IN_FLIGHT_BYTES // max(chunk, 1))),
                before_write=self._before,
                after_write=self._chunk_written,
            )
        except DirectWriteError as exc:
            logger.info("%s: HDF5's filter pipeline encodes the chunks: %s", self.name, exc)
            return None

    @classmethod
    def for_iterator(
        cls, destination: Any, iterator: Any, *, workers: int | None = None
    ) -> DatasetSink:
        """The sink of ``destination`` fed by a :class:`~h5live.LiveDataChunkIterator`: its
        source's stored chunks may be copied raw unless stages change the frames."""
        return cls(destination, None if iterator.stages else iterator.dataset, workers=workers)

    @property
    def name(self) -> str:
        return str(self.destination.name)

    @property
    def rows(self) -> int:
        """Rows of a destination chunk along the first axis."""
        return self._chunks[0]

    @property
    def pending(self) -> bool:
        """Whether chunks are handed over and not written yet."""
        return bool(self._in_pool)

    def write(self, chunk: DataChunk) -> int:
        """Write ``chunk`` at its selection, or hand its whole chunks to the pool; the bytes
        handed over (the pool's are counted in :attr:`bytes_written` once written, as stored).

        Raises
        ------
        OutputError
            The pool failed to encode or write a chunk (this one or one before).
        """
        selection = tuple(chunk.selection)
        if self._raw is not None and isinstance(chunk, SourceChunk) and not chunk.is_read:
            written = self._write_raw(chunk, selection)
        elif self._direct is not None:
            written = self._write_direct(chunk, selection)
        elif self._pool is not None:
            return self._write_encoded(chunk, selection)
        else:
            written = self._assign(selection, chunk.data)
        self.bytes_written += written
        self._written.append(selection)
        return written

    def take_written(self, *, write_ready: bool = True) -> list[Selection]:
        """The selections written since the last call, in the order they were written (first
        writing the chunks the pool has encoded, unless ``write_ready`` is False)."""
        if write_ready and self._pool is not None and self._in_pool:
            self._pool.write_ready()
        taken, self._written = self._written, []
        return taken

    def flush(self) -> None:
        """Wait for the pool and write every chunk handed over."""
        if self._pool is not None and self._in_pool:
            self._pool.flush()

    def close(self) -> None:
        """Write what is handed over and stop the pool (idempotent)."""
        if self._pool is not None:
            self._pool.close()

    def abort(self) -> None:
        """Drop the chunks handed over and not written, and stop the pool (idempotent)."""
        self._in_pool.clear()
        if self._pool is not None:
            self._pool.abort()

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
        self.flush()  # a chunk in the pool must not land on this write
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

    def _write_encoded(self, chunk: DataChunk, selection: Selection) -> int:
        """Hand ``chunk``'s chunks to the pool.

        A SourceChunk not read yet is read chunk by chunk, each read handed over as it is (no
        copy, no buffer of the whole selection: the reads interleave with the encodes). A part
        of a chunk at its ends (a release for the latency bound) goes to the pool too: its chunk
        is encoded again from its first row, read from the source (those frames are complete),
        up to the part's end (an edge chunk until the rest is written), so no chunk is ever
        read back and decoded. Other data is copied chunk by chunk, its parts of chunks written
        through h5py once the pool has written what it holds.
        """
        pool = self._pool
        assert pool is not None
        lazy = isinstance(chunk, SourceChunk) and not chunk.is_read
        rows = self.rows
        handed = 0
        for part in split_rows(selection, rows):
            if lazy:
                first = int(part[0].start) // rows * rows
                blocks = self._chunk_blocks((slice(first, int(part[0].stop)), *part[1:]), True)
            else:
                blocks = self._chunk_blocks(part)
            if blocks is None:  # parts of chunks: through h5py, once the pool has written
                written = self._assign(part, _part_of(chunk, selection, part))
                self.bytes_written += written
                self._written.append(part)
                handed += written
                continue
            data = None if lazy else _part_of(chunk, selection, part)
            self._in_pool.append([part, len(blocks)])
            for block in blocks:
                offset = tuple(int(s.start) for s in block)
                if data is None:  # lazy: read chunk by chunk
                    frames = chunk.read(block)  # a new array, or a view the iterator keeps
                    pool.submit(offset, frames, copy=False)
                else:
                    local = tuple(
                        slice(int(b.start) - int(p.start), int(b.stop) - int(p.start))
                        for b, p in zip(block, part, strict=True)
                    )
                    frames = data[local]
                    pool.submit(offset, frames)
                handed += int(frames.nbytes)
        return handed

    def _chunk_blocks(self, part: Selection, open_end: bool = False) -> list[Selection] | None:
        """``part`` cut into the selections of whole chunks (edge chunks of the frame
        included; with ``open_end``, the last chunk row may end inside its chunks), or None if
        it starts or ends inside a chunk."""
        chunks = self._chunks
        for axis, (s, c, limit) in enumerate(zip(part, chunks, self._limits, strict=True)):
            open_stop = open_end and axis == 0
            if s.start % c or (s.stop % c and s.stop != limit and not open_stop):
                return None
        ranges = [range(int(s.start), int(s.stop), c) for s, c in zip(part, chunks, strict=True)]
        return [
            tuple(
                slice(o, min(o + c, int(s.stop)))
                for o, s, c in zip(offset, part, chunks, strict=True)
            )
            for offset in itertools.product(*ranges)
        ]

    def _chunk_written(self, offset: tuple[int, ...], shape: tuple[int, ...], nbytes: int) -> None:
        """The pool wrote a chunk (in the order handed over): count it; a part whose chunks
        are all written is written."""
        self.bytes_written += nbytes
        entry = self._in_pool[0]
        entry[1] -= 1
        if entry[1] == 0:
            self._written.append(self._in_pool.popleft()[0])

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
