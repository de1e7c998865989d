"""hdmf-zarr writes of live sources, serial and parallel (``number_of_jobs=2``, spawn).

hdmf-zarr 0.13 creates an iterator's array at ``recommended_data_shape()`` (the rows complete
then) and its parallel writer never resizes it, so ``NWBZarrIO.write(..., number_of_jobs=2)``
fails on a live source (pinned here: when it stops failing, LiveNWBZarrIO can go).
``h5live.neuroconv.LiveNWBZarrIO`` grows the array to each selection before the workers write
and merges releases that end inside a chunk: every frame equals the source's, for a source of
unknown length, a pre-sized one, and one given ``final_scan_shape``. Serial writes work with
both IO classes. Writers are held mid-scan while the iterators are made, so that the length is
unknown to them (nothing here depends on timing).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np
import pytest
import zarr
from hdmf_zarr import NWBZarrIO
from pynwb import NWBFile, TimeSeries
from pynwb.image import ImageSeries

from h5live import LiveDataChunkIterator
from h5live.neuroconv import LiveHDF5Interface, LiveNWBZarrIO, get_default_backend_configuration
from h5live.neuroconv._zarr import ASSUMED_HDMF_ZARR, grown_selections
from h5live.testing import frame_values, wait_for_progress
from helpers import Background

pytestmark = pytest.mark.live  # real writer processes

FRAME = (16, 12)
N = 90
IDLE_S = 120.0


def new_nwbfile() -> NWBFile:
    return NWBFile(
        session_description="live zarr writes",
        identifier="h5live-zarr-parallel",
        session_start_time=datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc),
    )


def expected(n: int, frame: tuple[int, ...]) -> np.ndarray:
    return np.stack([frame_values(i, frame, "uint16") for i in range(n)])


@pytest.fixture
def live_source(writer_process) -> Iterator[Any]:
    """Makes a writer held at frame 10 and iterators over it (frames; flush times sharing
    the follower); closes the iterators at teardown."""
    made: list[LiveDataChunkIterator] = []

    def make(
        name: str = "camera.h5", **iterator_options: Any
    ) -> tuple[Any, LiveDataChunkIterator, LiveDataChunkIterator]:
        presized = iterator_options.pop("presized", False)
        writer = writer_process(
            name, scan_shape=(N,), frame_shape=FRAME, timestamps=True, presized=presized, hold_at=10
        )
        options = {"chunk_shape": (8, *FRAME), "buffer_shape": (16, *FRAME), **iterator_options}
        frames = LiveDataChunkIterator(writer.path, "/entry/data/data", timeout=IDLE_S, **options)
        times = LiveDataChunkIterator(
            frames.dataset.file["/entry/flush_time"],
            follower=frames.follower,
            chunk_shape=(8,),
            buffer_shape=(16,),
            max_latency_s=iterator_options.get("max_latency_s"),
        )
        made.extend([times, frames])
        return writer, frames, times

    yield make
    for iterator in made:
        iterator.close()


def write(io_class: Any, path: Any, frames: Any, times: Any, jobs: int, writer: Any) -> None:
    """Write both iterators; the writer, held at frame 10, goes on once the arrays exist
    (they are made at the 10 rows complete then)."""
    nwbfile = new_nwbfile()
    nwbfile.add_acquisition(ImageSeries(name="camera", data=frames, unit="n.a.", rate=30.0))
    nwbfile.add_acquisition(TimeSeries(name="flush", data=times, unit="s", rate=30.0))

    def run() -> None:
        with io_class(str(path), "w") as io:
            parallel = {"number_of_jobs": jobs, "multiprocessing_context": "spawn"}
            io.write(nwbfile, exhaust_dci=False, **(parallel if jobs > 1 else {}))

    background = Background(run)
    wait_for_progress(
        lambda: int((path / "acquisition/flush/data/.zarray").exists()) or None,
        1,
        what="arrays made in the Zarr file",
    )
    made = zarr.open(str(path), mode="r")["acquisition/camera/data"]
    assert made.shape[0] <= 10  # at most the frames written before the hold
    writer.go()
    background.join()
    writer.wait()
    frames.close()  # before the source is read again: this process's view of it is theirs
    times.close()


def assert_equal_to_source(path: Any, writer: Any) -> None:
    with NWBZarrIO(str(path), "r") as io:
        read = io.read()
        np.testing.assert_array_equal(read.acquisition["camera"].data[:], expected(N, FRAME))
        with h5py.File(writer.path, "r", libver="latest", swmr=True) as source:
            flush = source["/entry/flush_time"][...]
        np.testing.assert_array_equal(read.acquisition["flush"].data[:], flush)
        assert read.acquisition["camera"].data.chunks == (8, *FRAME)


def test_hdmf_zarrs_parallel_write_alone_stops_at_the_rows_complete_at_creation(
    live_source, tmp_path
):
    # Why LiveNWBZarrIO exists (hdmf-zarr 0.13): the array is made at the rows complete then
    # (10) and the workers' first write past them fails.
    writer, frames, times = live_source()
    with pytest.raises(ValueError, match="expected array with shape"):
        write(NWBZarrIO, tmp_path / "out.nwb.zarr", frames, times, 2, writer)
    array = zarr.open(str(tmp_path / "out.nwb.zarr"), mode="r")["acquisition/camera/data"]
    assert array.shape[0] < N


@pytest.mark.parametrize(
    "options",
    [{}, {"presized": True}, {"final_scan_shape": (N,)}],
    ids=["unknown-length", "pre-sized", "final-scan-shape"],
)
def test_a_parallel_write_of_a_live_source_equals_the_source(live_source, tmp_path, options):
    writer, frames, times = live_source(**options)
    write(LiveNWBZarrIO, tmp_path / "out.nwb.zarr", frames, times, 2, writer)
    assert_equal_to_source(tmp_path / "out.nwb.zarr", writer)
    assert frames.frames_done == 0  # every buffer was written by a worker, none here


@pytest.mark.parametrize("io_class", [NWBZarrIO, LiveNWBZarrIO], ids=["NWBZarrIO", "LiveNWBZarrIO"])
def test_a_serial_write_of_a_live_source_equals_the_source(live_source, tmp_path, io_class):
    writer, frames, times = live_source()
    write(io_class, tmp_path / "out.nwb.zarr", frames, times, 1, writer)
    assert_equal_to_source(tmp_path / "out.nwb.zarr", writer)


def test_releases_inside_a_chunk_reach_the_workers_as_whole_chunks(live_source, tmp_path):
    # With a latency bound the iterator releases complete frames before their chunk is full
    # (here: as soon as they are complete); two workers writing parts of one Zarr chunk would
    # each rewrite the whole chunk.
    writer, frames, times = live_source(max_latency_s=0.0)
    write(LiveNWBZarrIO, tmp_path / "out.nwb.zarr", frames, times, 2, writer)
    assert_equal_to_source(tmp_path / "out.nwb.zarr", writer)


def test_grown_selections_merge_to_chunk_rows_and_grow_the_array_first():
    array = zarr.zeros((3, 4), chunks=(8, 4), dtype="u2")
    handed: list[tuple[tuple[slice, ...], int]] = []
    released = [(slice(a, b), slice(0, 4)) for a, b in [(0, 3), (3, 8), (8, 11), (11, 19)]]
    for selection in grown_selections(iter(released), array):
        handed.append((selection, array.shape[0]))
    assert handed == [
        ((slice(0, 8), slice(0, 4)), 8),
        ((slice(8, 19), slice(0, 4)), 19),  # the end: what is pending, merged
    ]


def test_a_neuroconv_zarr_conversion_in_parallel_equals_the_source(writer_process, tmp_path):
    writer = writer_process(
        "camera.h5", scan_shape=(N,), frame_shape=FRAME, timestamps=True, hold_at=10
    )
    with LiveHDF5Interface(writer.path, timeout=IDLE_S) as interface:
        metadata = interface.get_metadata()
        metadata["NWBFile"]["session_start_time"] = "2026-03-04T05:06:07+00:00"
        nwbfile = interface.create_nwbfile(metadata=metadata)
        configuration = get_default_backend_configuration(nwbfile, backend="zarr")
        configuration.number_of_jobs = 2
        assert configuration.dataset_configurations["acquisition/camera/data"].full_shape[0] is None
        writer.go()
        interface.run_conversion(
            tmp_path / "camera.nwb.zarr", metadata=metadata, backend_configuration=configuration
        )
    writer.wait()
    with NWBZarrIO(str(tmp_path / "camera.nwb.zarr"), "r") as io:
        series = io.read().acquisition["camera"]
        np.testing.assert_array_equal(series.data[:], expected(N, FRAME))
        assert series.timestamps.shape == (N,)


def test_the_hdmf_zarr_hook_live_nwb_zarr_io_overrides_is_there():
    from importlib.metadata import version

    from hdmf_zarr.backend import ZarrIO

    assert version("hdmf-zarr") == ASSUMED_HDMF_ZARR  # else: re-read ZarrIO.write_dataset
    assert "__setup_chunked_dataset__" in vars(ZarrIO)
