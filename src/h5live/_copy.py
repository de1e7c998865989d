"""copy_live: an HDF5 copy of a live source, written while the source is, itself followable.

Contract
--------
- Data datasets (those that grow with the scan: their leading dims are the keys' scan dims,
  chunked) are copied through ``H5DataIO(LiveDataChunkIterator(...))``: the destination dataset
  is made by hdmf's ``HDF5IO.__setup_chunked_dset__`` from the iterator and the ``H5DataIO``
  options, and each ``DataChunk`` is written as hdmf's ``_write_chunk`` does. Every data dataset
  shares one :class:`~h5live.KeyFollower` and the same chunk rows, so they advance together.
- Everything else (groups, attributes, static datasets) is copied once at the start, except the
  source's keys and finished flag: the destination has its own (:mod:`h5live._output`), set only
  for frames written to every data dataset. The destination is in SWMR mode while it is written,
  so h5live and swmr_tools can follow it.
- It ends when the source stops. ``complete`` (finished flag set) if the source finished and
  every frame was copied; else ``incomplete`` with the stop reason. Ctrl-C marks it
  ``interrupted``, a write error ``failed`` (raising :class:`~h5live.errors.OutputError`); the
  file is closed valid in every case and never holds a key for a frame it does not hold.
- ``resume=True`` continues an output of the same source from its last complete chunk row (a
  converter killed with SIGKILL included: its writer flags are cleared first); rows written
  twice hold the same data. An existing destination is refused without ``resume`` or
  ``overwrite``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from hdmf.backends.hdf5.h5_utils import H5DataIO
from hdmf.backends.hdf5.h5tools import HDF5IO

from h5live._compression import Compression, h5dataio_options
from h5live._follow import FollowPolicy, KeyFollower
from h5live._iterator import LiveDataChunkIterator
from h5live._output import STATUS_PATH, LiveOutput, frames_keyed
from h5live._recover import clear_writer_flags
from h5live._source import SourceSpec
from h5live.errors import H5LiveError, OutputError, OutputExistsError

__all__ = ["CopyResult", "copy_live", "data_datasets"]

logger = logging.getLogger(__name__)

# Chunks smaller than HDF5IO's 32 MiB cache would be copied through it on their way out
# (measured in benchmarks/RESULTS.md); whole chunks are written once, so no cache is needed.
OUTPUT_CHUNK_CACHE = 1 << 20


@dataclass(frozen=True)
class CopyResult:
    """How a copy ended.

    Attributes
    ----------
    destination
        The output file.
    frames_complete
        Frames complete in it (keys set).
    state
        ``complete``, ``incomplete``, ``interrupted`` or ``failed``.
    stop_reason
        The source follower's (``finished``, ``complete``, ``timeout``), or ``interrupted``.
    resumed_from
        The first frame this run wrote (0 unless resumed).
    seconds, bytes_written
        Duration of this run and data bytes it wrote.
    """

    destination: str
    frames_complete: int
    state: str
    stop_reason: str
    resumed_from: int
    seconds: float
    bytes_written: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------- the source


def data_datasets(file: Any, follower: KeyFollower) -> list[str]:
    """Paths of the datasets that grow with the scan: chunked, leading dims the keys' scan."""
    keys = {k.name for k in follower.key_datasets}
    finished = getattr(follower.finished_dataset, "name", None)
    rank = follower.scan_rank
    inner = tuple(follower.key_datasets[0].shape[1:rank])
    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset) or obj.name in keys or obj.name == finished:
            return
        if obj.chunks is None or len(obj.shape) < rank or rank == 0:
            return
        if tuple(obj.shape[1:rank]) == inner:
            found.append(obj.name)

    file.visititems(visit)
    return sorted(found)


def _copy_static(source: Any, destination: Any, skip: set[str]) -> None:
    """Groups with their attributes, and every dataset not in ``skip``, copied once."""
    destination.attrs.update(source.attrs)

    def visit(name: str, obj: Any) -> None:
        path = "/" + name
        if path in skip or any(path.startswith(s + "/") for s in skip):
            return
        if isinstance(obj, h5py.Group):
            destination.require_group(path).attrs.update(obj.attrs)
        elif isinstance(obj, h5py.Dataset) and path not in destination:
            source.copy(obj, destination.require_group(obj.parent.name), name=path.rsplit("/")[-1])

    source.visititems(visit)


