"""LiveDataChunkIterator: hdmf's GenericDataChunkIterator over a live source.

Contract
--------
- The source is a dataset whose first ``scan_rank`` dims are the scan (as its keys'); the rest
  are the frame. Buffers are selections on the destination's chunk grid, in hdmf's order (the
  first axis slowest), each released only once the frontier covers its last frame.
- Known final length (fixed key ``maxshape``, or ``final_scan_shape``): ``maxshape`` is the
  final shape. Unknown length: ``maxshape`` is ``None`` on the first axis and
  ``recommended_data_shape()`` is the complete length so far; buffers are produced lazily until
  the follower stops; the last ones are the complete part of the tail.
- With explicit ``chunk_shape`` and ``buffer_shape`` over a complete source, selections, shapes
  and data are those of a GenericDataChunkIterator over the same array. Without them, chunks
  are whole frames sized by ``chunk_mb`` (at most ``LIVE_CHUNK_FRAMES`` frames while the length
  is unknown) and buffers whole chunks sized by ``buffer_gb``; a ``chunk_mb`` given that is
  smaller than one frame gets hdmf's own chunk shape. Option errors are hdmf's (texts, and
  ``AssertionError`` as well as ``ValueError``).
- The scan rank is the keys' (trailing size-1 key dims dropped); a scan of one frame (keys of
  shape ``(1,)``) is a stack of one frame, scan rank 1.
- The waiting happens in the selection generator *and* in ``_get_data``, so a consumer that
  walks ``buffer_selection_generator`` and reads in other processes still never reads
  incomplete frames. Pickling (``_to_dict``/``_from_dict``) carries a recipe that reopens the
  file, never an open file.
- Latency (``max_latency_s``): the complete scan rows at the start of a buffer are released
  once its oldest complete frame has waited ``max_latency_s`` less the recent cost of a release
  (reading and writing it: the time until the consumer asks again, at most half the bound), so
  a selection may end inside a chunk; a chunk is then written in parts. ``None``: buffers are
  released whole, on chunk boundaries.
- Stops: once the follower stops (finished, complete, or idle timeout: ``stop_reason``) and
  every complete frame was handed out; ``strict=True`` raises ``FollowTimeout`` on a timeout.
  Frames that never completed are never handed out, so no fill value passes for data.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from hdmf.data_utils import DataChunk, GenericDataChunkIterator

from h5live._follow.follower import FollowPolicy, KeyFollower, _caller_stacklevel
from h5live._follow.keys import dataset_label
from h5live._iterate.schedule import (
    Selection,
    complete_scan_rows,
    first_frame,
    last_frame,
    next_release_cost,
    prefix_boxes,
    release_budget,
    tiles,
    with_frames,
)
from h5live._iterate.shapes import chunk_buffer_shape, frame_chunk_shape, hdmf_chunk_shape
from h5live._read.reader import FrameReader, read_selection
from h5live._source.spec import Clock, Sleep, SourceSpec, get_dataset, source_path
from h5live._stages import Stage, StageChain
from h5live.errors import FollowTimeout, H5LiveWarning, IteratorOptionError, ScanShapeError

__all__ = [
    "LiveDataChunkIterator",
    "SourceChunk",
    "hdmf_chunk_shape",
    "iterator_scan_rank",
]

logger = logging.getLogger(__name__)


def iterator_scan_rank(follower: KeyFollower, dataset: Any) -> int:
    """The scan rank of the frames' dataset: its keys', but 1 for a scan of one frame.

    Keys whose dims are all 1 (shape ``(1,)``, ``(1, 1)``) have scan rank 0 as swmr_tools counts
    (trailing size-1 dims dropped); their data is a stack of one frame, ``(1, *frame)``, whose
    first axis is the scan's.

    Raises
    ------
    ScanShapeError
        A scan of one frame whose data does not start with a size-1 axis.
    """
    if follower.scan_rank > 0:
        return follower.scan_rank
    shape = tuple(int(n) for n in dataset.shape)
    if shape and shape[0] == 1:
        return 1
    key = follower.key_datasets[0]
    filename, path = dataset_label(dataset)
    raise ScanShapeError(
        f"the keys ({dataset_label(key)[1]!r}, shape {tuple(key.shape)}) describe a scan of one "
        f"frame, but dataset {path!r} in {filename!r} has shape {shape}, which does not start "
        "with a size-1 scan axis. Fix: write the frame as a stack of one, shape (1, *frame), "
        "or pass keys shaped like the data's scan dims."
    )


class SourceChunk(DataChunk):  # type: ignore[misc]
    """A DataChunk of complete frames of a live source, read when its ``data`` is first used.

    What :meth:`LiveDataChunkIterator.next_chunk` hands out with ``lazy=True``: a writer that
    can copy the source's stored chunks as they are (same chunks, filters and dtype) reads
    ``stored`` instead of decoding ``data``, and one that writes it in parts reads only them
    (:meth:`read`). Its frames are complete and refreshed when it is handed out; read it
    before asking the iterator for the next chunk (the iterator reuses its buffer).
    """

    def __init__(self, iterator: LiveDataChunkIterator, selection: Selection) -> None:
        self._iterator = iterator
        self._data: npt.NDArray[Any] | None = None
        super().__init__(data=None, selection=selection)

    @property
    def data(self) -> npt.NDArray[Any]:
        if self._data is None:
            self._data = self.read(self.selection)
        return self._data

    @data.setter
    def data(self, value: npt.NDArray[Any] | None) -> None:
        self._data = value

    @property
    def is_read(self) -> bool:
        """Whether ``data`` has been read."""
        return self._data is not None

    @property
    def stored(self) -> Any | None:
        """The source dataset whose stored chunks hold these frames as they are, or None
        (processing stages change them)."""
        return None if self._iterator.stages else self._iterator.dataset

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._iterator.dtype  # type: ignore[no-any-return]

    def read(self, part: Selection) -> npt.NDArray[Any]:
        """The frames of ``part``, in the dataset's coordinates: a selection inside this
        chunk's, or of frames before it (complete, as every frame handed out earlier)."""
        return self._iterator._read_ready(part)


