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
