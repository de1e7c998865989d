"""h5live.compat: the first swmr_tools API (Follower, FrameGrabber), checked against every example
of its tutorial (swmr_tools_keyfollower_tutorial_v0.2) and against a real writer process."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest

from h5live import KeyFollower
from h5live.compat import Follower, FrameGrabber
from h5live.errors import DatasetNotFoundError
from h5live.testing import FakeClock, frame_values


@pytest.fixture
def make_file(tmp_path):
    """Write datasets ({path: array}) to a new file; return it opened for SWMR reading."""
    opened = []

    def make(datasets, name="test_file.h5"):
        path = tmp_path / name
        with h5py.File(path, "w", libver="latest") as f:
            for dataset_path, values in datasets.items():
                f.create_dataset(dataset_path, data=values)
        reader = h5py.File(path, "r", swmr=True)
        opened.append(reader)
        return reader

    yield make
    for reader in opened:
        reader.close()


def complete_keys():
    return np.arange(8).reshape(2, 4, 1, 1) + 1


def second_row_zeroed():
    keys = complete_keys()
    keys[1, :, :, :] = 0
    return keys


def fake_follower(f, clock, **kwargs):
    return Follower(f, ["keys"], clock=clock, sleep=clock.sleep, **kwargs)


# ---------------------------------------------------------------------- tutorial: Follower


def test_tutorial_complete_keys_yield_every_index(make_file):
    f = make_file({"keys/key_1": complete_keys()})
    assert list(Follower(f, ["keys"])) == list(range(8))


def test_tutorial_zeroed_row_stops_after_the_timeout(make_file):
    f = make_file({"keys/key_1": second_row_zeroed()})
    clock = FakeClock()
    follower = fake_follower(f, clock, timeout=1)
    assert list(follower) == [0, 1, 2, 3]
    assert follower.stop_reason == "timeout"
    assert follower.timed_out
    assert 1.0 <= clock() < 1.1


def test_tutorial_zeroed_row_with_the_real_clock(make_file):
    f = make_file({"keys/key_1": second_row_zeroed()})
    started = time.monotonic()
    assert list(Follower(f, ["keys"], timeout=0.2)) == [0, 1, 2, 3]
    assert 0.2 <= time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    "conditions",
    [["always_true"], ["timeout", "always_true"], "always_true"],
    ids=["always_true", "with-timeout", "bare-string"],
)
def test_tutorial_always_true_stops_at_once(make_file, conditions):
    f = make_file({"keys/key_1": second_row_zeroed()})
    clock = FakeClock()
    follower = fake_follower(f, clock, timeout=10, termination_conditions=conditions)
    assert list(follower) == [0, 1, 2, 3]
    assert clock() < 0.01  # no waiting: one more poll at most poll_interval_s later
    assert follower.stop_reason == "timeout"


def test_tutorial_random_keys_yield_indices_not_values(make_file):
    values = np.random.default_rng(0).integers(10, 20000, size=(2, 4))
    f = make_file({"keys/key_1": values})
    assert list(Follower(f, ["keys"], timeout=1)) == list(range(8))
    assert f["keys/key_1"][np.unravel_index(6, shape=(2, 4))] == values[1, 2]


# ---------------------------------------------------------------------- tutorial: FrameGrabber


@pytest.fixture
def frames_file(make_file):
    data = np.random.default_rng(1).integers(0, 1000, size=(2, 2, 5, 10))
    f = make_file({"keys/key_1": np.arange(4).reshape(2, 2, 1, 1) + 1, "data/data_1": data})
    return f, data


def test_tutorial_frame_grabber_frames(frames_file):
    f, data = frames_file
    grabber = FrameGrabber("data/data_1", f)
    frames = [grabber.Grabber(key) for key in Follower(f, ["keys"], timeout=1)]
    assert len(frames) == 4
    for key, frame in enumerate(frames):
        assert frame.shape == (1, 1, 5, 10)
        row, column = np.unravel_index(key, (2, 2))
        np.testing.assert_array_equal(frame[0, 0], data[row, column])


def test_tutorial_sum_reduction(frames_file):
    f, data = frames_file
    grabber = FrameGrabber("data/data_1", f)
    reduced = [
        grabber.Grabber(key).sum().reshape((1, 1, 1, 1)) for key in Follower(f, ["keys"], timeout=1)
    ]
    assert [r.shape for r in reduced] == [(1, 1, 1, 1)] * 4
    assert [int(r[0, 0, 0, 0]) for r in reduced] == data.reshape(4, -1).sum(axis=1).tolist()


# ------------------------------------------------ Follower beyond the tutorial


def test_two_keys_in_a_group_follow_the_lower_frontier(make_file):
    partial = np.zeros(8, dtype=np.int64)
    partial[:5] = 1
    f = make_file({"keys/key_1": np.ones(8, dtype=np.int64), "keys/key_2": partial})
    clock = FakeClock()
    follower = fake_follower(f, clock, timeout=1)
    assert len(follower.key_datasets) == 2
    assert list(follower) == [0, 1, 2, 3, 4]


def test_a_key_dataset_path_is_one_key(make_file):
    f = make_file({"keys/key_1": complete_keys(), "keys/key_2": second_row_zeroed()})
    assert list(Follower(f, ["keys/key_1"], timeout=1)) == list(range(8))


def test_missing_key_group_names_the_path_and_file(make_file):
    f = make_file({"keys/key_1": complete_keys()})
    with pytest.raises(DatasetNotFoundError, match=r"'/nokeys'.*test_file\.h5") as info:
        Follower(f, ["nokeys"])
    assert isinstance(info.value, KeyError)
    assert "keys/key_1" in str(info.value)  # the datasets nearby


def test_unknown_termination_condition_lists_the_valid_ones(make_file):
    f = make_file({"keys/key_1": complete_keys()})
    with pytest.raises(ValueError, match=r"'sometimes'.*'timeout', 'always_true'"):
        Follower(f, ["keys"], termination_conditions=["timeout", "sometimes"])


def test_empty_key_group_paths_are_refused(make_file):
    f = make_file({"keys/key_1": complete_keys()})
    with pytest.raises(ValueError, match=r"key_group_paths is empty.*test_file\.h5"):
        Follower(f, [])


def test_negative_timeout_is_refused(make_file):
    f = make_file({"keys/key_1": complete_keys()})
    with pytest.raises(ValueError, match=r"timeout.*-1.*test_file\.h5"):
        Follower(f, ["keys"], timeout=-1)


def test_no_condition_stops_when_fixed_keys_are_complete(make_file):
    f = make_file({"keys/key_1": complete_keys()})
    follower = Follower(f, ["keys"], termination_conditions=[])
    assert list(follower) == list(range(8))
    assert follower.stop_reason == "complete"


def test_finished_dataset_path_stops_without_the_timeout(make_file):
    f = make_file({"keys/key_1": second_row_zeroed(), "finished": np.int32(1)})
    clock = FakeClock()
    follower = fake_follower(f, clock, timeout=100, finished_dataset="finished")
    assert list(follower) == [0, 1, 2, 3]
    assert follower.stop_reason == "finished"
    assert clock() < 1


def test_reset_state_and_repr(make_file):
    f = make_file({"keys/key_1": second_row_zeroed()})
    with fake_follower(f, FakeClock(), timeout=1) as follower:
        assert repr(follower) == (
            "<Follower 'test_file.h5' keys=1 frontier=-1/8 "
            "termination_conditions=['timeout'] timeout=1>"
        )
        assert follower.poll() == 3
        assert list(follower) == [0, 1, 2, 3]
        assert follower.current_key == follower.current_max == 3
        assert follower.scan_rank == 2
        assert follower.is_finished()
        assert "stopped='timeout'" in repr(follower)
        follower.reset()
        assert follower.stop_reason is None
        assert list(follower.iter_ranges()) == [(0, 4)]
    assert f.id.valid  # the file belongs to the caller


# -------------------------------------------- FrameGrabber beyond the tutorial


def test_grabber_index_out_of_range_names_file_dataset_index_and_shape(frames_file):
    f, _ = frames_file
    grabber = FrameGrabber("data/data_1", f)
    with pytest.raises(IndexError, match=r"frame 4 .*'/data/data_1'.*test_file\.h5.*\(2, 2\)"):
        grabber.Grabber(4)
    with pytest.raises(IndexError, match="-1"):
        grabber.Grabber(-1)


@pytest.mark.parametrize("path", ["data/nothing", "nothing"], ids=["in-a-group", "top-level"])
def test_grabber_missing_dataset_names_the_path_and_file(frames_file, path):
    f, _ = frames_file
    with pytest.raises(DatasetNotFoundError, match=rf"'/{path}'.*test_file\.h5"):
        FrameGrabber(path, f)


def test_grabber_scan_rank_from_the_keys(make_file):
    spectra = np.arange(6 * 5).reshape(6, 5)
    f = make_file({"keys/key_1": np.ones((6, 1), dtype=np.int64), "data": spectra})
    follower = Follower(f, ["keys"], timeout=1)
    grabber = FrameGrabber("data", f, keys=follower)
    assert grabber.scan_rank == 1
    assert [grabber.Grabber(i).tolist() for i in follower] == [[row] for row in spectra.tolist()]
    assert repr(grabber) == "<FrameGrabber 'test_file.h5' '/data' shape=(6, 5) scan_rank=1>"


@pytest.mark.parametrize(
    ("kwargs", "frame_shape"),
    [({}, (1, 1, 5, 10)), ({"scan_rank": 3}, (1, 1, 1, 10)), ({"scan_rank": 4}, (1, 1, 1, 1))],
    ids=["default-images", "spectra", "scalars"],
)
def test_grabber_scan_rank_keyword(frames_file, kwargs, frame_shape):
    f, data = frames_file
    grabber = FrameGrabber("data/data_1", f, **kwargs)
    frame = grabber.Grabber(3)
    assert frame.shape == frame_shape
    position = np.unravel_index(3, data.shape[: grabber.scan_rank])
    np.testing.assert_array_equal(frame.reshape(-1), data[position].reshape(-1))


def test_grabber_needs_a_scan_rank_for_2d_data(make_file):
    f = make_file({"data": np.zeros((6, 5))})
    with pytest.raises(ValueError, match=r"'/data'.*test_file\.h5.*\(6, 5\).*scan_rank="):
        FrameGrabber("data", f)


@pytest.mark.parametrize("scan_rank", [0, 5], ids=["zero", "beyond-ndim"])
def test_grabber_scan_rank_must_fit_the_data(frames_file, scan_rank):
    f, _ = frames_file
    with pytest.raises(ValueError, match=rf"scan_rank={scan_rank}.*between 1 and 4"):
        FrameGrabber("data/data_1", f, scan_rank=scan_rank)


# ---------------------------------------------------------------------- a real writer process


@pytest.mark.live
@pytest.mark.parametrize(
    "layout",
    [
        {"scan_shape": (12, 10), "presized": True, "key_trailing_ones": 2},
        {"scan_shape": (150,), "presized": False},
    ],
    ids=["grid-presized-trailing-ones", "growing-stack"],
)
def test_live_writer_every_frame_in_order(writer_process, layout):
    frame_shape = (4, 6)
    process = writer_process(
        **layout, frame_shape=frame_shape, n_keys=2, frame_rate_hz=2000, hold_at=0
    )
    config = process.config
    with h5py.File(process.path, "r", swmr=True) as f:
        # Presized keys stop when complete; growing keys need the finished flag (or a timeout).
        finished = None if config.presized else config.finished_path
        follower = Follower(f, [config.keys_group], timeout=10, finished_dataset=finished)
        grabber = FrameGrabber(config.data_path, f, keys=follower)
        assert follower.poll() == -1
        process.go()
        delivered = []
        for index in follower:
            frame = grabber.Grabber(index)
            expected = frame_values(index, frame_shape, config.dtype)
            np.testing.assert_array_equal(frame, expected.reshape(frame.shape))
            assert frame.shape == (*(1,) * len(config.scan_shape), *frame_shape)
            delivered.append(index)
    assert process.wait() == 0
    assert delivered == list(range(config.n_frames))
    assert follower.stop_reason == ("complete" if config.presized else "finished")


def test_follower_matches_key_follower_on_the_same_keys(make_file):
    f = make_file({"keys/key_1": complete_keys(), "keys/key_2": second_row_zeroed()})
    ours = list(Follower(f, ["keys"], timeout=0.05))
    theirs = list(KeyFollower([f["keys/key_1"], f["keys/key_2"]], timeout=0.05))
    assert ours == theirs == [0, 1, 2, 3]
