"""An h5flow generator that follows a live source: h5flow workflows on files still being written.

Contract
--------
- :class:`H5LiveGenerator` has h5flow's generator interface: the constructor
  ``(classname, dset_name, data_manager, input_filename=None, start_position=None,
  end_position=None, **params)``, ``init()``, ``next()`` and ``finish()``, ``EMPTY``, and
  iteration. When h5flow is importable it subclasses ``h5flow.core.H5FlowGenerator``; when it
  is not, a standalone base with the same attributes and methods stands in for it.
- ``init()`` opens ``input_filename`` read-only in SWMR mode (waiting for the writer to create
  it), finds its keys in a known layout (or ``key_paths``), and creates ``dset_name`` through
  the data manager: a 1-D dataset with one row per frame, fields ``index`` (the frame's flat
  index in the source scan) and ``frame`` (the frame, after any ``stages``), as h5flow's
  table-like layout wants.
- ``next()`` blocks until at least one new frame is complete (its keys set), copies at most
  ``chunk_size`` complete frames into ``dset_name`` (``reserve_data`` then ``write_data``, as
  h5flow generators do) and returns the slice it wrote. Frames go out once each, in order,
  from ``start_position`` (default 0) up to ``end_position`` (exclusive; default: all), so the
  slices are contiguous. Frames whose keys are not set are never read.
- At the end it returns ``EMPTY``: every frame up to ``end_position`` delivered, or the source
  finished (finished flag, or a fixed-size scan complete) with every complete frame delivered,
  or no frame completed for ``timeout`` seconds. ``stop_reason`` says which.
- ``finish()`` records ``frames_delivered`` and ``stop_reason`` as attributes of ``dset_name``
  and closes the source; ``close()`` only closes (idempotent).
- MPI: one process follows the file. Run h5flow without MPI (``--nompi``); several ranks are
  refused.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from h5live._closing import ClosingContext
from h5live._follow.follower import FollowPolicy, KeyFollower
from h5live._read.reader import FrameReader
from h5live._source.spec import Clock, Sleep, SourceSpec, get_dataset, largest_frames
from h5live._stages import Stage, StageChain

__all__ = ["H5FLOW_AVAILABLE", "H5LiveGenerator"]

logger = logging.getLogger(__name__)


class _StandaloneGenerator:
    """h5flow's ``H5FlowGenerator`` interface, for when h5flow is not installed."""

    EMPTY = slice(-1, -1, None)
    class_version = "0.0.0"

    def __init__(
        self,
        classname: str,
        dset_name: str,
        data_manager: Any,
        input_filename: str | None = None,
        start_position: int | None = None,
        end_position: int | None = None,
        **params: Any,
    ) -> None:
        self.classname = classname
        self.dset_name = dset_name
        self.data_manager = data_manager
        self.input_filename = input_filename
        self.start_position = start_position
        self.end_position = end_position
        self.comm: Any = None
        self.rank = 0
        self.size = 1

    def __iter__(self) -> _StandaloneGenerator:
        return self

    def __next__(self) -> slice:
        next_slice = self.next()
        if next_slice == self.EMPTY:
            raise StopIteration
        return next_slice

    def init(self) -> None:
        """Prepare the output; called once before the flow's stages are initialised."""

    def next(self) -> slice:
        """A slice of ``dset_name`` holding new data; ``EMPTY`` at the end."""
        raise NotImplementedError

    def finish(self) -> None:
        """Clean up; called once after the loop."""


if TYPE_CHECKING:
    _Base = _StandaloneGenerator
    H5FLOW_AVAILABLE: bool
else:
    try:
        from h5flow.core import H5FlowGenerator as _Base
    except ImportError:
        _Base = _StandaloneGenerator
        H5FLOW_AVAILABLE = False
    else:
        H5FLOW_AVAILABLE = True
#: Whether h5flow is importable, so that H5LiveGenerator subclasses its H5FlowGenerator.

_PARAMS = (
    "data_path",
    "key_paths",
    "finished_path",
    "chunk_size",
    "timeout",
    "open_timeout_s",
    "poll_interval_s",
    "stages",
    "clock",
    "sleep",
)


