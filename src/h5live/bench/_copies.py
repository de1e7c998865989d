"""One copy of a complete source, made by h5live or by an alternative, timed in this process.

Contract
--------
- Every method copies ``/entry/data/data`` of a complete source (see :mod:`._data`) into a new
  file, with the destination chunk shape it is given and, for a compressed source, the
  source's own filters.
- :func:`timed` measures wall time and the peak of memory allocated through Python (numpy
  arrays included) with ``tracemalloc``; HDF5's own C allocations (chunk caches of about 1 MiB
  per file, one chunk's filter buffers) are not seen by it. Measured in-process because a
  fresh process per measurement costs about a second of imports (hdmf, h5py) and resident-set
  peaks cannot be reset between copies in one process.
- A method that cannot run here (pynwb or swmr_tools missing, NWB and a grid scan) raises
  :class:`MethodUnavailable` with the reason; the caller reports it instead of a number.
"""

from __future__ import annotations

import datetime
import itertools
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from hdmf.data_utils import GenericDataChunkIterator

from h5live._read.filters import source_compression
from h5live.bench._data import DATA, FINISHED, KEYS, h5py_filters

__all__ = [
    "ALTERNATIVES",
    "REFERENCE",
    "CopyJob",
    "H5pyIterator",
    "MethodUnavailable",
    "copy_with",
    "timed",
]

#: The method ratios are computed against.
REFERENCE = "h5py chunk-by-chunk"
ALTERNATIVES = (
    REFERENCE,
    "raw chunk copy",
    "hdmf GDCI via NWB",
    "swmr_tools DataSource",
    "h5live copy_live",
    "h5live iterator via NWB",
)


class MethodUnavailable(Exception):
    """A copy method cannot run here; the message says why."""


@dataclass(frozen=True)
class CopyJob:
    """One copy: from ``source`` into a new ``destination`` with these shapes.

    ``chunk_shape`` and ``buffer_shape`` are whole dataset shapes (scan block and frame).
    """

    source: Path
    destination: Path
    chunk_shape: tuple[int, ...]
    buffer_shape: tuple[int, ...]
    scan_rank: int = 1


