"""LiveHDF5IO: hdmf's ``HDF5IO`` in mode ``"w"``, writing every live chunk iterator live.

Contract
--------
- ``with LiveHDF5IO(path, "w", manager=...) as io: io.write(container)`` writes the container
  as ``HDF5IO`` does, except for the datasets whose data is a
  :class:`~h5live.LiveDataChunkIterator` (bare or in an ``H5DataIO``): hdmf creates them with
  every other object, the specification is cached, then h5live cuts them to no rows, adds its
  bookkeeping (keys never empty, finished flag, frames complete, state:
  :mod:`h5live._write.output`), switches the file to SWMR mode and writes them with the one
  live write loop (:mod:`h5live._write.loop`), round-robin, so that SWMR readers (h5py,
  pynwb, ``h5live follow``, swmr_tools) follow the file while it is written. ``write``
  returns when every source has stopped; the output then says ``complete`` or ``incomplete``
  (``interrupted``/``failed`` if it did not end normally). Other chunk iterators are written
  by hdmf, before SWMR mode.
- The file is made with ``libver="latest"`` (SWMR needs it). Mode ``"w"`` replaces an
  existing file by a new one (never truncating it under its readers) unless a writer still has
  it open; ``"w-"`` and ``"x"`` refuse an existing file. A ``file=`` given must be such a file.
- The bookkeeping goes where :attr:`LiveHDF5IO.live_layout` says (h5live's
  ``/entry/keys/key_0`` layout; ``ScratchData`` in ``/scratch`` for NWB:
  :class:`h5live.LiveNWBHDF5IO`). Its keys follow the first live dataset's scan; a frame is
  marked complete once every live dataset holds it.
- hdmf's private queue of chunk iterators is reached through :mod:`h5live._write.hdmf_private`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

from hdmf.backends.hdf5.h5tools import HDF5IO

from h5live._iterate.iterator import LiveDataChunkIterator
from h5live._write.destination import create_live_file, open_live_output
from h5live._write.hdmf_private import defer_chunk_iterators, io_file
from h5live._write.loop import LiveTarget, LiveWrite
from h5live._write.output import HDF5_LAYOUT, LiveOutput, OutputLayout, frames_keyed
from h5live._write.parallel import check_workers
from h5live._write.sink import DatasetSink
from h5live.errors import OutputExistsError

__all__ = ["LiveHDF5IO", "LiveWriting"]

logger = logging.getLogger(__name__)

_CREATING = ("w", "w-", "x")
_OLD_SUPERBLOCK = ("earliest", "v108")


def _is_live(data: Any) -> bool:
    return isinstance(data, LiveDataChunkIterator)


class LiveWriting:
    """What makes an hdmf ``HDF5IO`` (or a subclass, such as pynwb's) write live: mix it in
    before the IO class."""

    #: Where the bookkeeping goes.
    live_layout: OutputLayout = HDF5_LAYOUT

    def __init__(self, path: Any = None, mode: str = "w", *args: Any, **kwargs: Any) -> None:
        if mode not in (*_CREATING, "a"):
            raise ValueError(
                f"{type(self).__name__} writes new files (mode 'w', 'w-' or 'x') or resumes one "
                f"it wrote (mode 'a'), got mode {mode!r}. Fix: use "
                f"{type(self).__mro__[2].__name__} to read, or one of those modes."
            )
        self.resuming = mode == "a"
        #: Threads encoding the chunks of compressed live datasets (None: one per core).
        where = path if path is not None else getattr(kwargs.get("file"), "filename", None)
        self.live_workers = check_workers(kwargs.pop("workers", None), repr(where))
        file = kwargs.pop("file", None)
        made = None
        if file is None:
            if path is None:
                raise ValueError(
                    f"{type(self).__name__} needs a path or file=. Fix: pass the path of the "
                    "file to write."
                )
            if self.resuming:
                file = made = open_live_output(path, self.live_layout)
            else:
                file = made = create_live_file(path, mode)
        elif file.libver[0] in _OLD_SUPERBLOCK or file.mode != "r+":
            raise ValueError(
                f"file {file.filename!r} was opened with libver={file.libver} and mode "
                f"{file.mode!r}; SWMR mode needs a file made with libver='latest', open for "
                "writing. Fix: h5py.File(path, 'w', libver='latest'), or pass the path instead."
            )
        self.live_write: LiveWrite | None = None
        try:
            super().__init__(path, mode, *args, file=file, **kwargs)  # type: ignore[call-arg]
            self._live_queue = defer_chunk_iterators(self, _is_live)
        except BaseException:
            if made is not None:
                made.close()
            raise

    def write(self, *args: Any, **kwargs: Any) -> None:
        """Write the container as hdmf does, its live chunk iterators live (see the module).

        In mode ``"a"``, continue the live datasets of an output this class wrote from the
        same container (built again, with new iterators over the same sources): nothing else
        is written again.
        """
        if self.resuming:
            container = args[0] if args else kwargs["container"]
            self._resume_live(container)
            return
        queue = self._live_queue
        queue.deferred.clear()
        super().write(*args, **kwargs)  # type: ignore[misc]  # every object, the spec cached
        if queue.deferred:
            pairs = list(queue.deferred)
            queue.deferred.clear()
            self._write_live(pairs)

    def _write_live(self, pairs: Sequence[tuple[Any, LiveDataChunkIterator]]) -> None:
        file = io_file(self)
        primary = pairs[0][1]
        rank = primary.scan_rank
        for dataset, iterator in pairs:  # hdmf made them as long as the frames complete so far
            per_row = max(math.prod(iterator.scan_inner), 1)
            dataset.resize(iterator.start_frame // per_row, axis=0)
        output = LiveOutput.create(
            file,
            self.live_layout,
            primary.recommended_data_shape()[:rank],
            primary.final_rows,
            source=primary.source_file,
            datasets=[dataset.name for dataset, _ in pairs],
            source_datasets=[iterator.source_dataset_path for _, iterator in pairs],
        )
        targets = [
            LiveTarget(iterator, self._sink(dataset, iterator)) for dataset, iterator in pairs
        ]
        self.live_write = LiveWrite(file, output, targets)  # every object exists by now
        logger.info("%s: live, %d dataset(s)", file.filename, len(targets))
        self.live_write.run()

    def _sink(self, dataset: Any, iterator: LiveDataChunkIterator) -> DatasetSink:
        return DatasetSink.for_iterator(dataset, iterator, workers=self.live_workers)

    def _resume_live(self, container: Any) -> None:
        """Find the container's live datasets in the file, check they are the output's, and
        write on from the frames marked complete."""
        file = io_file(self)
        root = self.manager.build(container, source=self.source)  # type: ignore[attr-defined]
        found = dict(_live_builders(root))
        output = LiveOutput(file, self.live_layout)
        if not found or sorted(found) != sorted(output.datasets):
            raise OutputExistsError(
                f"{file.filename!r} was written live with the datasets {output.datasets}, but "
                f"this container's live datasets are {sorted(found)}. Fix: build the same "
                "container (the same LiveDataChunkIterators in the same places), or write it "
                "anew with mode 'w'."
            )
        pairs = [(file[path], found[path]) for path in output.datasets]
        sources = {os.path.realpath(iterator.source_file) for iterator in found.values()}
        if os.path.realpath(output.source) not in sources:
            raise OutputExistsError(
                f"{file.filename!r} was written from {output.source!r}, not from "
                f"{sorted(sources)}. Fix: resume it from that source, or write it anew with "
                "mode 'w'."
            )
        complete = min(output.frames_complete, frames_keyed(output.keys))
        per_row = max(math.prod(output.scan_inner), 1)
        rows = complete // per_row
        for dataset, _ in pairs:  # rows a killed writer grew but never marked
            if dataset.shape[0] > -(-complete // per_row):
                dataset.resize(-(-complete // per_row), axis=0)
        output.frames_complete = complete
        output.claim()
        output.reopen()
        targets = [
            LiveTarget(iterator, self._sink(dataset, iterator), done_rows=rows)
            for dataset, iterator in pairs
        ]
        self.live_write = LiveWrite(file, output, targets)
        logger.info("%s: resumed after %d frames", file.filename, complete)
        self.live_write.run()


def _live_builders(root: Any) -> list[tuple[str, LiveDataChunkIterator]]:
    """(path in the file, iterator) of every dataset builder under ``root`` whose data is a
    live chunk iterator (bare or in an ``H5DataIO``), in the order hdmf writes them."""
    found: list[tuple[str, LiveDataChunkIterator]] = []

    def walk(group: Any) -> None:
        for sub in group.groups.values():
            walk(sub)
        for dataset in group.datasets.values():
            data = getattr(dataset.data, "data", dataset.data)  # H5DataIO wraps it
            if _is_live(data):
                found.append(("/" + dataset.path.split("/", 1)[1], data))

    walk(root)
    return found


class LiveHDF5IO(LiveWriting, HDF5IO):  # type: ignore[misc]
    """hdmf's ``HDF5IO`` for new files, writing live chunk iterators live.

    A drop-in for ``HDF5IO(path, "w", manager=...)``: every
    :class:`~h5live.LiveDataChunkIterator` in the container (bare or in an ``H5DataIO``) is
    written while its source is, the file in SWMR mode before the first frame lands, with
    h5live's bookkeeping (``/entry/keys/key_0``, ``/entry/finished``, ``/entry/h5live/...``)
    so that ``h5live follow`` and swmr_tools follow it.

    Parameters
    ----------
    path
        The file to write.
    mode
        ``"w"`` (replace an existing file by a new one), ``"w-"`` or ``"x"`` (refuse one).
    manager, file, comm, driver, herd_path
        As for ``HDF5IO``; a ``file`` given must be made with ``libver="latest"``.
    workers
        Threads that encode the chunks of compressed live datasets (``H5DataIO`` with a
        compression), written in order with ``write_direct_chunk`` (``None``: one per core;
        ``0``: HDF5's filter pipeline, on one core).

    Attributes
    ----------
    live_write
        The last write's :class:`~h5live._write.loop.LiveWrite` (its ``state``, ``output``,
        ``bytes_written``, ``chunk_copy``), or None.

    Raises
    ------
    ValueError
        Another mode, or a file that cannot enter SWMR mode.
    OutputExistsError
        The file exists (``"w-"``, ``"x"``) or a writer has it open.

    Examples
    --------
    >>> from hdmf.backends.hdf5.h5_utils import H5DataIO  # doctest: +SKIP
    >>> from hdmf.common import DynamicTable, VectorData, get_manager  # doctest: +SKIP
    >>> frames = LiveDataChunkIterator("scan.h5", "/entry/data/data")  # doctest: +SKIP
    >>> table = DynamicTable(name="t", description="d",
    ...     columns=[VectorData(name="frames", description="f", data=H5DataIO(frames))])
    >>> with LiveHDF5IO("out.h5", "w", manager=get_manager()) as io:  # doctest: +SKIP
    ...     io.write(table)
    """

    def __repr__(self) -> str:
        state = None if self.live_write is None else self.live_write.state
        return f"<LiveHDF5IO {self.source!r} live_state={state!r}>"