def _count(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


class H5LiveGenerator(_Base, ClosingContext):
    """An h5flow generator over the complete frames of a live source, as they arrive.

    Parameters
    ----------
    classname, dset_name, data_manager, input_filename, start_position, end_position
        As for ``h5flow.core.H5FlowGenerator``: ``dset_name`` is the output dataset (h5flow
        path, without ``/data``), ``input_filename`` the live source, and the positions flat
        frame indices in it (``end_position`` exclusive).
    data_path
        The frames' dataset in the source (default: the dataset with the largest frames that
        grows with the scan, e.g. ``/entry/data/data``).
    key_paths, finished_path
        Key and finished datasets (default: a known layout; see :class:`h5live.SourceSpec`).
    chunk_size
        At most this many frames per slice (default 1024; fewer when fewer are complete).
    timeout
        Idle timeout in seconds: stop when no frame has completed for this long (``None``:
        wait for the finished flag).
    open_timeout_s
        How long to wait for the writer to create the file.
    poll_interval_s
        Poll the keys at most this often while waiting.
    stages
        :class:`h5live.Stage` objects applied to the frames before they are written (from
        Python; an h5flow YAML configuration cannot express them).
    clock, sleep
        Time functions, injectable for tests.

    Attributes
    ----------
    frames_delivered : int
        Frames written to ``dset_name`` so far.
    stop_reason : str or None
        ``"end_position"``, or the follower's ``"finished"``, ``"complete"``, ``"timeout"``;
        None while running.
    dtype : numpy.dtype
        The rows of ``dset_name``, known after ``init()``.

    Raises
    ------
    ValueError
        No ``input_filename`` or ``dset_name``, a bad position or ``chunk_size``, an unknown
        parameter, or more than one MPI rank.

    Examples
    --------
    In an h5flow configuration (``h5flow_modules/h5live_source.py`` holding
    ``from h5live.h5flow import H5LiveGenerator``)::

        flow:
            source: live_frames
            stages: [my_stage]

        live_frames:
            classname: H5LiveGenerator
            dset_name: detector/frames
            params:
                chunk_size: 256
                timeout: 30
    """

    class_version = "1.0.0"
    default_chunk_size = 1024

    def __init__(
        self,
        classname: str = "H5LiveGenerator",
        dset_name: str | None = None,
        data_manager: Any = None,
        input_filename: str | os.PathLike[str] | None = None,
        start_position: int | None = None,
        end_position: int | None = None,
        **params: Any,
    ) -> None:
        unknown = sorted(set(params) - set(_PARAMS))
        if unknown:
            raise ValueError(
                f"H5LiveGenerator: unknown parameter(s) {unknown}. Fix: use {list(_PARAMS[:8])}."
            )
        if input_filename is None:
            raise ValueError(
                "H5LiveGenerator needs the live source. Fix: h5flow -i <source.h5> (or "
                "input_filename=...)."
            )
        if not dset_name:
            raise ValueError(
                "H5LiveGenerator needs dset_name, the output dataset. Fix: dset_name: "
                "<group>/<name> in the generator's configuration."
            )
        super().__init__(
            classname=classname,
            dset_name=dset_name,
            data_manager=data_manager,
            input_filename=os.fspath(input_filename),
            start_position=start_position,
            end_position=end_position,
        )
        if getattr(self, "size", 1) > 1:
            raise ValueError(
                f"H5LiveGenerator follows a live file from one process, but h5flow runs "
                f"{self.size} MPI ranks. Fix: run h5flow with --nompi (or H5FLOW_NOMPI=1)."
            )
        self._first = _count(start_position or 0, "start_position", 0)
        if end_position is not None:
            _count(end_position, "end_position", self._first)
        self.data_path: str | None = params.get("data_path")
        keys = params.get("key_paths")
        self.key_paths: tuple[str, ...] | None = (
            (keys,) if isinstance(keys, str) else None if keys is None else tuple(keys)
        )
        self.finished_path: str | None = params.get("finished_path")
        self.chunk_size = _count(params.get("chunk_size", self.default_chunk_size), "chunk_size", 1)
        self.timeout: float | None = params.get("timeout", 10.0)
        self.open_timeout_s = float(params.get("open_timeout_s", 10.0))
        self.poll_interval_s = float(params.get("poll_interval_s", 0.001))
        stages: Sequence[Stage] | Stage | None = params.get("stages")
        self._stages = stages
        self._clock: Clock = params.get("clock", time.monotonic)
        self._sleep: Sleep = params.get("sleep", time.sleep)
        self.frames_delivered = 0
        self.stop_reason: str | None = None
        self.dtype: np.dtype[Any] | None = None
        self.follower: KeyFollower | None = None
        self._reader: FrameReader | None = None
        self._chain: StageChain | None = None
        self._cursor = self._first
        self._refreshed_at = -1

    # ------------------------------------------------------------------ h5flow interface

    def init(self) -> None:
        """Open the source, learn its frames, create ``dset_name`` and record the settings.

        Raises
        ------
        SourceNotReadyError
            The source could not be opened within ``open_timeout_s``.
        DatasetNotFoundError
            No keys in a known layout, or no ``data_path`` (nor a dataset growing with the scan).
        StageError
            A stage does not fit the frames.
        """
        spec = SourceSpec(
            str(self.input_filename),
            key_paths=self.key_paths,
            finished_path=self.finished_path,
            open_timeout_s=self.open_timeout_s,
        )
        follower = KeyFollower.from_path(
            spec,
            timeout=self.timeout,
            policy=FollowPolicy(poll_interval_s=self.poll_interval_s),
            clock=self._clock,
            sleep=self._sleep,
        )
        try:
            file = follower.key_datasets[0].file
            path = self.data_path or self._largest(file, follower)
            reader = FrameReader(get_dataset(file, path, "data"), follower.scan_rank)
            chain = StageChain(self._stages, reader.frame_shape, reader.dataset.dtype)
        except BaseException:
            follower.close()
            raise
        self.follower, self._reader, self._chain, self.data_path = follower, reader, chain, path
        self.dtype = np.dtype([("index", "<i8"), ("frame", chain.dtype, chain.frame_shape)])
        self.data_manager.create_dset(self.dset_name, dtype=self.dtype)
        attrs = {
            "classname": self.classname,
            "class_version": self.class_version,
            "input_filename": os.path.abspath(str(self.input_filename)),
            "data_path": path,
            "source_frame_shape": np.asarray(reader.frame_shape, dtype=np.int64),
            "stages": repr(chain),
            "chunk_size": self.chunk_size,
            "start_position": self._first,
            "end_position": -1 if self.end_position is None else int(self.end_position),
        }
        self.data_manager.set_attrs(self.dset_name, **attrs)
        logger.info("%r: following %s in %s", self, path, self.input_filename)

    def next(self) -> slice:
        """Wait for new complete frames, write them to ``dset_name`` and return their slice.

        Returns
        -------
        slice
            Rows of ``dset_name`` just written (at most ``chunk_size``); ``EMPTY`` once no
            more frames will come (see ``stop_reason``).

        Raises
        ------
        RuntimeError
            ``init()`` was not called.
        """
        follower, reader = self.follower, self._reader
        if follower is None or reader is None:
            if self.stop_reason is not None:
                return self.EMPTY
            raise RuntimeError("H5LiveGenerator.next() before init(). Fix: call init() first.")
        if self.stop_reason is not None:
            return self.EMPTY
        start = self._cursor
        end = math.inf if self.end_position is None else int(self.end_position)
        if start >= end:
            return self._stop("end_position")
        if not follower.wait_for(start):  # blocks; False once the source has stopped
            return self._stop(str(follower.stop_reason))
        stop = int(min(follower.current_max + 1, start + self.chunk_size, end))
        rows = self._rows(reader, start, stop)
        where = self.data_manager.reserve_data(self.dset_name, stop - start)
        self.data_manager.write_data(self.dset_name, where, rows)
        self._cursor = stop
        self.frames_delivered += stop - start
        return where  # type: ignore[no-any-return]

    def finish(self) -> None:
        """Record ``frames_delivered`` and ``stop_reason`` on ``dset_name``; close the source."""
        if self.dtype is not None:
            self.data_manager.set_attrs(
                self.dset_name,
                frames_delivered=self.frames_delivered,
                stop_reason=self.stop_reason or "not finished",
            )
        self.close()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _largest(file: Any, follower: KeyFollower) -> str:
        from h5live._write.copy import data_datasets  # hdmf: only when the path is not given

        paths = data_datasets(file, follower)
        if not paths:
            raise ValueError(
                f"no dataset of {file.filename!r} grows with its scan. Fix: pass data_path "
                "in the generator's params."
            )
        return str(largest_frames([file[p] for p in paths], follower.scan_rank).name)

    def _rows(self, reader: FrameReader, start: int, stop: int) -> npt.NDArray[Any]:
        """Frames ``start .. stop - 1`` (complete), with their indices, as rows of ``dtype``."""
        follower = self.follower
        if follower is not None and follower.current_max > self._refreshed_at:
            self._refreshed_at = follower.current_max  # refresh the data once per frontier move
            reader.refresh(self._refreshed_at)
        chain = self._chain
        if chain is None or self.dtype is None:  # pragma: no cover - set together by init()
            raise RuntimeError("H5LiveGenerator.next() before init().")
        rows = np.empty(stop - start, dtype=self.dtype)
        rows["index"] = np.arange(start, stop)
        frames = rows["frame"]
        for first, last in reader.boxes(start, stop):
            block = reader.read_frames(first, last)[0]
            block = block.reshape((last - first, *reader.frame_shape))
            frames[first - start : last - start] = chain(block)
        return rows

    def _stop(self, reason: str) -> slice:
        self.stop_reason = reason
        logger.info("%r: stopped (%s)", self, reason)
        return self.EMPTY

    def close(self) -> None:
        """Close the source (idempotent); ``next()`` then returns ``EMPTY``."""
        if self.follower is not None:
            self.follower.close()
            self.follower = None
            self._reader = None
            if self.stop_reason is None:
                self.stop_reason = "closed"

    def __repr__(self) -> str:
        source = os.path.basename(str(self.input_filename))
        state = f" stopped={self.stop_reason!r}" if self.stop_reason else ""
        return (
            f"<H5LiveGenerator {source!r} -> {self.dset_name!r} "
            f"delivered={self.frames_delivered}{state}>"
        )
