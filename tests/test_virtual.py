"""Master files of virtual datasets (VDS) and external links, complete, in this process: found,
followed, copied under the master's paths, and their missing sources waited for and named.

Live acquisitions (one writer process per file) are in test_multifile.py.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from h5live import (
    DataSource,
    FrameReader,
    KeyFollower,
    LiveDataChunkIterator,
    copy_live,
    sum_frames,
)
from h5live._source.spec import is_unallocated_contiguous, source_path, walk_datasets
from h5live._source.virtual import is_virtual, missing_sources, source_file_path
from h5live._write.copy import data_datasets
from h5live._write.passthrough import passthrough_refusal
from h5live.errors import SourceNotReadyError
from h5live.testing import AcquisitionConfig, FakeClock, frame_values
from h5live.testing._multifile import create_master, detector_paths, write_acquisition

N = 53  # not a whole number of blocks: the last block is short
FRAME = (4, 3)


def expected(config: AcquisitionConfig, part: int = 0) -> np.ndarray:
    offset = part * config.n_frames if config.layout == "links" else 0
    return np.stack([frame_values(i + offset, FRAME, config.dtype) for i in range(N)])


@pytest.fixture(params=["vds-growing", "vds-presized", "links"])
def master(request, tmp_path) -> tuple[Path, AcquisitionConfig]:
    """A finished acquisition of 3 files and its master."""
    layout, _, size = request.param.partition("-")
    path = tmp_path / "scan.h5"
    config = write_acquisition(
        path,
        files=3,
        layout=layout,
        presized=size == "presized",
        block=4,
        scan_shape=(N,),
        frame_shape=FRAME,
        timestamps=True,
    )
    return path, config


def test_a_finished_master_is_followed_to_its_last_frame(master):
    path, _config = master
    with KeyFollower.from_path(path, timeout=5) as follower:
        assert list(follower) == list(range(N))
        assert follower.stop_reason in ("finished", "complete")


def test_data_behind_links_and_virtual_datasets_are_found_by_the_masters_paths(master):
    path, config = master
    with KeyFollower.from_path(path, timeout=5) as follower, h5py.File(path, "r") as f:
        found = data_datasets(f, follower)
    assert found == sorted([*config.data_paths, *config.timestamp_paths])


def test_the_copy_is_one_ordinary_file_under_the_masters_paths(master, tmp_path):
    path, config = master
    result = copy_live(path, tmp_path / "copy.h5", timeout=5)
    assert (result.state, result.frames_complete) == ("complete", N)
    with h5py.File(tmp_path / "copy.h5", "r") as copy, h5py.File(path, "r") as source:
        for part, data in enumerate(config.data_paths):
            np.testing.assert_array_equal(copy[data][()], expected(config, part))
            np.testing.assert_array_equal(copy[data][()], source[data][()])
        for times in config.timestamp_paths:
            np.testing.assert_array_equal(copy[times][()], source[times][()])
        links: list[str] = []
        copy.visit_links(
            lambda name: (
                links.append(name)
                if isinstance(copy.get(name, getlink=True), (h5py.ExternalLink, h5py.SoftLink))
                else None
            )
        )
        assert links == []
        assert not any(is_virtual(d) for _, d in walk_datasets(copy))
        assert copy["/entry"].attrs["NX_class"] == "NXentry"
        assert copy["/entry/keys/key_0"].shape == (N,)  # the copy's own keys


def test_a_virtual_dataset_is_not_taken_for_an_unallocated_contiguous_one(tmp_path):
    path = tmp_path / "scan.h5"
    config = write_acquisition(path, files=2, scan_shape=(N,), frame_shape=FRAME)
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        data = f[config.data_paths[0]]
        assert data.chunks is None
        assert data.id.get_storage_size() == 0
        assert is_virtual(data)
        assert not is_unallocated_contiguous(data)


def test_a_virtual_dataset_is_never_copied_as_raw_chunks(tmp_path):
    path = tmp_path / "scan.h5"
    config = write_acquisition(path, files=2, scan_shape=(N,), frame_shape=FRAME)
    with (
        h5py.File(path, "r", libver="latest", swmr=True) as f,
        h5py.File(tmp_path / "other.h5", "w") as other,
    ):
        data = f[config.data_paths[0]]
        destination = other.create_dataset("d", shape=data.shape, dtype=data.dtype, chunks=True)
        assert "virtual dataset" in str(passthrough_refusal(data, destination))


def test_compression_source_gives_the_copy_the_filters_of_the_vds_sources(tmp_path):
    path = tmp_path / "scan.h5"
    config = write_acquisition(
        path, files=2, scan_shape=(N,), frame_shape=FRAME, compression="gzip"
    )
    result = copy_live(path, tmp_path / "copy.h5", timeout=5)
    data = config.data_paths[0]
    assert re.match(
        r"parallel \(\d+ workers\): the source is a virtual dataset", result.chunk_copy[data]
    )
    with h5py.File(tmp_path / "copy.h5", "r") as copy:
        assert copy[data].compression == "gzip"
        np.testing.assert_array_equal(copy[data][()], expected(config))


def _hide(path: str) -> str:
    hidden = path + ".later"
    os.rename(path, hidden)
    return hidden


def test_a_missing_source_file_is_waited_for_then_named(tmp_path):
    path = tmp_path / "scan.h5"
    write_acquisition(path, files=2, scan_shape=(N,), frame_shape=FRAME, presized=True)
    second = detector_paths(path, 2)[1]
    _hide(second)
    clock = FakeClock()
    with pytest.raises(SourceNotReadyError) as caught:
        KeyFollower.from_path(path, open_timeout_s=3, clock=clock, sleep=clock.sleep)
    message = str(caught.value)
    assert os.path.basename(second) in message
    assert "does not exist" in message
    assert "fill values" in message
    assert "Fix:" in message
    assert "'/entry/keys/uid'" in message
    assert str(path) in message
    assert clock() >= 3  # it waited the open timeout, on the injected clock
    assert isinstance(caught.value, OSError)


def test_a_source_file_created_while_waiting_is_followed(tmp_path):
    path = tmp_path / "scan.h5"
    write_acquisition(path, files=2, scan_shape=(N,), frame_shape=FRAME, presized=True)
    second = detector_paths(path, 2)[1]
    hidden = _hide(second)
    clock = FakeClock()

    def sleep(seconds: float) -> None:  # the writer creates its file while h5live waits
        if clock() > 1 and os.path.exists(hidden):
            os.rename(hidden, second)
        clock.sleep(seconds)

    with KeyFollower.from_path(path, open_timeout_s=10, clock=clock, sleep=sleep) as follower:
        assert follower.poll() == N - 1


def test_a_source_dataset_that_is_not_in_its_file_is_named(tmp_path):
    path = tmp_path / "scan.h5"
    config = write_acquisition(path, files=2, scan_shape=(N,), frame_shape=FRAME)
    with h5py.File(detector_paths(path, 2)[0], "a") as first:
        del first["/entry/data/data"]
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        problems = missing_sources(f[config.data_paths[0]])
    assert len(problems) == 1
    assert "has no dataset '/entry/data/data'" in problems[0]


def test_data_whose_sources_are_missing_are_refused_not_read_as_fill_values(tmp_path):
    path = tmp_path / "scan.h5"
    config = write_acquisition(path, files=2, scan_shape=(N,), frame_shape=FRAME)
    with h5py.File(path, "a", libver="latest") as f:  # frames from files that never come
        layout = h5py.VirtualLayout(shape=(N, *FRAME), dtype="uint16")
        layout[:] = h5py.VirtualSource("elsewhere.h5", "/data", shape=(N, *FRAME))
        f.create_virtual_dataset("/entry/other/data", layout, fillvalue=0)
    with pytest.raises(SourceNotReadyError, match=r"elsewhere\.h5' does not exist"):
        copy_live(
            path,
            tmp_path / "copy.h5",
            datasets=[config.data_paths[0], "/entry/other/data"],
            timeout=5,
            open_timeout_s=0.05,
        )
    assert not (tmp_path / "copy.h5").exists()


def test_source_file_names_resolve_beside_the_master_from_any_working_directory(
    tmp_path, monkeypatch
):
    path = tmp_path / "scan.h5"
    write_acquisition(path, files=2, scan_shape=(N,), frame_shape=FRAME)
    monkeypatch.chdir("/")
    monkeypatch.delenv("HDF5_VDS_PREFIX", raising=False)
    first = detector_paths(path, 2)[0]
    assert source_file_path(str(path), os.path.basename(first)) == first
    assert source_file_path(str(path), "/nowhere/" + os.path.basename(first)) == first
    assert source_file_path(str(path), "scan_000009.h5") is None
    assert source_file_path(str(path), ".") == str(path)


def test_a_dataset_reached_through_an_external_link_keeps_the_masters_path(tmp_path):
    path = tmp_path / "scan.h5"
    config = write_acquisition(path, files=2, layout="links", scan_shape=(N,), frame_shape=FRAME)
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        walked = dict(walk_datasets(f))
        assert sorted(walked) == sorted(
            [config.finished_path, *config.data_paths, *config.key_paths]
        )
        data = walked[config.data_paths[1]]
        assert data.name == "/entry/data/data"  # h5py names it in its own file
        assert source_path(data) == config.data_paths[1]


def test_the_master_can_be_made_before_its_detector_files(tmp_path):
    path = tmp_path / "scan.h5"
    config = AcquisitionConfig(files=2, scan_shape=(N,), frame_shape=FRAME)
    create_master(path, config).close()
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        problems = missing_sources(f[config.key_paths[0]])
    assert [os.path.basename(p) in " ".join(problems) for p in detector_paths(path, 2)] == [
        True,
        True,
    ]


@pytest.mark.parametrize("presized", [False, True], ids=["growing", "presized"])
def test_reads_of_a_vds_are_split_where_its_mappings_start_and_end(tmp_path, presized):
    path = tmp_path / "scan.h5"
    config = write_acquisition(
        path, files=3, block=4, presized=presized, scan_shape=(N,), frame_shape=FRAME
    )
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        reader = FrameReader(f[config.data_paths[0]], 1)
        rows = reader.virtual_rows
        assert rows is not None
        assert rows.split(0, N) == [(lo, min(lo + 4, N)) for lo in range(0, N, 4)]
        assert rows.split(6, 15) == [(6, 8), (8, 12), (12, 15)]
        frames, _ = reader.read_frames(3, N)
        out = np.empty((N - 5, *FRAME), dtype="uint16")
        reader.read_frames(5, N, out=out)
        assert FrameReader(f[config.finished_path], 0).virtual_rows is None
    np.testing.assert_array_equal(frames, expected(config)[3:])
    np.testing.assert_array_equal(out, expected(config)[5:])


def test_a_data_source_over_a_vds_with_missing_sources_is_refused_at_once(tmp_path):
    path = tmp_path / "scan.h5"
    config = write_acquisition(path, files=2, scan_shape=(N,), frame_shape=FRAME)
    _hide(detector_paths(path, 2)[1])
    missing = pytest.raises(SourceNotReadyError, match=r"scan_000002\.h5' does not exist")
    with h5py.File(path, "r", libver="latest", swmr=True) as f, missing:
        DataSource([f[config.key_paths[0]]], {"data": f[config.data_paths[0]]}, timeout=1)


def test_an_iterator_over_a_linked_dataset_pickles_the_masters_paths(master):
    path, config = master
    data = config.data_paths[-1]
    with LiveDataChunkIterator(path, data, chunk_shape=(4, *FRAME), timeout=5) as ours:
        blob = pickle.dumps(ours)
        assert ours._to_dict()["dataset_path"] == data
        assert ours._to_dict()["key_paths"] == config.key_paths
    with pickle.loads(blob) as copy:
        frames = np.concatenate([chunk.data for chunk in copy])
    np.testing.assert_array_equal(frames, expected(config, len(config.data_paths) - 1))


def test_a_closed_follower_of_a_links_master_leaves_no_handle_open(tmp_path):
    path = tmp_path / "scan.h5"
    write_acquisition(path, files=2, layout="links", scan_shape=(N,), frame_shape=FRAME)
    first = KeyFollower.from_path(path, timeout=5)
    assert list(first) == list(range(N))
    first.close()  # its key datasets live in the detector files: closed with the master
    assert not any(key.id.valid for key in first.key_datasets)
    with KeyFollower.from_path(path, timeout=5) as second:  # refreshes: no second handle
        assert list(second) == list(range(N))


def test_stages_on_a_linked_dataset_are_named_by_the_masters_path(tmp_path):
    path = tmp_path / "scan.h5"
    config = write_acquisition(path, files=2, layout="links", scan_shape=(N,), frame_shape=FRAME)
    data = config.data_paths[0]  # the first live dataset: chunk_shape is its
    result = copy_live(
        path, tmp_path / "copy.h5", stages={data: [sum_frames()]}, chunk_shape=(8,), timeout=5
    )
    assert (result.state, result.frames_complete) == ("complete", N)
    with h5py.File(tmp_path / "copy.h5", "r") as copy:
        sums = expected(config, 0).reshape(N, -1).sum(axis=1)
        np.testing.assert_array_equal(copy[data][()], sums)
