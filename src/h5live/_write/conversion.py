"""What every live conversion shares: its source, destination, live iterators and result.

Contract
--------
- :class:`Conversion` opens the source (one :class:`~h5live.KeyFollower` shared by every live
  dataset) and the destination: new, replaced (``overwrite``) or resumed (``resume``: only an
  output of h5live from the same source, no other converter alive, writer flags of a killed
  one cleared). An existing destination is refused otherwise; a new one whose setup fails
  before its bookkeeping exists is removed.
- Live iterators of one conversion share the follower and the chunk and buffer rows, so that
  every live dataset advances together; a resumed conversion starts at the last chunk row all
  of them hold completely (rows written twice hold the same data).
- Writing, marking progress and recording the end are the one live write loop's
  (:class:`~h5live._write.loop.LiveWrite`): :meth:`Conversion.write` runs it (it switches the
  destination to SWMR mode); an NWB file is written by :class:`h5live.LiveNWBHDF5IO`, which runs the
  same loop, and :meth:`Conversion.result` reads how it ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from h5live._follow.follower import FollowPolicy, KeyFollower
from h5live._follow.keys import refresh_dataset
from h5live._iterate.iterator import LiveDataChunkIterator
from h5live._iterate.shapes import rows_within
from h5live._read.filters import SOURCE, Compression, h5dataio_options, source_compression
from h5live._source.recover import clear_writer_flags, writer_flags
from h5live._source.spec import SourceSpec, get_dataset, largest_frames, source_path
from h5live._source.virtual import first_source, is_virtual, source_file_path, virtual_sources
from h5live._stages import Stage, StageChain
from h5live._write.destination import OUTPUT_CHUNK_CACHE
from h5live._write.loop import LiveTarget, LiveWrite
from h5live._write.options import ConversionOptions
from h5live._write.output import LiveOutput, OutputLayout, frames_keyed
from h5live._write.parallel import check_workers
from h5live._write.sink import DatasetSink
from h5live._write.stop import Stopped, check_stop, request_stop
from h5live.errors import IteratorOptionError, OutputError, OutputExistsError, ScanShapeError

__all__ = [
    "OUTPUT_CHUNK_CACHE",
    "Conversion",
    "ConversionResult",
    "LiveOptions",
    "Stopped",
    "check_stop",
    "request_stop",
]

logger = logging.getLogger(__name__)

#: A conversion's buffer when none is given (hdmf's default is 1 GB): a live conversion
#: releases buffers within its latency anyway, and a smaller buffer costs less memory and page
#: faults (the converter's system time fell by a third for 512x512 frames at 1 kHz, measured
#: with benchmarks/bench_keepup.py's setup).
CONVERSION_BUFFER_GB = 0.128

#: With ``compression="source"``, a source's chunk shape is kept (and its chunks copied raw)
#: if its chunks hold at least this many bytes; smaller ones (one frame of a few channels)
#: would make millions of chunks.
MIN_KEPT_CHUNK = 64 << 10

#: Chunks of datasets converted beside the frames reach at least this size where the buffer
#: allows (see ``_secondary_rows``).
MIN_SECONDARY_CHUNK = 4 << 10


@dataclass(frozen=True)
class ConversionResult:
    """How a live conversion ended.

    Attributes
    ----------
    destination
        The output file.
    frames_complete
        Frames complete in it (keys set).
    state
        ``complete``, ``incomplete``, ``interrupted`` or ``failed``.
    stop_reason
        The source follower's (``finished``, ``complete``, ``timeout``).
    resumed_from
        The first frame this run wrote (0 unless resumed).
    seconds, bytes_written
        Duration of this run and the data bytes it wrote (as stored: compressed bytes for
        chunks copied raw or encoded by h5live's threads).
    chunk_copy
        Per live dataset, how its chunks were written: ``"raw"`` (stored chunks copied,
        never decoded: same chunks and filters as the source), ``"direct"`` (decoded, written
        whole past HDF5's chunk cache: no filters), ``"parallel (N workers): "`` (decoded,
        then encoded by N threads into what HDF5's filters store) or ``"decoded: "`` (through
        HDF5's filters), and why not raw.
    """

    destination: str
    frames_complete: int
    state: str
    stop_reason: str
    resumed_from: int
    seconds: float
    bytes_written: int
    chunk_copy: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LiveOptions:
    """The iterator options of a conversion (as in hdmf), plus latency and progress."""

    chunk_mb: float | None = None
    chunk_shape: tuple[int, ...] | None = None
    buffer_gb: float | None = None
    buffer_shape: tuple[int, ...] | None = None
    max_latency_s: float | None = 1.0
    display_progress: bool = False
    progress_bar_class: Callable[..., Any] | None = None
    progress_bar_options: dict[str, Any] | None = None
    #: processing stages per source dataset path
    stages: Mapping[str, Sequence[Stage]] = field(default_factory=dict)

    @classmethod
    def of(cls, options: ConversionOptions) -> LiveOptions:
        """The iterator options of a conversion's options."""
        return cls(
            options.chunk_mb,
            options.chunk_shape,
            options.buffer_gb,
            options.buffer_shape,
            options.max_latency_s,
            options.display_progress,
            options.progress_bar_class,
            options.progress_bar_options,
        )


def writer_flags_or_zero(path: str) -> int:
    """The superblock's writer flags, 0 for a file that is not HDF5."""
    try:
        return writer_flags(path)
    except (OSError, ValueError):
        return 0


def check_shape_option(
    option: str, shape: Sequence[int] | None, data_shape: Sequence[int], rank: int, where: str
) -> None:
    """Refuse a ``chunk_shape``/``buffer_shape`` that does not fit the data it cuts.

    It needs one entry per scan axis, then one per frame axis (``data_shape``: the scan's, then
    the written frame's), each at least 1 and, past the growing first axis, at most the data's.
    ``where`` names the dataset and its file.
    """
    if shape is None:
        return
    shape = tuple(shape)
    size = tuple(int(n) for n in data_shape)
    if (
        len(shape) == len(size)
        and all(n >= 1 for n in shape)
        and all(n <= d for n, d in zip(shape[1:], size[1:], strict=True))
    ):
        return
    scan, frame = size[:rank], size[rank:]
    kind = "a stack" if rank == 1 else f"a grid scan of rank {rank}"
    example = (shape[0] if shape and shape[0] >= 1 else 1, *scan[1:], *frame)
    raise ScanShapeError(
        f"{option}={shape} does not fit {where}, whose data are {kind} of frames {frame} "
        f"(shape {size}, the first axis growing): {option} needs {len(size)} entries, one per "
        f"scan axis then one per frame axis, each at least 1 and, after the first, at most the "
        f"data's. Fix: e.g. {option}={example} (--{option.replace('_', '-')} "
        f"{' '.join(str(n) for n in example)})."
    )


def _secondary_rows(primary: LiveDataChunkIterator, frame_bytes: int) -> tuple[int, int]:
    """Chunk and buffer rows of a dataset converted beside ``primary`` (timestamps beside
    frames): chunks of a multiple of the primary's chunk rows that reach
    ``MIN_SECONDARY_CHUNK`` bytes (one-frame chunks of 8-byte timestamps would be millions),
    within the primary's buffer rows, and buffers of whole such chunks."""
    rows, buffer = int(primary.chunk_shape[0]), int(primary.buffer_shape[0])
    wanted = rows * max(1, -(-MIN_SECONDARY_CHUNK // max(rows * frame_bytes, 1)))
    chunk = max(rows, min(wanted, buffer // rows * rows, primary.final_rows or wanted))
    return chunk, max(chunk, buffer // chunk * chunk)


def stages_by_path(
    stages: Sequence[Stage] | Mapping[str, Sequence[Stage]] | Stage | None, sources: Sequence[Any]
) -> dict[str, Sequence[Stage]]:
    """Stages per source dataset path: a list (or one stage) goes to the dataset with the
    largest frames (the detector's); a mapping names its datasets, each one of ``sources``."""
    if not stages:
        return {}
    if isinstance(stages, Mapping):
        names = {source_path(dataset) for dataset in sources}
        chosen: dict[str, Sequence[Stage]] = {
            "/" + path.lstrip("/"): list(chain) for path, chain in stages.items()
        }
        unknown = sorted(set(chosen) - names)
        if unknown:
            raise ValueError(
                f"stages are given for {unknown}, which are not converted live from "
                f"{sources[0].file.filename!r} (its live datasets are {sorted(names)}). Fix: "
                "name live datasets, or add them (datasets=[...], --data)."
            )
        return chosen
    largest = largest_frames(sources, 1)
    return {source_path(largest): [stages] if isinstance(stages, Stage) else list(stages)}


def conversion_filters(
    options: LiveOptions,
    compression: Compression,
    compression_opts: Any,
    shuffle: bool,
    sources: Sequence[Any],
) -> tuple[LiveOptions, list[dict[str, Any]]]:
    """The iterator options, and ``H5DataIO`` options per live dataset.

    ``"source"`` keeps each dataset's own filters, and, when no chunk option and no stage is
    given, the first's chunk shape if its chunks hold at least ``MIN_KEPT_CHUNK`` bytes: its
    stored chunks are then copied raw. A virtual dataset's are those of its first source
    dataset (its frames are decoded and encoded again: its chunks live in other files).
    """
    if compression != SOURCE:
        settings = h5dataio_options(compression, compression_opts, shuffle)
        return options, [settings for _ in sources]
    found = []
    kept: list[tuple[int, ...] | None] = []
    for dataset in sources:
        with _stored_as(dataset) as stored:
            try:
                found.append(source_compression(stored))
            except ValueError as exc:
                logger.warning("%s; it is written without compression", exc)
                found.append({})
            chunks = None if stored.chunks is None else tuple(int(n) for n in stored.chunks)
            fits = chunks is not None and len(chunks) == len(dataset.shape)
            kept.append(chunks if fits else None)
    first, chunks = sources[0], kept[0]
    chosen = options.chunk_mb is not None or options.chunk_shape is not None
    chosen = chosen or bool(options.stages.get(source_path(first)))  # its frames change
    stored_bytes = 0 if chunks is None else math.prod(chunks) * first.dtype.itemsize
    if not chosen and chunks is not None and stored_bytes >= MIN_KEPT_CHUNK:
        options = dataclasses.replace(options, chunk_shape=chunks)
    return options, found


@contextlib.contextmanager
def _stored_as(dataset: Any) -> Iterator[Any]:
    """What holds ``dataset``'s stored chunks: itself, or a virtual one's first source dataset
    (open only inside: see ``h5live._source.virtual.first_source``)."""
    if not is_virtual(dataset):
        yield dataset
        return
    with first_source(dataset) as source:
        yield dataset if source is None else source


def files_read(
    source: str | os.PathLike[str], follower: KeyFollower, datasets: Iterable[Any]
) -> list[str]:
    """The files that following ``source`` with ``follower`` and reading its ``datasets``
    touches: ``source``, the files the keys, finished flag and datasets are in (through
    external links), and a VDS's source files."""
    files = [os.fspath(source)]
    for dataset in [*follower.key_datasets, follower.finished_dataset, *datasets]:
        filename = getattr(getattr(dataset, "file", None), "filename", None)
        if filename is None:
            continue
        files.append(filename)
        if is_virtual(dataset):
            for name, _ in virtual_sources(dataset):
                found = source_file_path(filename, name) if name != "." else None
                files += [found] if found is not None else []
    return files


def check_not_a_source(
    destination: str | os.PathLike[str], files: Iterable[str], source: str | os.PathLike[str]
) -> None:
    """Refuse a destination that is one of the ``files`` a conversion of ``source`` reads:
    replacing it (overwrite) would swap the scan's own file for its copy, under a writer that
    may come back.

    Raises
    ------
    OutputExistsError
        Naming the destination, the source and the fix.
    """
    if not os.path.exists(destination):
        return
    for name in files:
        if os.path.exists(name) and os.path.samefile(name, destination):
            raise OutputExistsError(
                f"destination {os.fspath(destination)!r} is a file the conversion reads (source "
                f"{os.fspath(source)!r}). Fix: pass another destination path."
            )


class Conversion:
    """One live conversion: its source, follower, destination and bookkeeping.

    Use as a context manager; it closes both files (a failed close does not hide an earlier
    error) and removes a new destination whose setup failed.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        destination: str | os.PathLike[str],
        layout: OutputLayout,
        *,
        key_paths: Sequence[str] | None,
        finished_path: str | None,
        timeout: float | None,
        poll_interval_s: float,
        open_timeout_s: float,
        resume: bool,
        overwrite: bool,
        workers: int | None = None,
    ) -> None:
        self.began = time.monotonic()
        # refused before either file is opened, naming the output
        self.workers = check_workers(workers, f"{os.fspath(destination)!r}")
        self.layout = layout
        self.source_path = os.fspath(source)
        self.destination = Path(destination)
        self._stack = contextlib.ExitStack()
        spec = SourceSpec(
            self.source_path,
            None if key_paths is None else tuple(key_paths),
            finished_path,
            open_timeout_s,
        )
        self.source_file, found = spec.open_resolved()
        self.open_timeout_s = open_timeout_s
        self._stack.callback(self.source_file.close)
        policy = FollowPolicy(poll_interval_s=poll_interval_s)
        self.follower = KeyFollower(found.keys, timeout, found.finished, policy=policy)
        self.resume, self.overwrite = resume, overwrite
        self.file: Any = None
        self.output: LiveOutput | None = None
        self.iterators: list[LiveDataChunkIterator] = []
        self.start = 0

    # ------------------------------------------------------------------ files

    @classmethod
    def of(
        cls,
        source: str | os.PathLike[str],
        destination: str | os.PathLike[str],
        layout: OutputLayout,
        options: ConversionOptions,
    ) -> Conversion:
        """A conversion with the source and destination options of ``options``."""
        return cls(
            source,
            destination,
            layout,
            key_paths=options.key_paths,
            finished_path=options.finished_path,
            timeout=options.timeout,
            poll_interval_s=options.poll_interval_s,
            open_timeout_s=options.open_timeout_s,
            resume=options.resume,
            overwrite=options.overwrite,
            workers=options.workers,
        )

    def __enter__(self) -> Conversion:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)

    def open_destination(self, *, file_opener: Callable[[Path], Any] | None = None) -> bool:
        """Open the destination for writing; True if an output is resumed.

        ``file_opener``: how to create a new one (default: an h5py file with a small chunk
        cache, ``libver="latest"`` as SWMR needs).
        """
        path = self.destination
        if path.is_dir():
            raise OutputError(
                f"destination {os.fspath(path)!r} is a folder. Fix: pass the path of a file to "
                "write, in that folder or another."
            )
        check_not_a_source(path, self.source_files(), self.source_path)
        if path.exists() and (self.resume or self.overwrite):
            self._check_existing()
        if path.exists() and not (self.resume or self.overwrite):
            raise OutputExistsError(
                f"destination {os.fspath(path)!r} exists. Fix: pass resume=True (--resume) to "
                "continue it, overwrite=True (--overwrite) to replace it, or another path."
            )
        if not (path.exists() and self.resume):
            opener = file_opener or (
                lambda p: h5py.File(p, "w", libver="latest", rdcc_nbytes=OUTPUT_CHUNK_CACHE)
            )
            if not path.parent.is_dir():
                raise OutputError(
                    f"cannot create {os.fspath(path)!r}: the folder {os.fspath(path.parent)!r} "
                    "does not exist. Fix: create it, or pass another destination."
                )
            try:
                if path.exists():  # overwrite: a new file, never truncated under its readers
                    path.unlink()
                self.file = opener(path)
            except OSError as exc:
                raise OutputError(
                    f"cannot create {os.fspath(path)!r}: {exc}. Fix: check that the folder is "
                    "writable and has space, or pass another destination."
                ) from exc
            self._stack.callback(self._remove_unstarted)
            self._stack.push(self._closer)
            return False
        clear_writer_flags(path)  # a converter killed while writing left them set
        try:
            # SWMR readers of the output (h5live follow, swmr_tools) hold a file lock that would
            # refuse this writer: _check_existing has made sure no other writer has it open.
            self.file = h5py.File(
                path, "a", libver="latest", rdcc_nbytes=OUTPUT_CHUNK_CACHE, locking=False
            )
        except OSError as exc:
            raise OutputError(
                f"cannot open {os.fspath(path)!r} to resume it: {exc}. Fix: check that the file "
                "is whole and writable; if it is damaged, overwrite=True (--overwrite) starts "
                "again."
            ) from exc
        self._stack.push(self._closer)
        self.output = LiveOutput(self.file, self.layout)
        return True

    def _previous_writer(self) -> tuple[int, str, int | None, str] | None:
        """(pid, host, pid if alive on this host, source) of the h5live converter that wrote
        the existing destination; None if h5live did not write it. One read of the file."""
        try:
            with h5py.File(self.destination, "r", libver="latest", swmr=True) as peek:
                output = LiveOutput(peek, self.layout)
                (pid, host), alive = output.writer, output.writer_alive()
                return pid, host, alive, output.source
        except (OSError, KeyError, ValueError):
            return None

    def source_files(self) -> list[str]:
        """The files this conversion reads (see :func:`files_read`)."""
        return files_read(self.source_path, self.follower, [i.dataset for i in self.iterators])

    def _check_existing(self) -> None:
        """Refuse an existing destination that a writer may still have open (SWMR writers hold
        no lock: only a dead h5live converter of this host may have left its writer flags set),
        and, to resume, one that h5live did not write from this source."""
        path = os.fspath(self.destination)
        flags, previous = writer_flags_or_zero(path), self._previous_writer()
        if previous is None:
            if flags:
                raise OutputExistsError(
                    f"destination {path!r} is open for writing by another program, or by one "
                    "that crashed (its superblock says so). Fix: stop that writer first; if it "
                    f"is gone, run `h5clear -s -i {path}` and try again."
                )
            if self.resume:
                raise OutputExistsError(
                    f"destination {path!r} is not an output of h5live (no {self.layout.keys} "
                    "with its progress), so it cannot be resumed. Fix: overwrite=True "
                    "(--overwrite), or another path."
                )
            return
        pid, host, alive, source = previous
        if alive is not None or (flags and host != socket.gethostname()):
            raise OutputExistsError(
                f"destination {path!r} is still being written by process {pid} on {host!r}. "
                "Fix: wait for it or stop it first; if it is gone, run "
                f"`h5clear -s -i {path}` and try again."
            )
        if self.resume and os.path.realpath(source) != os.path.realpath(self.source_path):
            raise OutputExistsError(
                f"destination {path!r} was converted from {source!r}, not from "
                f"{self.source_path!r}, so it cannot be resumed from it. Fix: pass that "
                "source, or overwrite=True (--overwrite)."
            )

    def _remove_unstarted(self) -> None:
        """Delete a new output whose setup failed before its bookkeeping existed."""
        if self.output is None:
            with contextlib.suppress(OSError):
                self.destination.unlink()

    def _closer(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> bool:
        try:
            self.file.close()
        except (OSError, RuntimeError, ValueError) as failure:
            if exc is None:
                raise OutputError(
                    f"closing {os.fspath(self.destination)!r} failed: {failure}. Fix: free "
                    "space or fix the cause, then resume=True (--resume): the frames marked "
                    "complete are kept."
                ) from failure
            logger.warning("closing %s after an error also failed: %s", self.destination, failure)
        return False

    def live_datasets(self, paths: Sequence[str]) -> list[Any]:
        """The source's datasets at ``paths``, checked before the destination is touched.

        Raises
        ------
        DatasetNotFoundError
            Nothing at a path, or a group.
        ValueError
            A path is the source's keys or finished flag, or its leading dims are not the scan.
        """
        rank = self.follower.scan_rank
        bookkeeping = {source_path(k) for k in self.follower.key_datasets}
        if self.follower.finished_dataset is not None:
            bookkeeping.add(source_path(self.follower.finished_dataset))
        inner = tuple(self.follower.key_datasets[0].shape[1:rank])
        found = []
        for path in paths:
            name = "/" + path.lstrip("/")
            if name in bookkeeping:
                raise ValueError(
                    f"{name!r} in {self.source_path!r} is the source's key or finished dataset, "
                    "not data. Fix: pass the frames' dataset (--data), e.g. '/entry/data/data'."
                )
            dataset = get_dataset(self.source_file, name, "data", timeout_s=self.open_timeout_s)
            if len(dataset.shape) < rank or tuple(dataset.shape[1:rank]) != inner:
                raise ValueError(
                    f"data dataset {name!r} in {self.source_path!r} has shape {dataset.shape}, "
                    f"which does not start with the scan's inner dims {inner} (keys "
                    f"{source_path(self.follower.key_datasets[0])!r}). Fix: pass a dataset that "
                    "grows with the scan (--data)."
                )
            found.append(dataset)
        return found

    # ------------------------------------------------------------------ iterators

    def check_options(self, sources: Sequence[Any], options: LiveOptions) -> None:
        """Refuse chunk and buffer shapes that do not fit the first live dataset's written
        data, before the destination is touched (they are that dataset's)."""
        if not sources:
            return
        rank = self.follower.scan_rank
        inner = tuple(self.follower.key_datasets[0].shape[1:rank])
        dataset = sources[0]
        stages = tuple(options.stages.get(source_path(dataset), ()))
        frame = StageChain(stages, dataset.shape[rank:], dataset.dtype).frame_shape
        data_shape = (dataset.shape[0], *inner, *frame)
        where = f"{source_path(dataset)!r} in {self.source_path!r}"
        check_shape_option("chunk_shape", options.chunk_shape, data_shape, rank, where)
        check_shape_option("buffer_shape", options.buffer_shape, data_shape, rank, where)

    def live_iterators(
        self,
        sources: Sequence[Any],
        options: LiveOptions,
        chunk_rows: Sequence[int] | None = None,
        start_rows: Sequence[int] | None = None,
    ) -> list[LiveDataChunkIterator]:
        """One iterator per live dataset, sharing the follower and the first's chunk and
        buffer rows (``chunk_rows``: a resumed destination's, per dataset)."""
        rank = self.follower.scan_rank
        inner = tuple(self.follower.key_datasets[0].shape[1:rank])
        iterators: list[LiveDataChunkIterator] = []
        for k, dataset in enumerate(sources):
            stages = tuple(options.stages.get(source_path(dataset), ()))
            # what is written: the frames after the stages
            frame = StageChain(stages, dataset.shape[rank:], dataset.dtype).frame_shape
            shapes: dict[str, Any]
            if k == 0 and chunk_rows is None:
                shapes = {
                    "chunk_mb": options.chunk_mb,
                    "chunk_shape": options.chunk_shape,
                    "buffer_gb": options.buffer_gb
                    if options.buffer_gb is not None or options.buffer_shape is not None
                    else CONVERSION_BUFFER_GB,
                    "buffer_shape": options.buffer_shape,
                }
            else:
                buffer_rows = None
                if chunk_rows is not None:
                    rows = chunk_rows[k]
                    final = iterators[0].final_rows if iterators else self._final_rows()
                    if final is not None:  # chunks made while the length was unknown
                        rows = max(1, min(rows, final))  # may exceed it
                    if iterators:
                        buffer_rows = max(rows, iterators[0].buffer_shape[0] // rows * rows)
                else:
                    frame_bytes = dataset.dtype.itemsize * max(math.prod((*inner, *frame)), 1)
                    rows, buffer_rows = _secondary_rows(iterators[0], frame_bytes)
                shapes = {"chunk_shape": (rows, *inner, *frame)}
                if buffer_rows is not None:
                    shapes["buffer_shape"] = (buffer_rows, *inner, *frame)
                elif options.buffer_shape is not None:
                    shapes["buffer_shape"] = (options.buffer_shape[0], *inner, *frame)
                else:
                    shapes["buffer_gb"] = options.buffer_gb
            progress = options.display_progress and k == 0

            common: dict[str, Any] = {
                "follower": self.follower,
                "start_row": start_rows[k] if start_rows is not None else 0,
                "stages": stages,
                "max_latency_s": options.max_latency_s,
                "display_progress": progress,
                "progress_bar_class": options.progress_bar_class if progress else None,
                "progress_bar_options": options.progress_bar_options if progress else None,
            }
            try:
                iterator = LiveDataChunkIterator(dataset, **common, **shapes)
            except IteratorOptionError:
                # The source finished between the first iterator (made while its length was
                # unknown: chunks of up to 4096 rows) and this one, which now knows a length
                # its chunk rows exceed (hdmf refuses that): cut them to it.
                final = self._final_rows()
                rows = int((shapes.get("chunk_shape") or (0,))[0])
                if k == 0 or final is None or rows <= final:
                    raise
                cut = {
                    name: (rows_within(shape[0], final), *shape[1:])
                    for name in ("chunk_shape", "buffer_shape")
                    if (shape := shapes.get(name)) is not None
                }
                shapes = {**shapes, **cut}
                iterator = LiveDataChunkIterator(dataset, **common, **shapes)
            iterators.append(iterator)
        self.iterators = iterators
        return iterators

    def _final_rows(self) -> int | None:
        """The length of the scan's first axis if it is known now (fixed keys, or a source
        that has finished), else None."""
        rank = self.follower.scan_rank
        keys = self.follower.key_datasets[0]
        if rank and all(n is not None for n in keys.maxshape[:rank]):
            return int(keys.maxshape[0])
        if self.follower.stop_reason is None:
            self.follower.poll()
            self.follower.poll()  # the flag is read on a poll that finds nothing new
        if self.follower.stop_reason not in ("finished", "complete"):
            return None
        per_row = max(math.prod(int(n) for n in keys.shape[1:rank]), 1)
        return -(-(self.follower.current_max + 1) // per_row)

    def create_output(
        self, paths: Sequence[str], source_paths: Sequence[str] | None = None
    ) -> LiveOutput:
        """The new destination's bookkeeping, shaped by the first live iterator."""
        primary = self.iterators[0]
        rank = self.follower.scan_rank
        self.output = LiveOutput.create(
            self.file,
            self.layout,
            primary.recommended_data_shape()[:rank],
            primary.final_rows,
            source=self.source_file.filename,
            datasets=paths,
            source_datasets=source_paths,
        )
        return self.output

    def resume_iterators(
        self, options: LiveOptions, sources: Sequence[Any]
    ) -> list[tuple[Any, LiveDataChunkIterator]]:
        """(destination dataset, iterator) pairs that continue a resumed output from the
        source datasets ``sources`` (the ones it was converted from, in the same order)."""
        output = self._live_output()
        given = [source_path(dataset) for dataset in sources]
        if given != output.source_datasets:
            raise OutputExistsError(
                f"destination {os.fspath(self.destination)!r} was converted from the datasets "
                f"{output.source_datasets} of the source, not {given}. Fix: resume with the "
                "same data datasets (--data), or overwrite=True (--overwrite)."
            )
        targets = [self.file[path] for path in output.datasets]
        rows = [int(t.chunks[0]) for t in targets]
        per_row = max(math.prod(output.scan_inner), 1)
        complete = min(output.frames_complete, frames_keyed(output.keys))
        for target in targets:  # rows a killed converter had grown to but not marked
            if target.shape[0] > -(-complete // per_row):
                target.resize(-(-complete // per_row), axis=0)
        starts = [complete // per_row // r * r for r in rows]  # each its last whole chunk row
        self.start = min(starts) * per_row
        iterators = self.live_iterators(sources, options, rows, starts)
        self._check_same_frames(targets, iterators, starts)
        output.frames_complete = complete  # rows from the starts on are rewritten, the same
        output.claim()
        output.reopen()
        return list(zip(targets, iterators, strict=True))

    def _check_same_frames(
        self,
        targets: Sequence[Any],
        iterators: Sequence[LiveDataChunkIterator],
        rows: Sequence[int],
    ) -> None:
        """Refuse to resume from a source that is not the one converted so far (the same path
        can hold a new acquisition): same dtype and frame shape (after the stages), and the last
        chunk row kept (before ``rows``, per dataset) equal to the source's."""
        for target, iterator, row in zip(targets, iterators, rows, strict=True):
            source, problem = iterator.dataset, ""
            frames = tuple(iterator.maxshape[1:])
            if target.dtype != iterator.dtype or tuple(target.shape[1:]) != frames:
                problem = (
                    f"{source.name!r} gives dtype {iterator.dtype} and frames {frames}, "
                    f"the output has {target.dtype} and {target.shape[1:]}"
                )
            elif row > 0:
                last = slice(max(0, row - int(target.chunks[0])), row)
                refresh_dataset(source)
                if source.shape[0] < row or not np.array_equal(
                    target[last], iterator.stages(source[last])
                ):
                    problem = f"rows {last.start}..{last.stop - 1} of {source.name!r} differ"
            if problem:
                raise OutputExistsError(
                    f"destination {os.fspath(self.destination)!r} cannot be resumed from "
                    f"{self.source_path!r}: {problem} (a new acquisition under the same name?). "
                    "Fix: pass a new destination, or overwrite=True (--overwrite)."
                )

    def _live_output(self) -> LiveOutput:
        if self.output is None:
            raise RuntimeError("the destination's bookkeeping is not there yet")
        return self.output

    # ------------------------------------------------------------------ writing

    def live_write(self, pairs: Sequence[tuple[Any, LiveDataChunkIterator]]) -> LiveWrite:
        """The write of the live datasets ``pairs`` (destination dataset, iterator): a sink
        each, one loop (:class:`~h5live._write.loop.LiveWrite`)."""
        targets = [
            LiveTarget(iterator, DatasetSink.for_iterator(dataset, iterator, workers=self.workers))
            for dataset, iterator in pairs
        ]
        return LiveWrite(self.file, self._live_output(), targets)

    def write(self, pairs: Sequence[tuple[Any, LiveDataChunkIterator]]) -> ConversionResult:
        """Write the live datasets ``pairs`` until the source stops (every object of the
        destination exists by now) and record the end; the result."""
        writer = self.live_write(pairs)
        writer.run()
        return self.result(writer)

    def result(self, writer: LiveWrite) -> ConversionResult:
        """How the run ended (``writer`` has ended it), and close the iterators."""
        output = self._live_output()
        for iterator in self.iterators:
            iterator.close()
        return ConversionResult(
            destination=self.file.filename,
            frames_complete=output.frames_complete,
            state=writer.state,
            stop_reason=writer.stop_reason,
            resumed_from=self.start,
            seconds=round(time.monotonic() - self.began, 3),
            bytes_written=writer.bytes_written,
            chunk_copy=writer.chunk_copy,
        )
