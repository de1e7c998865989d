"""ChunkSource: follow datasets that have no key datasets, one HDF5 chunk of frames at a time.

Contract
--------
- The datasets are stacks chunked along their first axis only: each chunk holds
  ``chunk_size`` whole frames (every other chunk dim equals the dataset's).
- Without keys, a chunk is known complete when the writer has moved past it: the next chunk is
  allocated, or the writer is done: the finished dataset is set, or the writer has closed the
  file (its superblock no longer marks it open for writing). Then every chunk counts, the last
  one cut at the dataset's length. A chunk that is only partly written is never delivered.
  When following stops on the idle timeout while the file is still marked open for writing
  (a writer that hangs or was killed) and there is no finished flag, the last chunk cannot be
  known complete: it is withheld, with a warning.
- Progress is tracked by a :class:`h5live.KeyFollower` over one *chunk progress* view per
  dataset (frame ``i`` reads 1 once its chunk is complete), so waiting, pacing, the timeout and
  the race-safe finished flag behave exactly as for key datasets.
- Chunks are read with ``read_direct_chunk`` and decoded in Python where that is faster, else
  through h5py, so any filter h5py can decode works.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from h5live._closing import ClosingContext
from h5live._follow.follower import FollowPolicy, KeyFollower
from h5live._follow.keys import dataset_label, refresh_dataset
from h5live._read.direct import DirectChunkReader, direct_chunk_reader
from h5live._read.reader import SliceDict, read_selection
from h5live._source.recover import writer_flags
from h5live._source.spec import Clock, Sleep

__all__ = ["ChunkSource"]

logger = logging.getLogger(__name__)


class _ChunkProgress:
    """A key-like view of a dataset without keys: 1 for frames whose chunk is complete.

    Has what :class:`h5live.KeyFollower` reads from a key: ``shape``, ``maxshape``, ``chunks``,
    ``dtype``, ``refresh()`` and ``__getitem__`` of a flat range.
    """

    def __init__(self, dataset: Any, chunk_size: int, finished: Callable[[], bool]) -> None:
        self.dataset = dataset
        # Chunks allocated at creation exist before they are written: only "done" tells.
        self.early = dataset.id.get_create_plist().get_alloc_time() == h5py.h5d.ALLOC_TIME_EARLY
        self.file = dataset.file
        self.name = f"{dataset.name} (chunk progress)"
        self.chunk_size = chunk_size
        self.chunks = (chunk_size,)
        self.dtype = np.dtype(np.uint8)
        self.maxshape = (dataset.maxshape[0],)
        self.shape = (int(dataset.shape[0]),)
        self._finished = finished
        self._tail = (0,) * (len(dataset.shape) - 1)
        self._complete = 0  # chunks 0 .. _complete - 1 are known complete

    def refresh(self) -> None:
        refresh_dataset(self.dataset)
        self.shape = (int(self.dataset.shape[0]),)

    def _allocated(self, chunk: int) -> bool:
        """Whether ``chunk`` exists in the file.

        ``read_direct_chunk`` answers in constant time; ``get_chunk_info_by_coord`` walks the
        chunk index (about 1.7 ms at 10,000 chunks with HDF5 2.0). The price is reading the
        chunk's bytes once, only when the dataset's extent already reaches it.
        """
        start = chunk * self.chunk_size
        if start >= self.shape[0]:
            return False
        try:
            self.dataset.id.read_direct_chunk((start, *self._tail))
        # Not allocated (yet). h5py raises MemoryError when HDF5 reports a size of 0 bytes.
        except (RuntimeError, OSError, ValueError, MemoryError):
            return False
        return True

    def _is_complete(self, chunk: int) -> bool:
        """Chunk ``chunk`` is complete once the writer has begun the next one; once the writer
        is done, every chunk it wrote is (an aborted scan leaves later chunks unwritten)."""
        if chunk < self._complete:
            return True
        done = self._finished()
        moved_on = not done and not self.early and self._allocated(chunk + 1)
        # the writer's close is read (from the superblock) only when it is what decides
        if moved_on or (self._allocated(chunk) and (done or self._writer_closed())):
            self._complete = chunk + 1
            return True
        return False

    def _writer_closed(self) -> bool:
        """Whether no writer has the file open: its superblock's write flags are clear."""
        try:
            return writer_flags(self.file.filename) == 0
        except (OSError, ValueError, AttributeError):  # not a plain HDF5 file on disk
            return False

    def __getitem__(self, selection: Any) -> npt.NDArray[np.uint8]:
        flat = selection[0] if isinstance(selection, tuple) else selection
        lo, hi, _ = flat.indices(self.shape[0])
        n = self.chunk_size
        first, last = lo // n, (hi - 1) // n
        values = np.zeros(hi - lo, dtype=np.uint8)
        for chunk in range(first, last + 1):
            if not self._is_complete(chunk):
                break
            values[max(chunk * n, lo) - lo : min((chunk + 1) * n, hi) - lo] = 1
        return values


