"""The one-handle-per-dataset guard (HDF5 2.0: refresh with a second handle open reads wrong
data), against a real writer process."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from h5live import FrameReader, KeyFollower, LiveDataChunkIterator
from h5live._source.handles import check_single_handle
from h5live.errors import DuplicateHandleError

pytestmark = pytest.mark.live

KEY = "/entry/keys/key_0"
DATA = "/entry/data/data"


def test_a_second_key_handle_stops_the_follower_with_a_clear_error(writer_process):
    process = writer_process(scan_shape=(20,), frame_shape=(2,), hold_at=0)
    with h5py.File(process.path, "r", libver="latest", swmr=True) as f:
        follower = KeyFollower([f[KEY]], timeout=1)
        follower.poll()  # one handle: fine
        other = f[KEY]  # e.g. the user's own look at the keys
        with pytest.raises(DuplicateHandleError) as error:
            follower.poll()
        message = str(error.value)
        assert f"{KEY!r} is open 2 times" in message
        assert str(process.path) in message
        assert "Fix:" in message
        del other
        follower.poll()  # the copy is gone: following goes on
        process.go()
        assert list(follower) == list(range(20))
    assert process.wait() == 0


def test_the_file_opened_twice_is_caught_for_the_frames_too(writer_process):
    process = writer_process(scan_shape=(20,), frame_shape=(2,), hold_at=0)
    with (
        h5py.File(process.path, "r", libver="latest", swmr=True) as f,
        h5py.File(process.path, "r", libver="latest", swmr=True) as g,
    ):
        reader = FrameReader(f[DATA], 1)
        copy = g[DATA]
        with pytest.raises(DuplicateHandleError, match="open 2 times"):
            reader.read_frame(0)
        del copy
        process.go()
        assert process.wait() == 0


def test_a_second_iterator_from_the_same_path_is_refused_and_closes_its_file(writer_process):
    process = writer_process(scan_shape=(20,), frame_shape=(2,), hold_at=0)
    shapes = {"chunk_shape": (5, 2), "buffer_shape": (5, 2)}
    with LiveDataChunkIterator(process.path, DATA, **shapes) as first:
        with pytest.raises(DuplicateHandleError, match="share one KeyFollower") as refused:
            LiveDataChunkIterator(process.path, DATA, **shapes)
        assert refused.traceback  # kept alive: its frames must not hold a handle either
        # the refused iterator left no handle behind: the first one reads every frame
        process.go()
        assert sum(chunk.data.shape[0] for chunk in first) == 20
    assert process.wait() == 0


def test_a_complete_chunked_file_opened_twice_is_refused_not_misread(tmp_path):
    # No writer needed: refreshing with a second handle open reads every chunk as the first.
    path = tmp_path / "done.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("d", data=np.arange(12).reshape(6, 2), chunks=(1, 2), maxshape=(None, 2))
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        first, second = f["d"], f["d"]
        with pytest.raises(DuplicateHandleError, match="'/d' is open 2 times"):
            FrameReader(first, 1).read_frame(5)
        del second
        assert FrameReader(first, 1).read_frame(5)[0].tolist() == [[10, 11]]


def test_contiguous_datasets_opened_twice_are_read_right(tmp_path):
    # swmr_tools programs often open a complete contiguous dataset twice; that stays allowed.
    path = tmp_path / "contiguous.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("d", data=np.arange(12).reshape(6, 2))
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        first, second = f["d"], f["d"]
        check_single_handle(first)
        assert FrameReader(first, 1).read_frame(5)[0].tolist() == [[10, 11]]
        assert second[5].tolist() == [10, 11]


def test_arrays_and_single_handles_pass(tmp_path):
    path = tmp_path / "one.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("d", data=np.arange(4))
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        check_single_handle(f["d"])
    check_single_handle(np.arange(3))


def test_a_duplicate_that_replaces_a_closed_dataset_is_caught(tmp_path):
    # The number of open datasets stays the same (one closed, a duplicate opened): the guard
    # must still see the duplicate.
    path = tmp_path / "two.h5"
    with h5py.File(path, "w", libver="latest") as f:
        for name in ("d", "other"):
            f.create_dataset(name, data=np.arange(12).reshape(6, 2), chunks=(1, 2))
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        reader = FrameReader(f["d"], 1)
        other = f["other"]
        assert reader.read_frame(5, force_refresh=True)[0].tolist() == [[10, 11]]
        del other
        duplicate = f["d"]
        with pytest.raises(DuplicateHandleError, match="'/d' is open 2 times"):
            reader.read_frame(5, force_refresh=True)
        del duplicate


def test_a_handle_closed_by_another_thread_while_counting_is_no_duplicate(tmp_path, monkeypatch):
    # get_obj_ids lists a handle another thread closes before it is looked at (a reader
    # beside a live conversion): h5o.get_info then raises, and that handle is skipped.
    from h5live._source import handles

    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("d", data=np.arange(10), chunks=(2,))
    real = handles._identity
    closed_first = []

    def identity(object_id):
        if not closed_first:
            closed_first.append(object_id.id)
            raise ValueError("Invalid location identifier (invalid identifier type to function)")
        return real(object_id)

    monkeypatch.setattr(handles, "_identity", identity)
    with h5py.File(tmp_path / "a.h5", "r") as f, h5py.File(tmp_path / "a.h5", "r") as g:
        d, e = f["d"], g["d"]
        counts = handles._handle_counts()
        assert closed_first[0] not in counts
        assert len(counts) == 1  # the other handle, alone: no duplicate among the living
        del d, e
