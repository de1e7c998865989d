"""A bounded pool of threads that encodes a dataset's chunks, written in order by the caller.

Contract
--------
- :class:`ParallelChunkWriter` takes chunks (``submit(offset, data)``) in the order they are
  to be written, encodes them in ``workers`` threads with a
  :class:`~h5live._write.encode.ChunkEncoder` (zlib, the plugins' compression libraries and
  numpy release the GIL), and writes each with
  ``dataset.id.write_direct_chunk(offset, data, filter_mask)`` strictly in submission order,
  from the thread that calls it: every h5py call is the caller's (h5py writes are not
  thread-safe); workers touch only arrays.
- Memory is bounded: at most ``max_in_flight`` chunks (default twice the workers) are
  submitted and not yet written; ``submit`` writes the oldest (waiting for it) before it
  takes another. Chunks already encoded are written at every ``submit`` and by
  :meth:`~ParallelChunkWriter.write_ready`, which never waits; :meth:`~ParallelChunkWriter.flush`
  waits for every chunk submitted and writes it (idempotent).
- With ``extend`` (the default) the dataset is grown to cover a chunk's data just before
  that chunk is written, never earlier, so its extent covers only written data.
- A failure (a worker's exception, ``write_direct_chunk``'s, ``before_write``'s) is raised
  in the caller as :class:`~h5live.errors.OutputError` naming the dataset, file and chunk,
  chained to the cause: the chunks before it are written, it and every chunk after it are
  not, the pool is shut down and the writer refuses more work. ``KeyboardInterrupt`` is left
  as it is; :meth:`~ParallelChunkWriter.abort` (the context manager on an exception) drops
  what is in flight without waiting for running encodes, so Ctrl-C stops at once.
- The encoding threads run ``ENCODE_NICENESS`` nicer than the process (Linux: per thread):
  they take the cores nobody else needs, so a detector writer on the same machine keeps its
  speed (measured: an unthrottled 512x512 writer converted live to gzip-1 NWB ran at 0.66x its
  speed alone with the threads at the process's priority, 0.86x with them nicer, the
  conversion as fast).
- :meth:`~ParallelChunkWriter.close` flushes and shuts the pool down (idempotent; after a
  failure it only shuts down). ``stats`` counts chunks, bytes, encode time (wall and CPU,
  summed over workers), write time and the caller's waits, for benchmarks and progress.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

import numpy as np

from h5live._write.encode import Bytes, ChunkEncoder
from h5live.errors import OutputError

__all__ = ["ParallelChunkWriter", "WriteStats", "check_workers", "default_workers"]

logger = logging.getLogger(__name__)

Offset = tuple[int, ...]


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


#: How much nicer than the rest of the process the encoding threads run (Linux: per thread).
ENCODE_NICENESS = 10


def yield_to_others() -> None:
    """Make the calling thread yield the CPU to other work (``ENCODE_NICENESS`` more nice).

    The encoding threads use the cores nobody else needs: on a machine the converter shares
    with the detector's writer, the writer keeps its speed and the encoding takes what is
    left. Where a thread's priority cannot be set (not Linux), nothing changes.
    """
    try:
        thread = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, nice + ENCODE_NICENESS))
    except (AttributeError, OSError):  # pragma: no cover - platform dependent
        pass


def check_workers(workers: Any, where: str) -> int | None:
    """``workers`` as an int (``None`` stays None: one per core), or a ValueError naming
    ``where`` (the destination) and the fix."""
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 0:
        raise ValueError(
            f"workers={workers!r} for {where}: it must be a whole number >= 0 (the threads that "
            "encode compressed chunks; 0: HDF5's filter pipeline encodes them). Fix: pass "
            "workers=None (--workers unset) for one per core, or a count such as 2."
        )
    return int(workers)


@dataclass
class WriteStats:
    """What a :class:`ParallelChunkWriter` has done so far."""

    chunks: int = 0  #: chunks written
    bytes_in: int = 0  #: bytes of those chunks before encoding (whole chunks)
    bytes_out: int = 0  #: bytes stored
    encode_s: float = 0.0  #: wall time of the encodes, summed over workers
    encode_cpu_s: float = 0.0  #: CPU time of the encodes (thread time), summed over workers
    write_s: float = 0.0  #: time in ``write_direct_chunk`` (and extending), in the caller
    wait_s: float = 0.0  #: time the caller waited for a worker
    peak_in_flight: int = 0  #: most chunks submitted and not yet written at once


class _Encoded(NamedTuple):
    mask: int
    data: Bytes
    seconds: float
    cpu_seconds: float


@dataclass
class _Pending:
    offset: Offset
    shape: tuple[int, ...]  # of the data inside the extent (an edge chunk's is smaller)
    future: concurrent.futures.Future[_Encoded]


class ParallelChunkWriter:
    """Encodes chunks of ``dataset`` in a pool of threads and writes them in order.

    Parameters
    ----------
    dataset : h5py.Dataset
        The chunked destination, open for writing.
    workers : int, optional
        Encoding threads; default :func:`default_workers` (the cores this process may use).
    max_in_flight : int, optional
        Chunks submitted and not yet written, at most; default ``2 * workers``.
    encoder : ChunkEncoder, optional
        Default ``ChunkEncoder.for_dataset(dataset)``.
    extend : bool
        Grow the dataset to cover each chunk's data just before writing it.
    before_write : callable, optional
        Called with the number of bytes about to be stored, before each write (a free space
        check may raise there).
    after_write : callable, optional
        Called with the chunk's offset, the shape of its data and the bytes stored, after
        each write (progress bookkeeping).

    Raises
    ------
    DirectWriteError
        From ``ChunkEncoder.for_dataset``: the dataset's filters cannot be encoded here
        (write it through HDF5's pipeline instead).
    ValueError
        ``workers`` or ``max_in_flight`` below 1.

    Examples
    --------
    >>> with ParallelChunkWriter(dataset, workers=2) as writer:  # doctest: +SKIP
    ...     for start in range(0, frames.shape[0], 8):
    ...         writer.submit((start, 0, 0), frames[start : start + 8])
    """

    def __init__(
        self,
        dataset: Any,
        *,
        workers: int | None = None,
        max_in_flight: int | None = None,
        encoder: ChunkEncoder | None = None,
        extend: bool = True,
        before_write: Callable[[int], None] | None = None,
        after_write: Callable[[Offset, tuple[int, ...], int], None] | None = None,
    ) -> None:
        self.dataset = dataset
        self.encoder = encoder if encoder is not None else ChunkEncoder.for_dataset(dataset)
        self.workers = default_workers() if workers is None else int(workers)
        self.max_in_flight = 2 * self.workers if max_in_flight is None else int(max_in_flight)
        if self.workers < 1 or self.max_in_flight < 1:
            raise ValueError(
                f"workers={self.workers} and max_in_flight={self.max_in_flight} for "
                f"{self._where()}: both must be at least 1. Fix: pass workers=None for one "
                "per core."
            )
        self.extend = extend
        self.before_write = before_write
        self.after_write = after_write
        self.stats = WriteStats()
        self._extent = [int(n) for n in dataset.shape]
        self._pending: collections.deque[_Pending] = collections.deque()
        self._failure: BaseException | None = None
        self._closed = False
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.workers, thread_name_prefix="h5live-encode", initializer=yield_to_others
        )

    # ------------------------------------------------------------------ public

    @property
    def in_flight(self) -> int:
        """Chunks submitted and not yet written."""
        return len(self._pending)

    @property
    def failed(self) -> BaseException | None:
        """The cause of the failure that stopped the writer, if any."""
        return self._failure

    def submit(self, offset: Sequence[int], data: Any, *, copy: bool = True) -> int:
        """Hand over the chunk at ``offset`` (chunk-aligned) holding ``data`` (the part of the
        chunk inside the dataset's extent, an edge chunk's smaller); the number of chunks
        written meanwhile.

        ``copy=False`` lets the writer keep ``data`` itself when it is already a whole
        C-ordered chunk of the dataset's dtype: do not change it until it is written.

        Raises
        ------
        OutputError
            A chunk could not be encoded or written (see the class notes); also on a writer
            that failed before.
        ValueError
            ``offset`` is not a chunk's, or ``data`` does not fit its chunk.
        """
        self._check_usable()
        start = self._check_offset(offset)
        written = 0
        while len(self._pending) >= self.max_in_flight:  # room first: the memory bound
            written += self._write_oldest()
        chunk = self.encoder.prepare(data, copy=copy)
        shape = tuple(int(n) for n in np.shape(data))
        future = self._pool.submit(self._encode, chunk)
        self._pending.append(_Pending(start, shape, future))
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, len(self._pending))
        return written + self.write_ready()

    def write_ready(self) -> int:
        """Write the chunks whose encoding is done, in order, without waiting; how many."""
        written = 0
        while self._pending and self._pending[0].future.done():
            written += self._write_oldest()
        return written

    def flush(self) -> int:
        """Wait for every chunk submitted and write it; how many were written.

        Raises
        ------
        OutputError
            As :meth:`submit`.
        """
        if self._failure is not None:
            self._raise_failed()
        written = 0
        while self._pending:
            written += self._write_oldest()
        return written

    def close(self) -> None:
        """Write what is in flight and stop the workers (idempotent; after a failure or
        :meth:`abort`, only the latter)."""
        if self._closed:
            return
        try:
            if self._failure is None:
                self.flush()
        finally:
            self._closed = True
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Drop the chunks in flight (never written) and stop the workers without waiting
        for running encodes (idempotent)."""
        dropped = len(self._pending)
        for item in self._pending:
            item.future.cancel()
        self._pending.clear()
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=False, cancel_futures=True)
            if dropped:
                logger.info("%s: %d chunks in flight dropped", self._where(), dropped)

    def __enter__(self) -> ParallelChunkWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        state = "failed" if self._failure else "closed" if self._closed else "open"
        return (
            f"<ParallelChunkWriter {self.encoder.name!r} in "
            f"{os.path.basename(self.encoder.filename)!r} workers={self.workers} "
            f"in_flight={len(self._pending)}/{self.max_in_flight} "
            f"written={self.stats.chunks} {state}>"
        )

    # ------------------------------------------------------------------ internals

    def _where(self) -> str:
        return f"{self.encoder.name!r} in {self.encoder.filename!r}"

    def _encode(self, chunk: Any) -> _Encoded:  # in a worker thread: no HDF5 here
        wall, cpu = time.perf_counter(), time.thread_time()
        mask, data = self.encoder.encode(chunk)
        return _Encoded(mask, data, time.perf_counter() - wall, time.thread_time() - cpu)

    def _check_usable(self) -> None:
        if self._failure is not None:
            self._raise_failed()
        if self._closed:
            raise ValueError(f"the chunk writer of {self._where()} is closed. Fix: make a new one.")

    def _raise_failed(self) -> NoReturn:
        raise OutputError(
            f"the chunk writer of {self._where()} failed earlier "
            f"({type(self._failure).__name__}: {self._failure}); nothing more is written. "
            "Fix: resume the conversion once the cause is fixed."
        ) from self._failure

    def _check_offset(self, offset: Sequence[int]) -> Offset:
        start = tuple(int(n) for n in offset)
        chunks = self.encoder.chunks
        if len(start) != len(chunks) or any(
            n < 0 or n % c for n, c in zip(start, chunks, strict=True)
        ):
            raise ValueError(
                f"offset {tuple(offset)!r} is not the start of a chunk {chunks} of "
                f"{self._where()}. Fix: pass multiples of the chunk shape."
            )
        return start

    def _write_oldest(self) -> int:
        item = self._pending[0]
        if not item.future.done():
            waited = time.perf_counter()
            concurrent.futures.wait([item.future])  # KeyboardInterrupt leaves it pending
            self.stats.wait_s += time.perf_counter() - waited
        self._pending.popleft()
        try:
            encoded = item.future.result()
        except Exception as exc:
            self._fail(exc, item, "encoding")
        try:
            nbytes = int(encoded.data.nbytes)
            if self.before_write is not None:
                self.before_write(nbytes)
            started = time.perf_counter()
            if self.extend:
                self._grow(item)
            self.dataset.id.write_direct_chunk(item.offset, encoded.data, encoded.mask)
            self.stats.write_s += time.perf_counter() - started
        except Exception as exc:
            self._fail(exc, item, "writing")
        stats = self.stats
        stats.chunks += 1
        stats.bytes_in += self.encoder.chunk_nbytes
        stats.bytes_out += nbytes
        stats.encode_s += encoded.seconds
        stats.encode_cpu_s += encoded.cpu_seconds
        if self.after_write is not None:
            self.after_write(item.offset, item.shape, nbytes)
        return 1

    def _grow(self, item: _Pending) -> None:
        needed = [
            max(n, o + s) for n, o, s in zip(self._extent, item.offset, item.shape, strict=True)
        ]
        if needed != self._extent:
            self.dataset.id.extend(tuple(needed))
            self._extent = needed

    def _fail(self, exc: Exception, item: _Pending, doing: str) -> NoReturn:
        self._failure = exc
        self.abort()
        if isinstance(exc, OutputError):  # before_write's own (e.g. no space): as it is
            raise exc
        raise OutputError(
            f"{doing} the chunk at {item.offset} of {self._where()} failed "
            f"({type(exc).__name__}: {exc}); the chunks before it are written, none after it. "
            "Fix: resume the conversion once the cause is fixed; if it fails again, write "
            "this dataset through HDF5's filter pipeline and report the error."
        ) from exc