def timed(call: Callable[[], Any]) -> tuple[float, int, Any]:
    """Seconds, peak bytes allocated through Python above the start, and the result."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return seconds, max(int(peak), 0), result


def chunk_starts(shape: tuple[int, ...], chunks: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """The offset of every chunk of a dataset, in C order."""
    return itertools.product(*(range(0, n, c) for n, c in zip(shape, chunks, strict=True)))


def _selection(start: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(s, s + c) for s, c in zip(start, chunks, strict=True))


def _open_pair(job: CopyJob) -> tuple[Any, Any]:
    source = h5py.File(job.source, "r", libver="latest", swmr=True)
    try:
        destination = h5py.File(job.destination, "w", libver="latest")
    except BaseException:
        source.close()
        raise
    return source, destination


def _filters(dataset: Any) -> dict[str, Any]:
    return h5py_filters(source_compression(dataset))


def copy_h5py(job: CopyJob) -> dict[str, Any]:
    """Plain h5py: read and write one destination chunk at a time."""
    source, destination = _open_pair(job)
    with source, destination:
        data = source[DATA]
        copy = destination.create_dataset(
            DATA,
            shape=data.shape,
            maxshape=data.maxshape,
            dtype=data.dtype,
            chunks=job.chunk_shape,
            **_filters(data),
        )
        for start in chunk_starts(data.shape, job.chunk_shape):
            selection = _selection(start, job.chunk_shape)
            copy[selection] = data[selection]
    return {}


def copy_raw(job: CopyJob) -> dict[str, Any]:
    """``read_direct_chunk`` / ``write_direct_chunk``: stored chunks, never decoded (the
    destination has the source's chunks and filters)."""
    source, destination = _open_pair(job)
    with source, destination:
        data = source[DATA]
        chunks = tuple(data.chunks)
        copy = destination.create_dataset(
            DATA,
            shape=data.shape,
            maxshape=data.maxshape,
            dtype=data.dtype,
            chunks=chunks,
            **_filters(data),
        )
        read, write = data.id.read_direct_chunk, copy.id.write_direct_chunk
        for start in chunk_starts(data.shape, chunks):
            mask, stored = read(start)
            write(start, stored, mask)
    return {"chunks": list(chunks)}


def copy_swmr_tools(job: CopyJob) -> dict[str, Any]:
    """swmr_tools 0.9: ``DataSource`` frame by frame, ``utils.create_dataset`` and
    ``utils.append_data`` into a dataset of the destination's chunks and filters."""
    try:
        from swmr_tools import DataSource, utils
    except ImportError as exc:
        raise MethodUnavailable(f"swmr_tools is not installed ({exc})") from exc
    source, destination = _open_pair(job)
    with source, destination:
        data = source[DATA]
        frames = DataSource([source[KEYS]], {"data": data}, 1, source[FINISHED])
        frame_shape = data.shape[job.scan_rank :]
        copy = None
        for item in frames:
            frame = item["data"].reshape(frame_shape)  # it keeps the scan dims (size 1)
            if copy is None:
                copy = utils.create_dataset(
                    frame,
                    tuple(frames.kf.maxshape),
                    destination,
                    DATA,
                    chunks=job.chunk_shape,
                    **_filters(data),
                )
            else:
                utils.append_data(frame, item.slice_metadata, copy)
    return {}


def copy_h5live(job: CopyJob) -> dict[str, Any]:
    """``h5live.copy_live`` with ``compression="source"`` (stored chunks copied raw where the
    chunks match)."""
    from h5live._write.copy import copy_live

    result = copy_live(
        job.source,
        job.destination,
        datasets=[DATA],
        compression="source",
        chunk_shape=job.chunk_shape,
        buffer_shape=job.buffer_shape,
        timeout=10.0,
        overwrite=True,
    )
    if result.state != "complete":
        raise RuntimeError(f"copy_live ended {result.state} ({result.stop_reason})")
    return {"chunk_copy": result.chunk_copy.get(DATA, "?")}


class H5pyIterator(GenericDataChunkIterator):  # type: ignore[misc]
    """hdmf's iterator over a complete h5py dataset, as its tutorial writes one."""

    def __init__(self, dataset: Any, **kwargs: Any) -> None:
        self.dataset = dataset
        super().__init__(**kwargs)

    def _get_data(self, selection: tuple[slice, ...]) -> Any:
        return self.dataset[selection]

    def _get_maxshape(self) -> tuple[int, ...]:
        return tuple(self.dataset.shape)

    def _get_dtype(self) -> np.dtype[Any]:
        dtype: np.dtype[Any] = np.dtype(self.dataset.dtype)
        return dtype


def _nwb_write(data: Any, job: CopyJob, frame_ndim: int, options: dict[str, Any]) -> None:
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.image import ImageSeries

    nwbfile = NWBFile(
        session_description="h5live bench",
        identifier="h5live-bench",
        session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    )
    with warnings.catch_warnings():  # plugin filters are what the source has
        warnings.filterwarnings("ignore", "[0-9]+ compression may not be available")
        wrapped = H5DataIO(data, **options)
    kind = ImageSeries if frame_ndim >= 2 else TimeSeries
    nwbfile.add_acquisition(kind(name="frames", data=wrapped, unit="counts", rate=100.0))
    with NWBHDF5IO(job.destination, "w") as io:
        io.write(nwbfile)


def _nwb_available(job: CopyJob) -> None:
    if job.scan_rank != 1:
        raise MethodUnavailable("NWB series have one time axis: not for a grid scan")
    try:
        import pynwb.image  # noqa: F401
    except ImportError as exc:
        raise MethodUnavailable("pynwb is not installed (pip install 'h5live[nwb]')") from exc


def copy_hdmf(job: CopyJob) -> dict[str, Any]:
    """hdmf's ``GenericDataChunkIterator`` over the complete h5py dataset, in ``H5DataIO``,
    written by ``NWBHDF5IO`` (HDF5IO) in an ImageSeries (TimeSeries for 1-D frames)."""
    _nwb_available(job)
    with h5py.File(job.source, "r", libver="latest", swmr=True) as source:
        data = source[DATA]
        iterator = H5pyIterator(data, chunk_shape=job.chunk_shape, buffer_shape=job.buffer_shape)
        _nwb_write(iterator, job, data.ndim - 1, source_compression(data))
    return {}


def copy_h5live_nwb(job: CopyJob) -> dict[str, Any]:
    """``h5live.LiveDataChunkIterator`` in ``H5DataIO``, written by ``NWBHDF5IO`` as for
    hdmf's iterator."""
    _nwb_available(job)
    from h5live._iterate.iterator import LiveDataChunkIterator

    with h5py.File(job.source, "r", libver="latest", swmr=True) as source:
        data = source[DATA]
        with LiveDataChunkIterator(
            data, chunk_shape=job.chunk_shape, buffer_shape=job.buffer_shape
        ) as iterator:
            _nwb_write(iterator, job, data.ndim - 1, source_compression(data))
    return {}


_METHODS: dict[str, Callable[[CopyJob], dict[str, Any]]] = {
    REFERENCE: copy_h5py,
    "raw chunk copy": copy_raw,
    "hdmf GDCI via NWB": copy_hdmf,
    "swmr_tools DataSource": copy_swmr_tools,
    "h5live copy_live": copy_h5live,
    "h5live iterator via NWB": copy_h5live_nwb,
}


def copy_with(method: str, job: CopyJob) -> dict[str, Any]:
    """Run one copy; seconds, peak Python memory (bytes) and notes (e.g. ``chunk_copy``).

    Raises
    ------
    MethodUnavailable
        The method cannot run here (before anything is timed).
    """
    function = _METHODS[method]
    if "NWB" in method:  # imported before the clock starts
        _nwb_available(job)
    if method.startswith("swmr_tools"):
        try:
            import swmr_tools  # noqa: F401
        except ImportError as exc:
            raise MethodUnavailable(f"swmr_tools is not installed ({exc})") from exc
    try:
        seconds, peak, notes = timed(lambda: function(job))
    finally:
        job.destination.unlink(missing_ok=True)
    return {"seconds": seconds, "peak_bytes": peak, **notes}