# ---------------------------------------------------------------------------- progress


class _Coverage:
    """Which frames of one dataset are written; the complete prefix."""

    def __init__(self, inner: tuple[int, ...], start: int) -> None:
        self.inner = inner
        self.per_row = max(math.prod(inner), 1)
        self.done = np.zeros(0, dtype=bool)
        self.prefix = start

    def add(self, selection: tuple[slice, ...], rank: int) -> None:
        box = selection[:rank]
        rows = box[0].stop
        if self.done.size < rows * self.per_row:
            grown = np.zeros(max(rows * self.per_row, 2 * self.done.size), dtype=bool)
            grown[: self.done.size] = self.done
            self.done = grown
        view = self.done[: rows * self.per_row].reshape(rows, *self.inner)
        view[box] = True
        ahead = self.done[self.prefix :]
        unset = np.flatnonzero(~ahead)
        self.prefix += int(unset[0]) if unset.size else int(ahead.size)


class _Space:
    """Stops the copy *before* the disk (or the file size limit) runs out.

    HDF5 cannot close a file cleanly once a write has failed for lack of space (measured with
    HDF5 2.0: the close fails, and freeing its objects then crashes the interpreter), so each
    chunk is written only if it and a margin for metadata fit.
    """

    MARGIN = 4 << 20

    def __init__(self, path: str) -> None:
        self.path = path
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        self.limit = math.inf if soft == resource.RLIM_INFINITY else soft

    def check(self, nbytes: int) -> None:
        need = nbytes + self.MARGIN
        size = os.path.getsize(self.path)
        stats = os.statvfs(self.path)
        free = stats.f_bavail * stats.f_frsize
        if free < need or size + need > self.limit:
            room = min(free, self.limit - size)
            raise OutputError(
                f"{self.path!r}: no room for the next {nbytes} bytes (and {self.MARGIN} for "
                f"HDF5's metadata): {room:.0f} bytes left on the disk or under the file size "
                "limit. The copy stopped before writing them"
            )


# ---------------------------------------------------------------------------- the copy


def _open_destination(
    path: Path, source: str, resume: bool, overwrite: bool
) -> tuple[Any, LiveOutput | None]:
    """The destination file, open for writing, and its bookkeeping if it is resumed."""
    if path.exists() and not (resume or overwrite):
        raise OutputExistsError(
            f"destination {os.fspath(path)!r} exists. Fix: pass resume=True (--resume) to "
            "continue it, overwrite=True (--overwrite) to replace it, or another path."
        )
    if not (path.exists() and resume):
        return h5py.File(path, "w", libver="latest", rdcc_nbytes=OUTPUT_CHUNK_CACHE), None
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as peek:
            output = LiveOutput.attach(peek)
            pid, where = output.writer_alive(), output.source
    except (KeyError, OSError):
        raise OutputExistsError(
            f"destination {os.fspath(path)!r} is not an output of h5live (no /entry/h5live "
            "status), so it cannot be resumed. Fix: overwrite=True, or another path."
        ) from None
    if pid is not None:
        raise OutputExistsError(
            f"destination {os.fspath(path)!r} is still being written by process {pid}. Fix: "
            "wait for it or stop it, then resume."
        )
    if os.path.realpath(where) != os.path.realpath(source):
        raise OutputExistsError(
            f"destination {os.fspath(path)!r} is a copy of {where!r}, not of {source!r}, so "
            "it cannot be resumed from it. Fix: pass that source, or overwrite=True."
        )
    clear_writer_flags(path)  # a converter killed while writing left them set
    file = h5py.File(path, "a", libver="latest", rdcc_nbytes=OUTPUT_CHUNK_CACHE)
    return file, LiveOutput.attach(file)


