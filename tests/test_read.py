"""FrameReader: frames and runs of frames by flat index, refreshed as a SWMR reader must."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys

import h5py
import hdf5plugin
import numpy as np
import pytest
from swmr_tools.datasource import FrameReader as SwmrFrameReader

from h5live import FrameReader, KeyFollower
from h5live.errors import DirectChunkError, FrameIndexError
from h5live.testing import frame_values

GRIDS = {
    "stack-of-images": ((6, 4, 5), 1),
    "grid-of-images": ((2, 3, 4, 5), 2),
    "grid-of-scalars": ((3, 4), 2),
    "3d-scan-of-spectra": ((2, 3, 2, 7), 3),
}


@pytest.fixture(params=GRIDS.values(), ids=GRIDS.keys())
def grid(request):
    shape, rank = request.param
    return np.arange(np.prod(shape), dtype=np.int32).reshape(shape), rank


def test_frames_and_slice_metadata_are_those_of_swmr_tools(grid):
    data, rank = grid
    ours, theirs = FrameReader(data, rank), SwmrFrameReader(data, rank)
    for index in range(int(np.prod(data.shape[:rank]))):
        frame, where = ours.read_frame(index)
        expected, expected_where = theirs.read_frame(index)
        np.testing.assert_array_equal(frame, expected)
        assert frame.shape == expected.shape
        assert where == tuple(expected_where)


def test_read_frames_of_a_box_equal_the_frames_one_by_one(grid):
    data, rank = grid
    reader = FrameReader(data, rank)
    total = int(np.prod(data.shape[:rank]))
    for start in range(total):
        for stop in range(start + 1, total + 1):
            runs = reader.boxes(start, stop)
            assert runs[0][0] == start
            assert runs[-1][1] == stop
            assert all(a[1] == b[0] for a, b in itertools.pairwise(runs))
            for lo, hi in runs:
                frames, where = reader.read_frames(lo, hi)
                np.testing.assert_array_equal(frames, data[(*where, Ellipsis)])
                one_by_one = [
                    reader.read_frame(i)[0].reshape(data.shape[rank:]) for i in range(lo, hi)
                ]
                np.testing.assert_array_equal(
                    frames.reshape(hi - lo, *data.shape[rank:]), np.stack(one_by_one)
                )


def test_a_range_that_is_not_one_box_is_refused_with_the_way_out():
    reader = FrameReader(np.zeros((3, 4, 2)), 2)
    with pytest.raises(ValueError, match=r"span 3 boxes.*FrameReader.boxes"):
        reader.read_frames(2, 9)
    assert reader.boxes(2, 9) == [(2, 4), (4, 8), (8, 9)]


def test_frame_outside_the_data_after_a_refresh_names_it(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        reader = FrameReader(f.create_dataset("data", data=np.zeros((3, 2))), 1)
        with pytest.raises(FrameIndexError, match=r"frame 3 is outside dataset '/data'.*\(3,\)"):
            reader.read_frame(3)


@pytest.mark.parametrize("rank", [-1, 4], ids=["negative", "beyond-ndim"])
def test_bad_scan_rank_is_refused(rank):
    with pytest.raises(ValueError, match="scan_rank"):
        FrameReader(np.zeros((2, 3, 4)), rank)


CODECS = {
    "none": {},
    "blosc": dict(hdf5plugin.Blosc(cname="lz4")),
    "bitshuffle-lz4": dict(hdf5plugin.Bitshuffle(cname="lz4")),
    "zstd": dict(hdf5plugin.Zstd()),
    "gzip": {"compression": "gzip"},
}


def _image_stack(path, **filters):
    data = (np.arange(10 * 12 * 16) % 251).astype(np.uint16).reshape(10, 12, 16)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data, chunks=(1, 12, 16), **filters)
    return data


@pytest.mark.parametrize("filters", CODECS.values(), ids=CODECS.keys())
@pytest.mark.parametrize("mode", [True, "require"], ids=["auto", "require"])
def test_direct_chunk_frames_equal_h5py_frames(tmp_path, filters, mode):
    data = _image_stack(tmp_path / "d.h5", **filters)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        reader = FrameReader(f["data"], 1, use_direct_chunk=mode)
        for index in range(10):
            frame, where = reader.read_frame(index)
            assert frame.dtype == data.dtype
            assert frame.tobytes() == data[index : index + 1].tobytes()
            assert where == (slice(index, index + 1),)
        frames, _ = reader.read_frames(2, 9)
        assert frames.tobytes() == data[2:9].tobytes()


def test_direct_reads_fall_back_to_h5py_where_python_is_slower(tmp_path, caplog):
    # shuffle+deflate: decoded in Python only for chunks of 128 KiB or more (these are 384 B)
    _image_stack(tmp_path / "d.h5", compression="gzip", shuffle=True)
    with h5py.File(tmp_path / "d.h5", "r") as f, caplog.at_level(logging.DEBUG, "h5live"):
        assert not FrameReader(f["data"], 1, use_direct_chunk=True).direct
        assert FrameReader(f["data"], 1, use_direct_chunk="require").direct
    assert "gzip" in caplog.text or "deflate" in caplog.text


def test_direct_reads_demanded_on_multi_frame_chunks_are_an_error(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        dataset = f.create_dataset("data", data=np.zeros((10, 4, 4)), chunks=(5, 4, 4))
        assert not FrameReader(dataset, 1, use_direct_chunk=True).direct
        with pytest.raises(DirectChunkError, match=r"chunks \(5, 4, 4\).*\(1, 4, 4\)"):
            FrameReader(dataset, 1, use_direct_chunk="require")


def test_direct_reads_demanded_on_arrays_are_an_error():
    assert not FrameReader(np.zeros((3, 2)), 1, use_direct_chunk=True).direct
    with pytest.raises(DirectChunkError):
        FrameReader(np.zeros((3, 2)), 1, use_direct_chunk="require")


READERS = {
    "h5py": (False, None),
    "direct": ("require", None),
    "direct-zstd": ("require", "zstd"),
}


@pytest.mark.live
@pytest.mark.parametrize("presized", [True, False], ids=["presized", "growing"])
@pytest.mark.parametrize(("direct", "compression"), READERS.values(), ids=READERS.keys())
def test_standalone_reader_never_reads_stale_frames_of_a_live_file(
    writer_process, presized, direct, compression
):
    # Without a refresh before each new frame, h5py reads a pre-sized dataset's new frames as
    # fill values (swmr_tools' FrameReader does: see test_swmr_tools_differences.py).
    process = writer_process(
        scan_shape=(600,),
        frame_shape=(4, 6),
        presized=presized,
        compression=compression,
        frame_rate_hz=3000,
        hold_at=0,
    )
    with KeyFollower.from_path(process.path, timeout=10) as follower:
        reader = FrameReader(follower._file["/entry/data/data"], 1, use_direct_chunk=direct)
        process.go()
        frames = {index: reader.read_frame(index)[0] for index in follower}
    assert process.wait() == 0
    assert sorted(frames) == list(range(600))
    for index, frame in frames.items():
        np.testing.assert_array_equal(frame[0], frame_values(index, (4, 6), "uint16"))


MISSING_PLUGIN_READS = {
    "FrameReader": "FrameReader(f['data'], 1).read_frame(0)",
    "ChunkSource": "next(ChunkSource({'d': f['data']}, 0.01, use_direct_chunk=False))",
}


@pytest.mark.parametrize("read", MISSING_PLUGIN_READS.values(), ids=MISSING_PLUGIN_READS.keys())
def test_a_missing_filter_plugin_is_explained(tmp_path, read):
    # hdf5plugin registers its filters for the whole process, so read in a fresh one.
    path = tmp_path / "lz4.h5"
    _image_stack(path, **hdf5plugin.LZ4())
    code = (
        "import sys, h5py\n"
        "from h5live import ChunkSource, FrameReader\n"
        "from h5live.errors import FrameReadError\n"
        "with h5py.File(sys.argv[1], 'r') as f:\n"
        "    try:\n"
        f"        {read}\n"
        "    except FrameReadError as exc:\n"
        "        print(exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    run = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, check=True
    )
    assert "frames 0..0 of dataset '/data'" in run.stdout
    assert "import hdf5plugin" in run.stdout


@pytest.mark.live
@pytest.mark.parametrize("presized", [True, False], ids=["presized", "growing"])
def test_reading_a_frame_too_early_does_not_make_later_reads_stale(writer_process, presized):
    process = writer_process(scan_shape=(40,), frame_shape=(3,), presized=presized, hold_at=10)
    with KeyFollower.from_path(process.path, timeout=10) as follower:
        reader = FrameReader(follower._file["/entry/data/data"], 1)
        while follower.poll() < 9:  # the writer holds after 10 frames
            pass
        try:
            early = reader.read_frame(12)[0]  # a user error: frame 12 is not written yet
            assert not np.array_equal(early[0], frame_values(12, (3,), "uint16"))
        except FrameIndexError:
            assert not presized
        process.go()
        assert follower.wait_for(39)
        for index in (11, 12):
            np.testing.assert_array_equal(
                reader.read_frame(index)[0][0], frame_values(index, (3,), "uint16")
            )
    assert process.wait() == 0


def test_direct_reads_demanded_with_a_filter_python_cannot_decode_are_an_error(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        dataset = f.create_dataset(
            "data", data=np.zeros((4, 3, 3)), chunks=(1, 3, 3), compression="lzf"
        )
        assert not FrameReader(dataset, 1, use_direct_chunk=True).direct
        with pytest.raises(DirectChunkError, match=r"lzf"):
            FrameReader(dataset, 1, use_direct_chunk="require")


def test_reading_a_file_opened_without_swmr_leaves_other_handles_working(tmp_path):
    # HDF5 2.0: refreshing a dataset of a file not in SWMR mode (default format, v1 B-tree)
    # breaks every other handle on it; such a file cannot be growing, so h5live does not.
    with h5py.File(tmp_path / "offline.h5", "w") as f:
        f.create_dataset("data", data=np.arange(12).reshape(6, 2), chunks=(1, 2))
    with h5py.File(tmp_path / "offline.h5", "r") as f:
        mine = f["data"]
        frames = [FrameReader(f["data"], 1).read_frame(i)[0] for i in range(6)]
        np.testing.assert_array_equal(mine[...], np.concatenate(frames))


def test_read_frames_into_an_array_checks_it(tmp_path):
    path = tmp_path / "out.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("d", data=np.arange(24, dtype="uint16").reshape(6, 2, 2), chunks=(1, 2, 2))
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        for direct in (True, False):
            reader = FrameReader(f["d"], 1, use_direct_chunk=direct)
            out = np.empty((2, 2, 2), "uint16")
            frames, _ = reader.read_frames(1, 3, out=out)
            assert frames is out
            np.testing.assert_array_equal(out, f["d"][1:3])
            with pytest.raises(ValueError, match=r"need a C-contiguous array of shape \(2, 2, 2\)"):
                reader.read_frames(1, 3, out=np.empty((2, 2, 2), "float64"))
