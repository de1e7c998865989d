"""RowKeyFollower: whole rows of the scan."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest
import swmr_tools

from h5live import RowKeyFollower, utils


@pytest.fixture
def grid_keys(tmp_path):
    def make(keys):
        with h5py.File(tmp_path / "k.h5", "w") as f:
            f.create_dataset("keys", data=keys, maxshape=(None, *keys.shape[1:]), chunks=True)
        return h5py.File(tmp_path / "k.h5", "r")

    return make


def test_rows_are_those_of_swmr_tools(grid_keys):
    with grid_keys(np.arange(1, 21).reshape(4, 5)) as f:
        ours = list(RowKeyFollower([f["keys"]], timeout=0.05))
        theirs = swmr_tools.RowKeyFollower([f["keys"]], timeout=0.05)
        theirs.check_datasets()
        assert ours == list(theirs) == [4, 9, 14, 19]
        assert [utils.get_row_slice(i, (4, 5), 2) for i in ours][1] == (slice(1, 2), slice(None))


def test_an_unfinished_last_row_is_not_delivered_and_is_reported(grid_keys, caplog):
    keys = np.arange(1, 21).reshape(4, 5)
    keys[2, 3:] = 0
    with grid_keys(keys) as f, caplog.at_level(logging.WARNING, "h5live"):
        follower = RowKeyFollower([f["keys"]], timeout=0.05)
        assert list(follower) == [4, 9]
        assert list(follower) == []
    assert caplog.text.count("the last 3 complete frame(s) do not fill a row of 5") == 1


def test_row_size_is_needed_when_the_fastest_axis_grows(tmp_path):
    with h5py.File(tmp_path / "k.h5", "w") as f:
        keys = f.create_dataset("keys", data=np.ones(12, dtype=int), maxshape=(None,))
        with pytest.raises(ValueError, match=r"row_size=<frames per row>"):
            RowKeyFollower([keys])
        assert list(RowKeyFollower([keys], timeout=0.01, row_size=4)) == [3, 7, 11]


@pytest.mark.parametrize("bad", [0, -1, 2.0], ids=["zero", "negative", "float"])
def test_bad_row_size_is_refused(grid_keys, bad):
    with grid_keys(np.ones((2, 2), dtype=int)) as f, pytest.raises(ValueError, match="row_size"):
        RowKeyFollower([f["keys"]], row_size=bad)


def test_reset_and_repr(grid_keys):
    with (
        grid_keys(np.ones((2, 3), dtype=int)) as f,
        RowKeyFollower([f["keys"]], timeout=0.01) as follower,
    ):
        assert list(follower) == [2, 5]
        assert "rows=2" in repr(follower)
        follower.reset()
        assert list(follower) == [2, 5]