class LiveDataChunkIterator(GenericDataChunkIterator):  # type: ignore[misc]
    """A GenericDataChunkIterator that reads a live source, frame-complete and chunk-aligned.

    Parameters
    ----------
    source
        An h5py dataset in a file opened for SWMR reading, or the path of the file (then
        ``dataset_path`` is required and the iterator opens and closes the file).
    dataset_path
        The frames' dataset, when ``source`` is a path.
    key_paths, finished_path
        Key and finished datasets; ``None``: the known layouts (see :class:`h5live.SourceSpec`).
    follower
        A :class:`h5live.KeyFollower` to share (e.g. between the frames' and the timestamps'
        iterators); its timeout and policy then apply.
    buffer_gb, buffer_shape, chunk_mb, chunk_shape
        As for hdmf's GenericDataChunkIterator, except that ``chunk_mb`` gives chunks of whole
        frames (as many as fit) unless one frame is larger than it.
    display_progress, progress_bar_class, progress_bar_options
        As for hdmf's GenericDataChunkIterator, except that a ``total`` in
        ``progress_bar_options`` is ignored with hdmf's warning (the total is in frames).
    timeout
        Idle timeout in seconds (``None``: wait for the finished flag).
    poll_interval_s
        Poll the keys at most this often while waiting.
    final_scan_shape
        The scan shape the writer will reach, when it is known but the keys can grow.
    max_latency_s
        Release the complete scan rows (along the first axis: frames of a stack) at the start
        of a buffer once its oldest complete frame has waited this long, less what the last
        releases took to read and write (at most half of it), without waiting for the rest of
        the buffer or of a chunk: a consumer holds every complete frame within about
        ``max_latency_s`` whatever the frame size and rate, at the cost of writing a chunk
        that fills slower than that more than once (about chunk fill time / ``max_latency_s``
        times). ``None``: whole buffers only, on chunk boundaries (each chunk written once).
        The default, 1 s, makes the simplest ``H5DataIO(LiveDataChunkIterator(...))`` write
        live; over a finished source every buffer is complete at once, so it changes nothing.
    start_row
        Hand out rows from this one on (along the first axis; a multiple of the chunk rows),
        e.g. to resume a conversion whose destination already holds the rows before it.
    strict
        Raise ``FollowTimeout`` when the writer goes idle, and errors on key regressions.
    open_timeout_s
        How long to wait for the file and its datasets, when ``source`` is a path.
    stages
        Processing stages (:class:`h5live.Stage`, e.g. ``h5live.sum_frames()``) applied to each
        buffer of complete frames: the iterator hands out their output, whose frame shape and
        dtype it declares (``frame_shape``, ``dtype``) before any data is read. Chunks and
        buffers then span whole frames.

    Attributes
    ----------
    dataset
        The frames' h5py dataset (its ``file`` is the open source file).
    follower
        The :class:`h5live.KeyFollower`; pass it to another iterator over the same file (e.g.
        the timestamps'), since a dataset must not be open twice in a process.
    frames_done
        Frames handed out so far.
    start_frame
        The first frame handed out (the frames before ``start_row``).

    Raises
    ------
    IteratorOptionError
        Invalid ``buffer_gb``, ``buffer_shape``, ``chunk_mb`` or ``chunk_shape``, with hdmf's
        texts; a ``ValueError`` and an ``AssertionError`` (as hdmf raises), so code written
        against either catches it.
    ValueError
        Invalid h5live options (``max_latency_s``, ``start_row``, ...).
    ScanShapeError
        Keys of a scan of one frame beside data without a size-1 scan axis.
    DuplicateHandleError
        A dataset it would refresh is open twice in this process (see ``h5live._source.handles``).
    """

    def __init__(
        self,
        source: Any,
        dataset_path: str | None = None,
        *,
        key_paths: Sequence[str] | None = None,
        finished_path: str | None = None,
        follower: KeyFollower | None = None,
        buffer_gb: float | None = None,
        buffer_shape: tuple[int, ...] | None = None,
        chunk_mb: float | None = None,
        chunk_shape: tuple[int, ...] | None = None,
        display_progress: bool = False,
        progress_bar_class: Callable[..., Any] | None = None,
        progress_bar_options: dict[str, Any] | None = None,
        timeout: float | None = 10.0,
        poll_interval_s: float = 0.001,
        final_scan_shape: Sequence[int] | None = None,
        max_latency_s: float | None = 1.0,
        start_row: int = 0,
        strict: bool = False,
        open_timeout_s: float = 10.0,
        stages: Sequence[Stage] | Stage | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        _parked: bool = False,
    ) -> None:
        self._options: dict[str, Any] = {
            "buffer_gb": buffer_gb,
            "buffer_shape": buffer_shape,
            "chunk_mb": chunk_mb,
            "chunk_shape": chunk_shape,
            "timeout": timeout,
            "poll_interval_s": poll_interval_s,
            "final_scan_shape": None if final_scan_shape is None else tuple(final_scan_shape),
            "max_latency_s": max_latency_s,
            "start_row": start_row,
            "strict": strict,
            "open_timeout_s": open_timeout_s,
            "stages": stages,
        }
        if max_latency_s is not None and not (max_latency_s >= 0 and math.isfinite(max_latency_s)):
            raise ValueError(
                f"max_latency_s must be None or a finite number of seconds >= 0, got "
                f"{max_latency_s!r}. Fix: pass how long a complete frame may wait for the rest "
                "of its buffer, e.g. 1.0."
            )
        self._clock = clock
        self._sleep = sleep
        self._file: Any | None = None
        self._own_follower = follower is None
        self._parked = False
        try:
            self._open(source, dataset_path, key_paths, finished_path, follower, poll=not _parked)
            self._build(
                (buffer_gb, buffer_shape, chunk_mb, chunk_shape),
                display_progress,
                progress_bar_class,
                progress_bar_options,
            )
        except BaseException:
            self.close()  # a refused iterator leaves no file or handle open
            raise
        if _parked:
            self._park()

    def _build(
        self,
        shapes: tuple[Any, Any, Any, Any],
        display_progress: bool,
        progress_bar_class: Callable[..., Any] | None,
        progress_bar_options: dict[str, Any] | None,
    ) -> None:
        """Choose the shapes, build the parent, start the progress bar and the selections."""
        buffer_gb, buffer_shape, chunk_mb, chunk_shape = shapes
        self._live = False  # until the parent is built: it needs integer maxshape axes
        chunk_mb_given = chunk_mb is not None
        if buffer_gb is None and buffer_shape is None:
            buffer_gb = 1.0
        if chunk_mb is None and chunk_shape is None:
            chunk_mb = 10.0
        # hdmf's own checks and texts (hdmf asserts them), before any shape is chosen here
        if (buffer_gb is not None) == (buffer_shape is not None):
            raise IteratorOptionError("Only one of 'buffer_gb' or 'buffer_shape' can be specified!")
        if (chunk_mb is not None) == (chunk_shape is not None):
            raise IteratorOptionError("Only one of 'chunk_mb' or 'chunk_shape' can be specified!")
        if chunk_shape is not None:
            chunk_shape = tuple(int(n) for n in chunk_shape)
            if not all(n > 0 for n in chunk_shape):
                raise IteratorOptionError(
                    f"Some dimensions of chunk_shape ({chunk_shape}) are less than zero!"
                )
        if chunk_mb is not None:  # exactly one of chunk_mb and chunk_shape is set
            chunk_shape = self._frame_chunk_shape(chunk_mb, hdmf_if_larger=chunk_mb_given)
        if buffer_gb is not None and chunk_shape is not None:
            buffer_shape = self._chunk_buffer_shape(tuple(chunk_shape), buffer_gb)
        if chunk_shape is None or buffer_shape is None:  # pragma: no cover - checked above
            raise ValueError("chunk and buffer shapes could not be chosen")
        self._wanted = (tuple(chunk_shape), tuple(buffer_shape))
        try:
            super().__init__(
                buffer_shape=tuple(buffer_shape),
                chunk_shape=tuple(chunk_shape),
                display_progress=False,
            )
        except AssertionError as exc:  # hdmf's shape checks: its text, our error
            raise IteratorOptionError(str(exc)) from exc
        tiles = (self.chunk_shape[self.scan_rank :], self.buffer_shape[self.scan_rank :])
        if self.stages and any(tuple(t) != self.frame_shape for t in tiles):
            raise ValueError(
                f"chunk_shape {self.chunk_shape} and buffer_shape {self.buffer_shape} must span "
                f"whole frames {self.frame_shape} (after the stages): stages work on whole "
                "frames. Fix: end both shapes with the frame shape, or use chunk_mb/buffer_gb."
            )
        start = self._options["start_row"]
        if not (isinstance(start, int) and start >= 0 and start % self.chunk_shape[0] == 0):
            raise ValueError(
                f"start_row must be a row number >= 0 on a chunk boundary (a multiple of "
                f"{self.chunk_shape[0]}), got {start!r}. Fix: round it down to a multiple of "
                "chunk_shape[0]; rewriting whole chunks is harmless."
            )
        self.start_frame = start * max(int(math.prod(self._inner)), 1)  # frames before start_row
        self._live = self._final is None
        self._built = True  # maxshape is the final one now (see maxshape for a scan of no frames)
        if self._live:
            self.num_buffers = None
            if self.buffer_shape[0] % self.chunk_shape[0]:  # every buffer starts a chunk row
                raise IteratorOptionError(
                    f"Some dimensions of chunk_shape ({self.chunk_shape}) do not evenly divide "
                    f"the buffer shape ({self.buffer_shape})!"
                )
        elif self.final_rows == 0:  # hdmf counted one buffer of the nominal row
            self.num_buffers = 0
        self.display_progress = display_progress
        self.progress_bar: Any | None = None
        if display_progress:
            self._start_progress(progress_bar_class, progress_bar_options or {})
        self._frontier_at_refresh = -1
        self._buffer: npt.NDArray[Any] | None = None
        self._free_refs = 0
        self.frames_done = 0
        # How long a release takes to reach the destination after it is chosen (the read, then
        # the consumer's write, until it asks again): the latency bound releases this much
        # earlier. A decaying maximum, so that one slow write is remembered for a while.
        self._release_cost_s = 0.0
        self._chosen_at: float | None = None
        self.buffer_selection_generator = self._selections()

    # ------------------------------------------------------------------ source

    def _open(
        self,
        source: Any,
        dataset_path: str | None,
        key_paths: Sequence[str] | None,
        finished_path: str | None,
        follower: KeyFollower | None,
        *,
        poll: bool,
    ) -> None:
        """Attach to the source, then learn the scan: its final shape if known (``poll``: also
        by polling once, for a writer that has already finished)."""
        self._attach(source, dataset_path, key_paths, finished_path, follower)
        follower = self.follower
        self.source_frame_shape = tuple(int(n) for n in self.dataset.shape[self.scan_rank :])
        self.stages = StageChain(
            self._options["stages"], self.source_frame_shape, self.dataset.dtype
        )
        self.frame_shape = self.stages.frame_shape  # what it hands out: after the stages
        keys = tuple(follower.key_datasets[0].maxshape[: self.scan_rank])
        inner = tuple(int(n) for n in follower.key_datasets[0].shape[1 : self.scan_rank])
        given = self._options["final_scan_shape"]
        if given is not None:
            self._final: tuple[int, ...] | None = tuple(int(n) for n in given)
        elif all(n is not None for n in keys):
            self._final = tuple(int(n) for n in keys if n is not None)
        elif poll and self._already_done(follower):  # a finished file: its length is known
            rows = -(-(follower.current_max + 1) // max(math.prod(inner), 1))
            self._final = (rows, *inner)
        else:
            self._final = None
        self._inner = self._final[1:] if self._final is not None else inner

    def _attach(
        self,
        source: Any,
        dataset_path: str | None,
        key_paths: Sequence[str] | None,
        finished_path: str | None,
        follower: KeyFollower | None,
    ) -> None:
        """Set ``dataset``, ``follower`` and the recipe; open the file if given a path."""
        policy = FollowPolicy(
            poll_interval_s=self._options["poll_interval_s"], strict=self._options["strict"]
        )
        if isinstance(source, (str, os.PathLike)):
            if dataset_path is None:
                raise ValueError(
                    f"source {os.fspath(source)!r} is a path, so dataset_path is needed. Fix: "
                    "pass the path of the frames' dataset, e.g. '/entry/data/data'."
                )
            spec = SourceSpec(
                os.fspath(source),
                key_paths=None if key_paths is None else tuple(key_paths),
                finished_path=finished_path,
                open_timeout_s=self._options["open_timeout_s"],
            )
            file, found = spec.open_resolved(clock=self._clock, sleep=self._sleep)
            self._file = file
            self.dataset: Any = get_dataset(
                file, dataset_path, "data", timeout_s=self._options["open_timeout_s"]
            )
        else:
            self.dataset = source
            file = source.file
            found = None
        if follower is None:
            if found is None:  # every dataset is opened once: see h5live._source.handles
                keys_given = None if key_paths is None else tuple(key_paths)
                found = SourceSpec(file.filename, keys_given, finished_path, 0.0).resolve(file)
            follower = KeyFollower(
                found.keys,
                self._options["timeout"],
                found.finished,
                policy=policy,
                clock=self._clock,
                sleep=self._sleep,
            )
        self.follower = follower
        self.scan_rank = iterator_scan_rank(follower, self.dataset)
        self._reader = FrameReader(self.dataset, self.scan_rank, use_direct_chunk=True)
        self._recipe = {
            "path": file.filename,
            # the paths in this file (a dataset reached through a link names its own file's)
            "dataset_path": source_path(self.dataset),
            "key_paths": [source_path(k) for k in follower.key_datasets],
            "finished_path": None
            if follower.finished_dataset is None
            else source_path(follower.finished_dataset),
        }

    def _park(self) -> None:
        """Close the file and follower this iterator opened; ``_unpark`` reopens them."""
        if self._file is None or not self._own_follower:
            return
        self.follower.close()
        self._file.close()
        self._file = None
        self._parked = True

    def _unpark(self) -> None:
        """Reopen the file, dataset and a new follower from the recipe, if parked."""
        if self._parked:
            recipe = self._recipe
            path, dataset_path = recipe["path"], recipe["dataset_path"]
            self._attach(path, dataset_path, recipe["key_paths"], recipe["finished_path"], None)
            self._parked = False
            self._frontier_at_refresh = -1

    @staticmethod
    def _already_done(follower: KeyFollower) -> bool:
        """Poll without blocking: True if the writer had finished before we started."""
        if follower.stop_reason is None:
            follower.poll()
            follower.poll()  # the flag is read on a poll that finds nothing new
        return follower.stop_reason in ("finished", "complete")

    # ------------------------------------------------------------------ shapes

    def _scan_shape(self, rows: int) -> tuple[int, ...]:
        return (rows, *self._inner)

    def _frame_chunk_shape(self, chunk_mb: float, *, hdmf_if_larger: bool) -> tuple[int, ...]:
        """Whole frames within ``chunk_mb`` (:func:`~h5live._iterate.shapes.frame_chunk_shape`);
        with stages, at most a buffer of source frames."""
        most = None
        if self.stages:  # a buffer holds whole chunks of *source* frames
            memory = (self._options["buffer_gb"] or 1.0) * 1e9
            most = int(memory // self._source_frame_bytes())
        return frame_chunk_shape(
            chunk_mb,
            scan_shape=self._scan_shape(self._nominal_rows()),
            frame_shape=self.frame_shape,
            itemsize=self._dtype_of().itemsize,
            final_rows=None if self._final is None else self._final[0],
            hdmf_if_larger=hdmf_if_larger,
            most_frames=most,
        )

    def _chunk_buffer_shape(self, chunk: tuple[int, ...], buffer_gb: float) -> tuple[int, ...]:
        """Whole chunks along the first axis within ``buffer_gb``
        (:func:`~h5live._iterate.shapes.chunk_buffer_shape`)."""
        shape = self._nominal_maxshape(chunk)
        read = 0
        if self.stages:  # read as source frames
            read = math.prod(shape[1 : self.scan_rank]) * self._source_frame_bytes()
        return chunk_buffer_shape(
            chunk,
            buffer_gb,
            maxshape=shape,
            itemsize=self._dtype_of().itemsize,
            final=self._final is not None,
            row_bytes_read=read,
        )

    def _source_frame_bytes(self) -> int:
        return max(1, math.prod(self.source_frame_shape) * int(self.dataset.dtype.itemsize))

    def _dtype_of(self) -> np.dtype[Any]:
        """The dtype handed out (after the stages)."""
        return self.stages.dtype

    def _complete_rows(self) -> int:
        """Rows along the first axis whose frames are all complete."""
        return (self.follower.current_max + 1) // max(math.prod(self._inner), 1)

    def _nominal_rows(self) -> int:
        if self._final is not None:
            return self._final[0] if self.scan_rank else 1
        return max(1, self._complete_rows())

    def _nominal_maxshape(self, chunk: Sequence[int] | None = None) -> tuple[int, ...]:
        rows = self._nominal_rows()
        if self._final is None and chunk is not None:
            rows = max(rows, int(chunk[0]))
        return (*self._scan_shape(rows), *self.frame_shape)

    # ------------------------------------------------------------------ hdmf interface

    def _get_dtype(self) -> np.dtype[Any]:
        return self._dtype_of()

    def _get_maxshape(self) -> tuple[int, ...]:
        nominal = self._nominal_maxshape()
        # the parent needs chunk and buffer to fit in integer axes of at least one row (a scan
        # that ended before its first frame has none: it is handed out as no chunk at all)
        if self._final is None or nominal[0] == 0:
            chunk, buffer = self._wanted
            rows = max(nominal[0], int(chunk[0]), int(buffer[0]))
            nominal = (rows, *nominal[1:])
        return nominal

    @property
    def maxshape(self) -> tuple[int | None, ...]:
        """The final shape; ``None`` on the first axis while the length is unknown, and for a
        scan that ended before its first frame (HDF5 cannot chunk an axis of maxshape 0: its
        destination is made with no rows, unlimited)."""
        if getattr(self, "_live", False) or (
            self.final_rows == 0 and getattr(self, "_built", False)
        ):
            return (None, *self._maxshape[1:])
        return self._maxshape  # type: ignore[no-any-return]

    def recommended_data_shape(self) -> tuple[int, ...]:
        """The shape to create a destination with: the rows complete now (after one poll), at
        most the final shape. The destination grows from there as buffers come, so a writer
        that stops early never leaves rows of fill values (a grid's last row may be partial)."""
        if not self._parked and self.follower.stop_reason is None:
            self.follower.poll()
        rows = self._complete_rows()
        if self._final is not None:
            rows = min(rows, self._final[0] if self.scan_rank else 1)
        return (rows, *self._maxshape[1:])

    @property
    def final_rows(self) -> int | None:
        """The length of the first axis when it is known, else None."""
        if self._final is None:
            return None
        return self._final[0] if self.scan_rank else 1

    @property
    def scan_inner(self) -> tuple[int, ...]:
        """The scan's dims after the first (a row of the scan holds their product of frames)."""
        return tuple(int(n) for n in self._inner)

    @property
    def source_file(self) -> str:
        """The path of the source file (a master file's, for data reached through its links)."""
        return str(self._recipe["path"])

    @property
    def source_dataset_path(self) -> str:
        """The frames' path in :attr:`source_file`."""
        return str(self._recipe["dataset_path"])

    @property
    def stop_reason(self) -> str | None:
        """Why the source will give no more frames (the follower's), or None."""
        return self.follower.stop_reason

    # ------------------------------------------------------------------ waiting and reading

    def _wait(self, last: int, timeout_s: float | None = None) -> bool | None:
        """Block until frame ``last`` is complete (True) or the follower has stopped (False).

        With ``timeout_s``: None if it passed first.
        """
        if self.follower.current_max >= last:
            return True
        try:
            done = self.follower.wait_for(last, timeout_s=timeout_s)
        except FollowTimeout:
            if timeout_s is None:
                raise
            return None
        if not done and self.follower.stop_reason == "timeout" and self._options["strict"]:
            raise FollowTimeout(
                f"{self._recipe['path']!r}: the writer went idle for {self.follower.timeout} s "
                f"with frames complete up to {self.follower.current_max} (strict mode). Fix: "
                "check the writer, or pass strict=False to end with the complete frames."
            )
        return done

    def _blocks(self) -> Iterator[Selection]:
        """Buffer boxes over the scan dims, in hdmf's order, lazily along the first axis."""
        buffer = self.buffer_shape[: self.scan_rank]
        inner = tiles(self._inner, buffer[1:])
        total = self._final[0] if self._final is not None else None
        for lo in itertools.count(self._options["start_row"], buffer[0]):
            if total is not None and lo >= total:
                return
            hi = lo + buffer[0] if total is None else min(lo + buffer[0], total)
            for rest in itertools.product(*inner):
                yield (slice(lo, hi), *rest)

    def _grid(self, block: Selection) -> tuple[int, ...]:
        """The scan shape, with enough rows for ``block``."""
        return self._scan_shape(max(block[0].stop, 1))

    def _complete_scan_rows(self, block: Selection) -> int:
        return complete_scan_rows(block, self._grid(block), self.follower.current_max)

    def _ready(self, block: Selection) -> tuple[list[Selection], Selection | None, bool]:
        """Wait for ``block``; return the parts to hand out now, what is left of it, and
        whether the follower has stopped (then the parts are the block's complete frames).

        Without ``max_latency_s``: the whole block once its last frame is complete. With it:
        also its complete rows from the start, once its oldest complete frame has waited
        ``max_latency_s`` less what a release costs (:meth:`_release_budget`).
        """
        last = last_frame(block, self._grid(block))
        latency = self._options["max_latency_s"]
        done = self._wait(last) if latency is None else self._wait_within_latency(block, last)
        if done is None:  # the oldest complete frame waited long enough
            rows = self._complete_scan_rows(block)
            lo, hi = block[0].start, block[0].stop
            return [(slice(lo, lo + rows), *block[1:])], (slice(lo + rows, hi), *block[1:]), False
        if done:
            return [block], None, False
        return self._complete_parts(block), None, True

    def _complete_parts(self, block: Selection) -> list[Selection]:
        return prefix_boxes(block, self._grid(block), self.follower.current_max + 1)

    def _release_budget(self) -> float:
        return release_budget(float(self._options["max_latency_s"]), self._release_cost_s)

    def _wait_within_latency(self, block: Selection, last: int) -> bool | None:
        """Like ``_wait(last)``, but None once whole scan rows of ``block`` are complete and
        its oldest complete frame has waited its release budget."""
        clock = self.follower.clock
        first = first_frame(block, self._grid(block))
        first_row = (slice(block[0].start, block[0].start + 1), *block[1:])
        while True:
            if not self._wait(first):  # the oldest frame of the block
                return False
            since = self.follower.complete_since(first)
            left = (clock() if since is None else since) + self._release_budget() - clock()
            if left > 0:
                done = self._wait(last, left)
                if done is not None:
                    return done
            if self.follower.current_max >= last:
                return True
            if self._complete_scan_rows(block):
                return None
            # waited long enough, but not one whole scan row yet: wait for the first one
            done = self._wait(last_frame(first_row, self._grid(first_row)))
            if done is not True or self.follower.current_max >= last:
                return done

    def _selections(self) -> Iterator[Selection]:
        self._unpark()  # an unpickled iterator opens its file when iteration starts
        frame_tiles = tiles(self.frame_shape, self.buffer_shape[self.scan_rank :])
        stopped = False
        for whole in self._blocks():
            if stopped:  # the rest of a row band split along an inner axis may be complete
                if first_frame(whole, self._grid(whole)) > self.follower.current_max:
                    return
                parts = self._complete_parts(whole)
            else:
                parts = []
                block: Selection | None = whole
                while block is not None and not stopped:
                    ready, block, stopped = self._ready(block)
                    parts += ready
                    if block is not None:  # released early: hand these out now
                        yield from with_frames(ready, frame_tiles)
                        parts = []
            yield from with_frames(parts, frame_tiles)

    def _get_data(self, selection: Selection) -> npt.NDArray[Any]:
        """Wait until the selection's frames are complete, then read them.

        A parked (unpickled) iterator opens its file for this call only, so that a worker
        process that unpickles one iterator per buffer keeps no handle between buffers.
        """
        if not self._parked:
            return self._read_complete(selection)
        try:
            self._unpark()
            return self._read_complete(selection)
        finally:
            self._park()

    def _read_complete(self, selection: Selection) -> npt.NDArray[Any]:
        self._await(selection)
        return self._read_ready(selection)

    def _read_ready(self, selection: Selection) -> npt.NDArray[Any]:
        """Read a selection whose frames are complete and refreshed (after ``_await``), through
        the stages."""
        first, last = self._flat_range(selection)
        if not self.stages:
            return self._read(selection, first, last)
        scan = selection[: self.scan_rank]  # whole frames (checked when built)
        whole = (*scan, *(slice(0, n) for n in self.source_frame_shape))
        return self.stages(self._read(whole, first, last))

    def _flat_range(self, selection: Selection) -> tuple[int, int]:
        """The first and last flat frame of a selection."""
        scan = selection[: self.scan_rank]
        grid = self._scan_shape(max(scan[0].stop, 1))
        first = int(np.ravel_multi_index([s.start for s in scan], grid))
        return first, last_frame(scan, grid)

    def _read(self, selection: Selection, first: int, last: int) -> npt.NDArray[Any]:
        """Read the source's frames ``first .. last`` in ``selection`` (complete, refreshed)."""
        out = self._out(selection)
        inner = selection[1 : self.scan_rank]
        frames = selection[self.scan_rank :]
        whole = zip((*inner, *frames), (*self._inner, *self.source_frame_shape), strict=True)
        if all(s.stop - s.start == n for s, n in whole):
            # whole rows of whole frames: frames first..last, read chunk by chunk where faster
            return self._reader.read_frames(first, last + 1, out=out)[0]
        rows = self._reader.virtual_rows
        return read_selection(self.dataset, selection, first, last + 1, out, rows)

    def _await(self, selection: Selection) -> tuple[int, int]:
        """Wait until the selection's frames are complete and refresh the data to them; its
        first and last flat frame."""
        first, last = self._flat_range(selection)
        if not self._wait(last):
            raise ValueError(
                f"frames up to {last} of {self._recipe['dataset_path']!r} in "
                f"{self._recipe['path']!r} are not complete and the writer has stopped "
                f"({self.follower.stop_reason}); only selections from "
                "buffer_selection_generator can be read."
            )
        if self.follower.current_max > self._frontier_at_refresh:
            self._frontier_at_refresh = self.follower.current_max
            self._reader.refresh(self._frontier_at_refresh)
        return first, last

    def _out(self, selection: Selection) -> npt.NDArray[Any]:
        """An array for ``selection``'s data: a view of the buffer if the consumer has let go
        of every chunk of it (as HDF5IO does), else a new array of the selection's size.

        So a writer that consumes chunks as they come reads into one buffer allocated once,
        and a consumer that keeps chunks (``list(iterator)``) gets data that stays as read.
        """
        shape = tuple(s.stop - s.start for s in selection)
        dtype = self.dataset.dtype  # the source's frames, before any stage
        buffer = self._buffer
        if buffer is None:
            size = math.prod(self.buffer_shape)
            if self.stages:  # whole source frames
                size = math.prod(self.buffer_shape[: self.scan_rank])
                size *= math.prod(self.source_frame_shape)
            buffer = self._buffer = np.empty(size, dtype=dtype)
            # the count with no view handed out, taken as it is checked below
            self._free_refs = sys.getrefcount(buffer)
        elif sys.getrefcount(buffer) > self._free_refs:  # a chunk of it is still held
            return np.empty(shape, dtype=dtype)
        return buffer[: math.prod(shape)].reshape(shape)

    def __next__(self) -> DataChunk:
        return self.next_chunk()

    def next_chunk(self, *, lazy: bool = False) -> DataChunk:
        """The next chunk of complete frames, as ``next(iterator)`` gives it.

        Parameters
        ----------
        lazy
            Hand out a :class:`SourceChunk` (its frames complete and refreshed, its data read
            when first used), so that a writer can copy the source's stored chunks as they are
            or read only part of it. A parked (unpickled) iterator reads at once.

        Raises
        ------
        StopIteration
            Every complete frame has been handed out and the follower has stopped.
        """
        clock = self.follower.clock
        if self._chosen_at is not None:  # the last chunk has been read and written by now
            self._release_cost_s = next_release_cost(
                self._release_cost_s, clock() - self._chosen_at
            )
            self._chosen_at = None
        try:
            selection = next(self.buffer_selection_generator)
        except StopIteration:
            self._finish_progress()
            raise
        self._chosen_at = clock()
        chunk: DataChunk
        if lazy and not self._parked:
            self._await(selection)
            chunk = SourceChunk(self, selection)
        else:
            chunk = DataChunk(data=self._get_data(selection), selection=selection)
        frames = 0  # frames are counted with their first tile when buffers split the frame
        if all(s.start == 0 for s in selection[self.scan_rank :]):
            frames = math.prod(s.stop - s.start for s in selection[: self.scan_rank])
        self.frames_done += frames
        if self.progress_bar is not None:
            size = math.prod(s.stop - s.start for s in selection) * self._dtype_of().itemsize
            self._update_progress(frames, size)
        return chunk

    # ------------------------------------------------------------------ progress

    def _start_progress(
        self, bar_class: Callable[..., Any] | None, options: dict[str, Any]
    ) -> None:
        from tqdm import tqdm

        options = dict(options)
        if "total" in options:  # hdmf's warning, word for word
            warnings.warn(
                "Option 'total' in 'progress_bar_options' is not allowed to be over-written! "
                "Ignoring.",
                H5LiveWarning,
                stacklevel=_caller_stacklevel(),
            )
            options.pop("total")
        total = math.prod(self._final) - self.start_frame if self._final is not None else None
        self.progress_bar = (bar_class or tqdm)(total=total, unit="frame", **options)
        self._progress_started = time.monotonic()
        self._progress_bytes = 0

    def _update_progress(self, frames: int, nbytes: int) -> None:
        bar: Any = self.progress_bar
        self._progress_bytes += nbytes
        elapsed = max(time.monotonic() - self._progress_started, 1e-9)
        lag = self.follower.current_max + 1 - self.start_frame - self.frames_done
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"{self._progress_bytes / elapsed / 1e6:.1f} MB/s, lag {lag}")
        self._known_total(bar)
        bar.update(frames)

    def _known_total(self, bar: Any) -> None:
        """Give the bar its total once the writer has stopped: the complete frames."""
        if getattr(bar, "total", 0) is None and self.follower.stop_reason is not None:
            bar.total = self.follower.current_max + 1 - self.start_frame

    def _finish_progress(self) -> None:
        bar = getattr(self, "progress_bar", None)  # None also before the bar is made
        if bar is not None:
            self._known_total(bar)
            bar.close()
            self.progress_bar = None

    # ------------------------------------------------------------------ pickling, closing

    def _to_dict(self) -> dict[str, Any]:
        """A recipe: where the source is, the options, and the shapes as chosen here."""
        shapes = {
            "chunk_shape": tuple(self.chunk_shape),
            "buffer_shape": tuple(self.buffer_shape),
            "chunk_mb": None,
            "buffer_gb": None,
            "final_scan_shape": self._final,
        }
        return {**self._recipe, **self._options, **shapes}

    @staticmethod
    def _from_dict(dictionary: dict[str, Any]) -> LiveDataChunkIterator:
        """An iterator from a ``_to_dict`` recipe, parked: it reads the source's shapes without
        refreshing anything, closes the file, and reopens it when iterated or read."""
        state = dict(dictionary)
        path, dataset_path = state.pop("path"), state.pop("dataset_path")
        return LiveDataChunkIterator(path, dataset_path, **state, _parked=True)

    def close(self) -> None:
        """Close the file if this iterator opened it (idempotent)."""
        self._finish_progress()
        follower = getattr(self, "follower", None)
        if self._own_follower and follower is not None:
            follower.close()
        if self._file is not None:
            self._file.close()
            self._file = None
        self._parked = False  # closed for good: a parked iterator would reopen

    def __enter__(self) -> LiveDataChunkIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        filename, name = self._recipe["path"], self._recipe["dataset_path"]
        return (
            f"<LiveDataChunkIterator {os.path.basename(filename)!r} {name!r} "
            f"chunk_shape={self.chunk_shape} buffer_shape={self.buffer_shape} "
            f"maxshape={self.maxshape} frames_done={self.frames_done} "
            f"stop_reason={self.stop_reason!r}>"
        )
