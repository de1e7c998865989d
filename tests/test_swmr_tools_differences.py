"""Where swmr_tools 0.9 has a bug, h5live differs; each README claim is shown here against the
real swmr_tools package, on the same real HDF5 datasets."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import swmr_tools

from h5live import KeyFollower
from h5live.errors import FinishedDatasetError, KeyRegressionWarning
from h5live.testing import FakeClock


@pytest.fixture
def keys_file(tmp_path):
    with h5py.File(tmp_path / "keys.h5", "w", libver="latest") as f:
        yield f


def growing_key(f, values, name="k"):
    return f.create_dataset(name, data=np.asarray(values, dtype=np.int64), maxshape=(None,))


def test_scalar_finished_dataset(keys_file):
    key = growing_key(keys_file, [1, 1, 1])
    finished = keys_file.create_dataset("finished", data=np.int32(1))
    with pytest.raises(ValueError, match="scalar dataspace"):
        list(swmr_tools.KeyFollower([key], timeout=1, finished_dataset=finished))
    assert list(KeyFollower([key], timeout=1, finished_dataset=finished)) == [0, 1, 2]


def test_empty_growing_keys_at_the_start(keys_file):
    key = keys_file.create_dataset("k", shape=(0,), maxshape=(None,), dtype="i8")
    with pytest.raises(ValueError, match="empty sequence"):
        swmr_tools.KeyFollower([key], timeout=0.1).refresh()
    assert KeyFollower([key], timeout=0.1).poll() == -1


def test_key_back_to_zero_yields_an_incomplete_frame(keys_file):
    key = growing_key(keys_file, [1] * 10 + [0] * 5)
    theirs = swmr_tools.KeyFollower([key], timeout=1)
    ours = KeyFollower([key], timeout=1)
    assert [next(theirs) for _ in range(10)] == [next(ours) for _ in range(10)] == list(range(10))
    key[5] = 0
    assert next(theirs) == 10  # frame 10 was never written: a wrong frame
    with pytest.warns(KeyRegressionWarning, match=r"\[5\]"):
        assert ours.poll() == 9  # the frontier holds; nothing more is handed out


def test_many_keys_are_merged_without_float_products(keys_file):
    big = np.iinfo(np.uint64).max
    keys = [keys_file.create_dataset(f"k{n}", data=np.full(4, big, np.uint64)) for n in range(20)]
    keys[-1][2] = 0
    with pytest.warns(RuntimeWarning, match="overflow|invalid value"):  # inf, then inf * 0
        theirs = list(swmr_tools.KeyFollower(keys, timeout=0.1))
    assert theirs == [0, 1, 2, 3]  # inf * 0 is NaN, and NaN != 0
    assert list(KeyFollower(keys, timeout=0.1)) == [0, 1]


def test_finished_dataset_of_several_elements(keys_file):
    key = growing_key(keys_file, [1, 1])
    finished = keys_file.create_dataset("finished", data=[1, 1])
    follower = swmr_tools.KeyFollower([key], timeout=0.1, finished_dataset=finished)
    assert list(follower) == [0, 1]  # the flag is silently ignored; stops on the timeout
    assert follower.timed_out
    with pytest.raises(FinishedDatasetError, match=r"shape \(2,\)"):
        KeyFollower([key], finished_dataset=finished)


def test_are_keys_complete_on_growing_keys(keys_file):
    key = growing_key(keys_file, [1, 1])
    theirs = swmr_tools.KeyFollower([key])
    theirs.check_datasets()
    with pytest.raises(TypeError):
        theirs.are_keys_complete()
    assert KeyFollower([key]).are_keys_complete() is False


def test_poll_interval_is_not_tied_to_the_timeout(keys_file, monkeypatch):
    key = growing_key(keys_file, [1, 0])
    sleeps: list[float] = []
    monkeypatch.setattr("swmr_tools.keyfollower.time.sleep", sleeps.append)
    theirs = swmr_tools.KeyFollower([key], timeout=0)  # timeout 0: one wait, then stop
    assert list(theirs) == [0]
    assert sleeps == [0.0]  # it sleeps timeout / 20: 0.5 s with the default timeout of 10
    clock = FakeClock()
    ours = KeyFollower([key], timeout=0.05, clock=clock, sleep=clock.sleep)
    assert list(ours) == [0]
    assert clock.sleeps == pytest.approx([0.001] * len(clock.sleeps))


def test_pre_sized_complete_keys_stop_at_once(keys_file):
    key = keys_file.create_dataset("k", data=np.ones(4, np.int64))  # fixed maxshape (4,)
    theirs = swmr_tools.KeyFollower([key], timeout=0.2)
    assert list(theirs) == [0, 1, 2, 3]
    assert theirs.timed_out  # waited out the timeout although nothing more can come
    clock = FakeClock()
    ours = KeyFollower([key], timeout=10, clock=clock, sleep=clock.sleep)
    assert list(ours) == [0, 1, 2, 3]
    assert ours.stop_reason == "complete"
    assert clock.sleeps == []


# ---------------------------------------------------------------- reading frames (issue 3)


@pytest.mark.live
def test_frame_reader_reads_stale_fill_values_from_a_presized_live_file(writer_process):
    # swmr_tools' FrameReader refreshes only when an index is outside the cached shape, so a
    # pre-sized dataset's new frames read as fill values; h5live's refreshes first.
    from swmr_tools.datasource import FrameReader as SwmrFrameReader

    from h5live import FrameReader
    from h5live.testing import frame_values

    process = writer_process(scan_shape=(300,), frame_shape=(4,), presized=True, hold_at=0)
    with KeyFollower.from_path(process.path, timeout=10) as follower:
        data = follower.key_datasets[0].file["/entry/data/data"]
        ours, theirs = FrameReader(data, 1), SwmrFrameReader(data, 1)
        process.go()
        stale = {"ours": 0, "theirs": 0}
        for index in follower:
            expected = frame_values(index, (4,), "uint16")
            stale["theirs"] += not np.array_equal(theirs.read_frame(index)[0][0], expected)
            stale["ours"] += not np.array_equal(ours.read_frame(index)[0][0], expected)
    assert process.wait() == 0
    assert stale["ours"] == 0
    assert stale["theirs"] > 0


@pytest.mark.live
def test_datasource_sleeps_a_second_when_a_growing_dataset_is_behind(writer_process, monkeypatch):
    # swmr_tools reads the cached shape before refreshing, fails, sleeps 1 s and retries.
    import swmr_tools.datasource

    from h5live import DataSource

    slept: list[float] = []
    monkeypatch.setattr(swmr_tools.datasource, "sleep", slept.append)  # record, do not sleep
    process = writer_process(
        scan_shape=(40,), frame_shape=(2,), frame_rate_hz=500, hold_at=4, finished_scalar=False
    )
    with h5py.File(process.path, "r", libver="latest", swmr=True) as f:
        key, finished = f["/entry/keys/key_0"], f["/entry/finished"]
        while key.shape[0] < 4:  # swmr_tools cannot start on empty keys
            key.refresh()
        theirs = swmr_tools.DataSource([key], {"d": f["/entry/data/data"]}, 10, finished)
        process.go()
        assert len(list(theirs)) == 40
    assert process.wait() == 0
    assert 1 in slept
    ours_slept: list[float] = []
    process = writer_process("ours.h5", scan_shape=(40,), frame_shape=(2,), hold_at=0)
    with h5py.File(process.path, "r", libver="latest", swmr=True) as f:
        ours = DataSource(
            [f["/entry/keys/key_0"]],
            {"d": f["/entry/data/data"]},
            10,
            f["/entry/finished"],
            sleep=lambda s: (ours_slept.append(s), __import__("time").sleep(s)),
        )
        process.go()
        assert len(list(ours)) == 40
    assert max(ours_slept, default=0) < 0.5


def _chunked_stack(f, maxshape):
    data = f.create_dataset("d", shape=(10, 2), maxshape=maxshape, chunks=(4, 2), dtype="i4")
    data[:6] = np.arange(12).reshape(6, 2) + 1  # chunk 1 only half written
    return data


def test_chunk_source_delivers_a_half_written_chunk(keys_file):
    data = _chunked_stack(keys_file, (10, 2))
    keys_file.swmr_mode = True  # being written: a file without SWMR mode is read whole
    theirs = [item["d"] for item in swmr_tools.ChunkSource({"d": data}, timeout=0.01)]
    assert len(theirs) == 2
    assert (theirs[1][2:] == 0).all()  # fill values delivered as frames
    clock = FakeClock()
    from h5live import ChunkSource

    ours = list(ChunkSource({"d": data}, 1, clock=clock, sleep=clock.sleep))
    assert [(item.index, item.stop) for item in ours] == [(0, 4)]


def test_chunk_source_slice_metadata_is_a_list_of_a_wrong_slice(keys_file):
    data = keys_file.create_dataset("d", data=np.arange(12), chunks=(4,))
    done = keys_file.create_dataset("done", data=[1])
    theirs = list(swmr_tools.ChunkSource({"d": data}, timeout=0.01, finished_dataset=done))
    assert theirs[1].slice_metadata == [slice(4, 5)]  # frames 4..7 are meant
    from h5live import ChunkSource

    ours = list(ChunkSource({"d": data}, 0.01, done))
    assert ours[1].slice_metadata == (slice(4, 8),)


def test_chunk_source_unlimited_and_filtered_datasets(keys_file):
    done = keys_file.create_dataset("done", data=[1])
    growing = keys_file.create_dataset("g", data=np.arange(8), chunks=(4,), maxshape=(None,))
    gzipped = keys_file.create_dataset("z", data=np.arange(8), chunks=(4,), compression="gzip")
    with pytest.raises(TypeError):
        list(swmr_tools.ChunkSource({"g": growing}, timeout=0.01, finished_dataset=done))
    with pytest.raises(RuntimeError, match="filters not supported"):
        list(swmr_tools.ChunkSource({"z": gzipped}, timeout=0.01, finished_dataset=done))
    from h5live import ChunkSource

    for dataset in (growing, gzipped):
        items = list(ChunkSource({"x": dataset}, 0.01, done))
        np.testing.assert_array_equal(np.concatenate([i["x"] for i in items]), np.arange(8))


def test_a_nan_float_key_is_not_a_written_frame(keys_file):
    key = keys_file.create_dataset("k", data=[1.0, np.nan, 1.0], maxshape=(None,))
    assert list(swmr_tools.KeyFollower([key], timeout=0.01)) == [0, 1, 2]  # NaN != 0
    assert list(KeyFollower([key], timeout=0)) == [0]