def _iterators(
    sources: list[Any],
    follower: KeyFollower,
    options: dict[str, Any],
    chunk_rows: Sequence[int] | None,
    start_row: int,
) -> list[LiveDataChunkIterator]:
    """One iterator per data dataset, with the same chunk and buffer rows (the first's)."""
    shared = {k: options[k] for k in ("timeout", "max_latency_s", "display_progress")}
    first_options = {k: options[k] for k in ("chunk_mb", "chunk_shape", "buffer_gb")}
    first_options["buffer_shape"] = options["buffer_shape"]
    if chunk_rows is not None:  # resuming: the destination's chunks decide
        first_options.update(chunk_mb=None, chunk_shape=None)
    iterators: list[LiveDataChunkIterator] = []
    for k, dataset in enumerate(sources):
        frame = tuple(dataset.shape[follower.scan_rank :])
        inner = tuple(follower.key_datasets[0].shape[1 : follower.scan_rank])
        if k == 0 and chunk_rows is None:
            made = dict(first_options)
        else:
            rows = chunk_rows[k] if chunk_rows is not None else iterators[0].chunk_shape[0]
            buffer_rows = iterators[0].buffer_shape[0] if iterators else None
            made = {"chunk_shape": (rows, *inner, *frame)}
            if buffer_rows is not None:
                made["buffer_shape"] = (buffer_rows, *inner, *frame)
            elif options["buffer_shape"] is not None:
                made["buffer_shape"] = (options["buffer_shape"][0], *inner, *frame)
            else:
                made["buffer_gb"] = options["buffer_gb"]
        progress = shared["display_progress"] and k == 0
        iterators.append(
            LiveDataChunkIterator(
                dataset,
                follower=follower,
                start_row=start_row,
                max_latency_s=shared["max_latency_s"],
                display_progress=progress,
                progress_bar_class=options["progress_bar_class"] if progress else None,
                progress_bar_options=options["progress_bar_options"] if progress else None,
                **made,
            )
        )
    return iterators


def _create(
    file: Any, path: str, iterator: LiveDataChunkIterator, compression: dict[str, Any]
) -> Any:
    """The destination dataset, made by hdmf from the iterator and the H5DataIO options."""
    with warnings.catch_warnings():  # plugin filters are what the caller asked for
        warnings.filterwarnings("ignore", "[0-9]+ compression may not be available")
        data_io = H5DataIO(iterator, **compression)
    parent, name = path.rsplit("/", 1)
    group = file.require_group(parent or "/")
    settings = {"io_settings": dict(data_io.io_settings)}
    return HDF5IO.__setup_chunked_dset__(group, name, iterator, options=settings)


def _write(
    file: Any,
    output: LiveOutput,
    pairs: list[tuple[Any, LiveDataChunkIterator]],
    rank: int,
    start: int,
) -> int:
    """Round-robin over the iterators, writing each chunk and marking complete frames;
    return the bytes written."""
    inner = output.scan_inner
    space = _Space(file.filename)
    coverage = [_Coverage(inner, start) for _ in pairs]
    queue: deque[int] = deque(range(len(pairs)))
    written = 0
    datasets = [dataset for dataset, _ in pairs]
    while queue:
        k = queue.popleft()
        dataset, iterator = pairs[k]
        try:
            chunk = next(iterator)
        except StopIteration:
            continue
        space.check(chunk.data.nbytes)
        dataset.id.extend(chunk.get_min_bounds())
        dataset[chunk.selection] = chunk.data
        written += chunk.data.nbytes
        coverage[k].add(chunk.selection, rank)
        output.mark(min(c.prefix for c in coverage), datasets)
        queue.append(k)
    return written