class ChunkSource(ClosingContext):
    """Iterate over the complete chunks of datasets that have no keys.

    A drop-in for ``swmr_tools.ChunkSource`` with its bugs fixed: ``slice_metadata`` is a
    correct tuple, a partly written chunk is never delivered, growing (unlimited) datasets
    work, and any filter h5py can decode works.

    Parameters
    ----------
    datasets
        Name -> dataset; stacks of frames chunked along the first axis only, all with the same
        chunk length.
    timeout
        Idle timeout in seconds (``None``: wait for the finished flag).
    finished_dataset
        Optional one-element dataset, non-zero once the file is complete. Without it, the last
        chunk is delivered once the writer has closed the file, and withheld if it stops
        without closing it (see the module docstring).
    use_direct_chunk
        Decode chunks in Python where that is faster (default), else read through h5py.
    policy, clock, sleep
        As for :class:`h5live.KeyFollower`.

    Raises
    ------
    ValueError
        No datasets, a dataset chunked along a frame dim, or differing chunk lengths.
    """

    def __init__(
        self,
        datasets: Mapping[str, Any],
        timeout: float | None = 10,
        finished_dataset: Any | None = None,
        *,
        use_direct_chunk: bool = True,
        policy: FollowPolicy | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not datasets:
            raise ValueError("no datasets given. Fix: pass {name: dataset} to follow.")
        self._datasets = dict(datasets)
        self._check_datasets()
        first = next(iter(self._datasets.values()))
        self.chunk_size: int = int(first.chunks[0])
        self.finished_dataset = finished_dataset
        self.timeout = timeout
        fixed = [int(d.maxshape[0]) for d in self._datasets.values() if d.maxshape[0] is not None]
        self.max_size: int | None = min(fixed) if fixed else None
        self.current_index = 0
        # A file opened without SWMR mode cannot be growing (a writer would hold its lock).
        self._static = getattr(first.file, "swmr_mode", True) is False
        self._check_allocation(finished_dataset)
        self._progress = [
            _ChunkProgress(d, self.chunk_size, self._finished_seen) for d in self._datasets.values()
        ]
        self.kf = KeyFollower(
            self._progress, timeout, finished_dataset, policy=policy, clock=clock, sleep=sleep
        )
        self._direct: dict[str, DirectChunkReader | None] = {
            name: direct_chunk_reader(d) if use_direct_chunk else None
            for name, d in self._datasets.items()
        }
        self._warned = False

    def _finished_seen(self) -> bool:
        """Whether the writer is done: the finished flag was seen, or nothing can be writing."""
        return self._static or bool(getattr(self, "kf", None) is not None and self.kf.finished_set)

    def _check_allocation(self, finished_dataset: Any | None) -> None:
        """Refuse datasets whose chunks exist before they are written, unless done is known."""
        for name, d in self._datasets.items():
            early = d.id.get_create_plist().get_alloc_time() == h5py.h5d.ALLOC_TIME_EARLY
            if early and finished_dataset is None and not self._static:
                filename, path = dataset_label(d)
                raise ValueError(
                    f"dataset {name!r} ({path!r} in {filename!r}) allocates all its chunks when "
                    "it is created (early allocation, as parallel HDF5 does), so a chunk's "
                    "existence does not show that it was written. Fix: pass the writer's "
                    "finished dataset (chunks are then delivered when the scan is finished), "
                    "or follow the file with key datasets (DataSource)."
                )
            if early:
                logger.info(
                    "%s: chunks are allocated early; they are delivered once the file is finished",
                    name,
                )

    def _check_datasets(self) -> None:
        lengths = set()
        for name, d in self._datasets.items():
            filename, path = dataset_label(d)
            shape, chunks = tuple(d.shape), d.chunks
            if chunks is None or not shape or tuple(chunks[1:]) != shape[1:]:
                raise ValueError(
                    f"dataset {name!r} ({path!r} in {filename!r}) has shape {shape} and chunks "
                    f"{chunks}; ChunkSource needs chunks that hold whole frames (every chunk "
                    "dim but the first equal to the shape). Fix: use DataSource with key "
                    "datasets, or have the writer chunk by whole frames."
                )
            lengths.add(int(chunks[0]))
        if len(lengths) > 1:
            raise ValueError(
                f"the datasets have different chunk lengths {sorted(lengths)} along the first "
                "axis. Fix: follow datasets with equal chunk lengths together, others apart."
            )

    @property
    def finished_set(self) -> bool:
        """Whether the finished dataset was seen set."""
        return self.kf.finished_set

    @property
    def timed_out(self) -> bool:
        """Whether following stopped on the idle timeout."""
        return self.kf.timed_out

    def __iter__(self) -> ChunkSource:
        return self

    def __next__(self) -> SliceDict:
        start = self.current_index * self.chunk_size
        stop = start + self.chunk_size
        if self.max_size is not None:
            stop = min(stop, self.max_size)
        if self._static:  # nothing can be writing: what is there now is all there is
            self.kf.poll()
            ready = start < stop and self.kf.current_max >= stop - 1
        else:
            ready = start < stop and self.kf.wait_for(stop - 1)
        if not ready:
            if self.kf.current_max < start:
                self._warn_withheld(start)
                raise StopIteration
            stop = self.kf.current_max + 1  # the last chunk, cut at the dataset's length
        output = SliceDict()
        output.index = start
        output.stop = stop
        output.slice_metadata = (slice(start, stop),)
        output.maxshape = (self.max_size,)
        for name, dataset in self._datasets.items():
            output[name] = self._read_chunk(name, dataset, start, stop)
        self.current_index += 1
        self.kf.current_key = stop - 1
        return output

    def _read_chunk(self, name: str, dataset: Any, start: int, stop: int) -> npt.NDArray[Any]:
        direct = self._direct[name]
        if direct is not None:
            chunk = np.empty(direct.chunk_shape, dtype=direct.dtype)
            offset = (start,) + (0,) * (len(direct.chunk_shape) - 1)
            if direct.read_into(offset, chunk):
                return chunk[: stop - start]
        return read_selection(dataset, slice(start, stop), start, stop)

    def _warn_withheld(self, start: int) -> None:
        if self._warned or self.kf.stop_reason != "timeout":
            return
        self._warned = True
        length = min(int(d.shape[0]) for d in self._datasets.values())
        if length > start:
            logger.warning(
                "%s: stopped on the %s s timeout; frames %d..%d are in a chunk that could not be "
                "known complete (no later chunk, no finished flag, and the file is still marked "
                "open by a writer) and were not delivered. Fix: give the writer's finished "
                "dataset as finished_dataset, or have the writer close the file.",
                dataset_label(next(iter(self._datasets.values())))[0],
                self.timeout,
                start,
                length - 1,
            )

    def reset(self) -> None:
        """Start again from the first chunk."""
        self.current_index = 0
        self.kf.reset()

    def close(self) -> None:
        """Stop following. Idempotent."""
        self.kf.close()

    def __repr__(self) -> str:
        filename = os.path.basename(dataset_label(next(iter(self._datasets.values())))[0])
        return (
            f"<ChunkSource {filename!r} datasets={sorted(self._datasets)} "
            f"chunk_size={self.chunk_size} chunks_delivered={self.current_index} "
            f"frontier={self.kf.current_max}>"
        )
