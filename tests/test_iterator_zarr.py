"""LiveDataChunkIterator in hdmf-zarr's parallel write: NWBZarrIO with ``number_of_jobs=2``.

How hdmf-zarr (0.13) writes in parallel, in ``ZarrIODataChunkIteratorQueue.exhaust_queue``:
for each queued GenericDataChunkIterator that ``_is_pickleable`` accepts (it calls
``_to_dict()`` then ``_from_dict(dictionary=...)`` in the main process), the main process walks
``buffer_selection_generator`` to the end, then a ``ProcessPoolExecutor(max_workers=
number_of_jobs)`` maps ``function_wrapper`` over ``(store path, dataset path, iterator,
selection)`` tuples; each task unpickles the iterator (``__reduce__``: ``_from_dict(_to_dict())``)
and ``_write_buffer_zarr`` writes ``iterator._get_data(selection)`` into the Zarr array.
Iterators that are refused are written in the main process, one chunk at a time, silently.

Only complete sources are tested: the Zarr array is created at ``recommended_data_shape()``
and the parallel path never resizes it, so an unknown-length source cannot take this path.
"""

from __future__ import annotations

import datetime
import itertools
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest
from hdmf_zarr import NWBZarrIO
from hdmf_zarr import utils as zarr_utils
from pynwb import NWBFile, TimeSeries
from pynwb.image import ImageSeries

from h5live import LiveDataChunkIterator
from h5live.errors import DuplicateHandleError
from h5live.testing import frame_values

pytestmark = pytest.mark.live  # real writer processes


def new_nwbfile() -> NWBFile:
    return NWBFile(
        session_description="parallel conversion",
        identifier="h5live-zarr-test",
        session_start_time=datetime.datetime(2026, 11, 21, tzinfo=datetime.timezone.utc),
    )


def expected(n: int, frame: tuple[int, ...]) -> np.ndarray:
    return np.stack([frame_values(i, frame, "uint16") for i in range(n)])


def _write_and_tell_pid(function: Any, args: Any) -> int:
    """One of hdmf-zarr's buffer writes, in a worker: run it, say which process ran it."""
    function(args)
    return os.getpid()


class RecordingPool(ProcessPoolExecutor):
    """hdmf-zarr's process pool, recording its size and the process that wrote each buffer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_workers = kwargs.get("max_workers")
        self.pids: list[int] = []

    def map(self, fn: Any, *iterables: Any, **kwargs: Any) -> Any:
        pids = super().map(_write_and_tell_pid, itertools.repeat(fn), *iterables, **kwargs)
        return (self.pids.append(pid) for pid in pids)


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> list[RecordingPool]:
    """The process pools hdmf-zarr starts during the test."""
    made: list[RecordingPool] = []

    def make(*args: Any, **kwargs: Any) -> RecordingPool:
        made.append(RecordingPool(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(zarr_utils, "ProcessPoolExecutor", make)
    return made


@pytest.fixture
def pickle_checks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, str | None]]:
    """hdmf-zarr's verdicts on whether each queued iterator can go to the workers, and why."""
    queue = zarr_utils.ZarrIODataChunkIteratorQueue
    check = queue._is_pickleable
    verdicts: list[tuple[bool, str | None]] = []

    def recorded(iterator: Any) -> tuple[bool, str | None]:
        verdicts.append(check(iterator))
        return verdicts[-1]

    monkeypatch.setattr(queue, "_is_pickleable", staticmethod(recorded))
    return verdicts


def complete_source(simulated_writer: Any, name: str, **config: Any) -> str:
    writer = simulated_writer(name, **config)
    writer.run()
    writer.close()  # a complete file, no longer open in this process
    return str(writer.path)


def two_iterators(simulated_writer: Any) -> tuple[LiveDataChunkIterator, LiveDataChunkIterator]:
    spectra = complete_source(simulated_writer, "spectra.h5", scan_shape=(200,), frame_shape=(8,))
    images = complete_source(simulated_writer, "images.h5", scan_shape=(60,), frame_shape=(16, 12))
    return (
        LiveDataChunkIterator(
            spectra, "/entry/data/data", chunk_shape=(16, 8), buffer_shape=(64, 8)
        ),
        LiveDataChunkIterator(
            images, "/entry/data/data", chunk_shape=(8, 16, 12), buffer_shape=(24, 16, 12)
        ),
    )


def write_in_parallel(detector: Any, camera: Any, out: Any, context: str) -> None:
    nwbfile = new_nwbfile()
    nwbfile.add_acquisition(TimeSeries(name="detector", data=detector, unit="a.u.", rate=1e3))
    nwbfile.add_acquisition(ImageSeries(name="camera", data=camera, unit="n.a.", rate=1e2))
    with NWBZarrIO(str(out), "w") as io:
        # exhaust_dci=False: both iterators are queued, then written by one pool.
        io.write(nwbfile, number_of_jobs=2, multiprocessing_context=context, exhaust_dci=False)


def test_a_parallel_zarr_write_gives_the_same_data(
    simulated_writer, tmp_path, pools, pickle_checks
):
    out = tmp_path / "out.nwb.zarr"
    detector, camera = two_iterators(simulated_writer)
    with detector, camera:
        write_in_parallel(detector, camera, out, "spawn")

        # Both iterators went to the workers, through their pickling recipe ...
        reasons = "\n".join(str(reason) for _, reason in pickle_checks)
        assert [ok for ok, _ in pickle_checks] == [True, True], reasons
        # ... one pool of 2 processes wrote every buffer (4 + 3), none in this process ...
        assert [pool.max_workers for pool in pools] == [2]
        assert len(pools[0].pids) == 4 + 3
        assert os.getpid() not in pools[0].pids
        # ... and this process handed out selections only, never data (no serial fallback).
        assert detector.frames_done == camera.frames_done == 0

    with NWBZarrIO(str(out), "r") as io:
        read = io.read()
        detector_data = read.acquisition["detector"].data
        camera_data = read.acquisition["camera"].data
        assert detector_data.chunks == (16, 8)
        assert camera_data.chunks == (8, 16, 12)
        np.testing.assert_array_equal(detector_data[:], expected(200, (8,)))
        np.testing.assert_array_equal(camera_data[:], expected(60, (16, 12)))


# Python < 3.14 warns about fork() in a multi-threaded process on some platforms; hdmf-zarr's pool
# forks by default there, and the warning is not what this test is about.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_workers_are_refused_with_the_fix_rather_than_misread(simulated_writer, tmp_path):
    # A forked worker inherits this process's open handles on the sources: a second handle of
    # its own would read wrong chunks (HDF5 2.0), so h5live stops and names the fix.
    detector, camera = two_iterators(simulated_writer)
    with detector, camera, pytest.raises(DuplicateHandleError, match="'spawn' method"):
        write_in_parallel(detector, camera, tmp_path / "out.nwb.zarr", "fork")