def copy_live(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    datasets: Sequence[str] | None = None,
    key_paths: Sequence[str] | None = None,
    finished_path: str | None = None,
    compression: Compression = None,
    compression_opts: Any = None,
    shuffle: bool = False,
    chunk_mb: float | None = None,
    chunk_shape: tuple[int, ...] | None = None,
    buffer_gb: float | None = None,
    buffer_shape: tuple[int, ...] | None = None,
    max_latency_s: float | None = 1.0,
    timeout: float | None = 10.0,
    poll_interval_s: float = 0.001,
    open_timeout_s: float = 10.0,
    resume: bool = False,
    overwrite: bool = False,
    display_progress: bool = False,
    progress_bar_class: Callable[..., Any] | None = None,
    progress_bar_options: dict[str, Any] | None = None,
) -> CopyResult:
    """Copy a live source into an HDF5 file, incrementally, as a live source itself.

    Parameters
    ----------
    source, destination
        The file being written, and the copy.
    datasets
        Data datasets to copy live (default: every dataset that grows with the scan). Static
        datasets, groups and attributes are always copied.
    key_paths, finished_path
        The source's keys and finished flag (default: found in the known layouts).
    compression, compression_opts, shuffle
        The copy's filters: ``"gzip"`` (with a level), ``"lzf"``, an hdf5plugin filter name or
        object (``"zstd"``, ``hdf5plugin.Blosc(...)``), as for ``H5DataIO``.
    chunk_mb, chunk_shape, buffer_gb, buffer_shape
        As for :class:`~h5live.LiveDataChunkIterator`, for the first data dataset; the others
        get the same chunk and buffer rows.
    max_latency_s
        Release whole chunk rows once the oldest waiting complete frame has waited this long
        (``None``: whole buffers only). The default keeps the copy within a second or so of
        the source.
    timeout, poll_interval_s, open_timeout_s
        Idle timeout of the source, its poll interval, and how long to wait for it to appear.
    resume, overwrite
        Continue an existing copy of this source, or replace an existing file.
    display_progress, progress_bar_class, progress_bar_options
        A tqdm progress bar (frames, MB/s, lag behind the writer).

    Returns
    -------
    CopyResult

    Raises
    ------
    OutputExistsError
        The destination exists (without ``resume`` or ``overwrite``), or cannot be resumed.
    OutputError
        Writing failed (e.g. disk full); the output is marked ``failed`` and can be resumed.
    KeyboardInterrupt
        After marking the output ``interrupted`` (it can be resumed).
    """
    began = time.monotonic()
    source_path, destination_path = os.fspath(source), Path(destination)
    spec = SourceSpec(
        source_path,
        None if key_paths is None else tuple(key_paths),
        finished_path,
        open_timeout_s,
    )
    source_file, found = spec.open_resolved()
    with contextlib.ExitStack() as stack:
        stack.callback(source_file.close)
        policy = FollowPolicy(poll_interval_s=poll_interval_s)
        follower = KeyFollower(found.keys, timeout, found.finished, policy=policy)
        paths = list(datasets) if datasets is not None else data_datasets(source_file, follower)
        if not paths:
            raise H5LiveError(
                f"no dataset of {source_path!r} grows with its scan (keys "
                f"{[k.name for k in follower.key_datasets]}). Fix: pass datasets=[...]."
            )
        file, resumed = _open_destination(destination_path, source_path, resume, overwrite)
        started: list[bool] = [resumed is not None]
        stack.callback(_remove_unstarted, destination_path, started)
        stack.push(_closer(file))
        options = {
            "chunk_mb": chunk_mb,
            "chunk_shape": chunk_shape,
            "buffer_gb": buffer_gb,
            "buffer_shape": buffer_shape,
            "max_latency_s": max_latency_s,
            "timeout": timeout,
            "display_progress": display_progress,
            "progress_bar_class": progress_bar_class,
            "progress_bar_options": progress_bar_options,
        }
        return _run(
            source_file,
            file,
            resumed,
            started,
            follower,
            paths,
            options,
            h5dataio_options(compression, compression_opts, shuffle),
            began,
        )


def _run(
    source_file: Any,
    file: Any,
    resumed: LiveOutput | None,
    started: list[bool],
    follower: KeyFollower,
    paths: list[str],
    options: dict[str, Any],
    compression: dict[str, Any],
    began: float,
) -> CopyResult:
    rank = follower.scan_rank
    sources = [source_file[path] for path in paths]
    if resumed is None:
        iterators = _iterators(sources, follower, options, None, 0)
        _copy_static(source_file, file, {*paths, *_bookkeeping(follower), STATUS_PATH})
        pairs = [
            (_create(file, path, it, compression), it)
            for path, it in zip(paths, iterators, strict=True)
        ]
        for (dataset, _), src in zip(pairs, sources, strict=True):
            dataset.attrs.update(src.attrs)
        primary = iterators[0]
        output = LiveOutput.create(
            file,
            primary.recommended_data_shape()[:rank],
            primary._final[0] if primary._final is not None else None,
            source=source_file.filename,
            datasets=paths,
        )
        started[0] = True
        start = 0
    else:
        output = resumed
        targets = [file[path] for path in output.datasets]
        rows = [int(t.chunks[0]) for t in targets]
        per_row = max(math.prod(output.scan_inner), 1)
        complete = min(output.frames_complete, frames_keyed(output.keys))
        step = math.lcm(*rows)
        start_row = complete // per_row // step * step
        start = start_row * per_row
        sources = [source_file[path] for path in output.datasets]
        iterators = _iterators(sources, follower, options, rows, start_row)
        pairs = list(zip(targets, iterators, strict=True))
        output.frames_complete = start
        output.claim()
        output.reopen()
    file.swmr_mode = True
    written = 0
    try:
        written = _write(file, output, pairs, rank, start)
    except KeyboardInterrupt:
        _finish(output, "interrupted", "interrupted", "stopped by Ctrl-C; resume to continue")
        raise
    except (OSError, RuntimeError) as exc:
        message = (
            str(exc) if isinstance(exc, OutputError) else f"writing {file.filename!r} failed: {exc}"
        )
        _finish(output, "failed", "error", message)
        raise OutputError(
            f"{message}. The output is valid and marked failed with {output.frames_complete} "
            "complete frames. Fix: free space or fix the cause, then resume=True (--resume)."
        ) from exc
    except BaseException as exc:
        _finish(output, "failed", "error", f"{type(exc).__name__}: {exc}")
        raise
    reason = follower.stop_reason or "finished"
    done = reason in ("finished", "complete") and output.frames_complete == (
        follower.current_max + 1
    )
    state = "complete" if done else "incomplete"
    _finish(output, state, reason, "" if done else f"the source stopped: {reason}")
    for iterator in iterators:
        iterator.close()
    return CopyResult(
        destination=file.filename,
        frames_complete=output.frames_complete,
        state=state,
        stop_reason=reason,
        resumed_from=start,
        seconds=round(time.monotonic() - began, 3),
        bytes_written=written,
    )


def _bookkeeping(follower: KeyFollower) -> set[str]:
    """The source's keys and finished flag: the copy has its own."""
    names = {k.name for k in follower.key_datasets}
    if follower.finished_dataset is not None:
        names.add(follower.finished_dataset.name)
    return names


def _remove_unstarted(path: Path, started: list[bool]) -> None:
    """Delete a new output whose setup failed before its status existed: it holds nothing."""
    if not started[0]:
        with contextlib.suppress(OSError):
            path.unlink()


def _closer(file: Any) -> Callable[..., bool]:
    """An exit callback closing the output. A failed close (a full disk) does not hide the
    error that came first; alone it is an OutputError."""

    def close(exc_type: Any, exc: BaseException | None, traceback: Any) -> bool:
        try:
            file.close()
        except (OSError, RuntimeError, ValueError) as failure:
            if exc is None:
                raise OutputError(
                    f"closing {file.filename!r} failed: {failure}. Fix: free space or fix the "
                    "cause, then resume=True (--resume): the frames marked complete are kept."
                ) from failure
            logger.warning("closing %s after an error also failed: %s", file.filename, failure)
        return False

    return close


def _finish(output: LiveOutput, state: str, reason: str, message: str) -> None:
    """Record the end, even when the disk is full (the status has its space already)."""
    with contextlib.suppress(OSError, RuntimeError, ValueError):
        output.finish(state, reason, message)
