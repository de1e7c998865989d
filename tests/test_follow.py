"""KeyFollower policies, stepped by hand: an in-process writer and a fake clock, no sleeping."""

from __future__ import annotations

import io
import logging
import math
import pickle

import h5py
import numpy as np
import pytest

from h5live import FollowPolicy, KeyFollower, SourceSpec
from h5live.errors import (
    FinishedDatasetError,
    FollowTimeout,
    KeyDatasetError,
    KeyRegressionError,
    KeyRegressionWarning,
)
from h5live.testing import FakeClock, SimulatedWriter
from helpers import RecordingDataset


def follower_for(
    writer: SimulatedWriter, clock: FakeClock, timeout: float | None = 1.0, **policy: object
) -> KeyFollower:
    return KeyFollower(
        writer.keys,
        timeout,
        writer.finished,
        policy=FollowPolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
        sleep=clock.sleep,
    )


def write(writer: SimulatedWriter, n: int) -> None:
    writer.append(n)
    writer.flush_keys()


# ---------------------------------------------------------------- construction and validation


@pytest.mark.parametrize(
    ("config", "rank", "maxshape"),
    [
        ({"scan_shape": (10,)}, 1, (None,)),
        ({"scan_shape": (10,), "presized": True}, 1, (10,)),
        ({"scan_shape": (3, 4)}, 2, (None, 4)),
        ({"scan_shape": (3, 4), "presized": True, "key_trailing_ones": 2}, 2, (3, 4)),
        ({"scan_shape": (1,), "presized": True}, 0, ()),
    ],
    ids=["stack", "stack-presized", "grid", "grid-presized-trailing-ones", "single-point"],
)
def test_scan_rank_and_maxshape_match_swmr_tools(simulated_writer, config, rank, maxshape):
    import swmr_tools

    writer = simulated_writer(**config)
    ours = KeyFollower(writer.keys)
    theirs = swmr_tools.KeyFollower(writer.keys)
    theirs.check_datasets()
    assert (ours.scan_rank, ours.maxshape) == (rank, maxshape)
    assert (ours.scan_rank, tuple(ours.maxshape)) == (theirs.scan_rank, tuple(theirs.maxshape))


@pytest.mark.parametrize(
    "config",
    [
        {"scan_shape": (7,)},
        {"scan_shape": (7,), "presized": True, "n_keys": 3},
        {"scan_shape": (3, 4), "presized": True, "n_keys": 2},
        {"scan_shape": (3, 4), "key_trailing_ones": 2},
    ],
    ids=["stack", "stack-3-keys", "grid-2-keys", "grid-trailing-ones"],
)
def test_complete_file_yields_what_swmr_tools_yields(simulated_writer, config):
    import swmr_tools

    writer = simulated_writer(**config)
    write(writer, writer.config.n_frames)
    writer.finish()
    theirs = list(swmr_tools.KeyFollower(writer.keys, timeout=0.1))
    ours = list(KeyFollower(writer.keys, timeout=0.1))
    assert ours == theirs == list(range(writer.config.n_frames))


def test_no_key_datasets_is_an_error():
    with pytest.raises(KeyDatasetError, match="no key datasets"):
        KeyFollower([])


def test_scalar_key_is_an_error(simulated_writer):
    writer = simulated_writer()
    with pytest.raises(KeyDatasetError, match="scalar"):
        KeyFollower([writer.finished])


def test_keys_of_different_scan_rank_are_an_error(simulated_writer):
    stack = simulated_writer("stack.h5", scan_shape=(6,))
    grid = simulated_writer("grid.h5", scan_shape=(2, 3))
    with pytest.raises(KeyDatasetError, match=r"different scan ranks.*rank 1.*rank 2"):
        KeyFollower([stack.keys[0], grid.keys[0]])


KEY_VALUES = {
    "int8": np.array([3, 1, -1, 0, 1], dtype=np.int8),
    "uint64-odin-ids": np.array([2**64 - 1, 2**63, 1, 0, 5], dtype=np.uint64),
    "bool": np.array([True, True, True, False, True]),
    "float32": np.array([0.5, 1e-30, -2.0, 0.0, 1.0], dtype=np.float32),
    "float64-nan": np.array([1.0, 2.0, 3.0, np.nan, 1.0]),
}


@pytest.mark.parametrize("values", KEY_VALUES.values(), ids=KEY_VALUES.keys())
def test_numeric_keys_of_any_type_mark_frames_written(tmp_path, values):
    # non-zero and not NaN is written: the frontier stops at the fourth entry
    with h5py.File(tmp_path / "keys.h5", "w", libver="latest") as f:
        keys = f.create_dataset("keys", data=values, maxshape=(None,), chunks=(2,))
        assert list(KeyFollower([keys], timeout=0)) == [0, 1, 2]


def test_keys_of_different_types_are_combined_as_booleans(tmp_path):
    # a product of these (as swmr_tools merges keys) overflows to inf and then to NaN
    with h5py.File(tmp_path / "keys.h5", "w", libver="latest") as f:
        ids = f.create_dataset("ids", data=np.full(6, 2**64 - 1, dtype=np.uint64))
        small = f.create_dataset("small", data=[1e-300, 1e-300, 1e-300, 1e-300, 0.0, 1e-300])
        flags = f.create_dataset("flags", data=[True, True, True, True, True, False])
        assert list(KeyFollower([ids, small, flags], timeout=0)) == [0, 1, 2, 3]


def test_a_float_key_that_becomes_nan_is_a_regression(tmp_path):
    with h5py.File(tmp_path / "keys.h5", "w", libver="latest") as f:
        keys = f.create_dataset("keys", data=np.ones(6), maxshape=(None,))
        follower = KeyFollower([keys], timeout=0)
        assert follower.poll() == 5
        keys[2] = np.nan
        keys.resize(7, axis=0)
        with pytest.warns(KeyRegressionWarning, match=r"\[2\]"):
            assert follower.poll() == 5


@pytest.mark.parametrize(
    "dtype",
    [h5py.string_dtype(), np.dtype([("a", "i4"), ("b", "f4")])],
    ids=["string", "compound"],
)
def test_non_numeric_keys_are_an_error(tmp_path, dtype):
    with h5py.File(tmp_path / "keys.h5", "w", libver="latest") as f:
        keys = f.create_dataset("keys", shape=(5,), maxshape=(None,), dtype=dtype, chunks=(5,))
        with pytest.raises(KeyDatasetError, match=r"'/keys' in '.*keys\.h5'.*not a number.*Fix:"):
            KeyFollower([keys])


class DuckKeys:
    """Keys as swmr_tools' own tests make them: a list maxshape, float values, and a ``dtype``
    attribute that is not a numpy dtype (theirs are ``unittest.mock`` objects)."""

    dtype = object()
    chunks = object()

    def __init__(self, values):
        self.values = np.asarray(values)
        self.maxshape = list(self.values.shape)
        self.shape = list(self.values.shape)

    def __getitem__(self, selection):
        return self.values[selection]


def test_a_dtype_attribute_that_is_not_a_dtype_is_not_checked():
    follower = KeyFollower([DuckKeys(np.zeros(4))], timeout=0)
    follower.key_datasets[0].values[:2] = 1.0
    assert list(follower) == [0, 1]


def test_non_numeric_values_from_a_dataset_like_object_are_an_error():
    with pytest.raises(KeyDatasetError, match=r"dtype <U1.*not a number.*Fix:"):
        KeyFollower([DuckKeys(["a", "b"])]).poll()


def test_keys_completed_by_the_read_after_the_flag_stop_as_complete():
    # The writer sets its last keys, then the flag, between a poll's key read and its flag
    # read: the key read after the flag completes the fixed scan. The stop reason was
    # "finished" or "complete" by that race (seen as a flaky h5flow test); it is "complete".
    keys = DuckKeys(np.zeros(6))
    keys.values[:4] = 1

    class FlagSetAfterTheLastKeys:
        dtype = object()
        shape = (1,)

        def __getitem__(self, selection):
            keys.values[:] = 1  # the writer's last keys, flushed before its flag
            return np.array([1])[selection]

    follower = KeyFollower([keys], timeout=None, finished_dataset=FlagSetAfterTheLastKeys())
    assert follower.poll() == 3  # no flag read on a poll that moved the frontier
    assert list(follower) == [0, 1, 2, 3, 4, 5]
    assert (follower.stop_reason, follower.finished_set) == ("complete", True)


def test_maxshape_keeps_the_sequence_type_of_the_keys(tmp_path):
    assert KeyFollower([DuckKeys(np.ones((3, 4, 1)))]).maxshape == [3, 4]
    with h5py.File(tmp_path / "keys.h5", "w", libver="latest") as f:
        keys = f.create_dataset("keys", data=np.ones((3, 4, 1)))
        assert KeyFollower([keys]).maxshape == (3, 4)


def test_a_finished_dataset_with_a_dtype_attribute_that_is_not_a_dtype(tmp_path):
    class DuckFinished:
        dtype = object()
        shape = (1,)

        def __getitem__(self, selection):
            return np.array([1.0])[selection]

    follower = KeyFollower([DuckKeys(np.zeros(4))], timeout=None, finished_dataset=DuckFinished())
    assert list(follower) == []
    assert follower.stop_reason == "finished"


@pytest.mark.parametrize(
    ("shape", "dtype", "match"),
    [((3,), "i4", r"shape \(3,\)"), ((), h5py.string_dtype(), "must be a number")],
    ids=["three-elements", "string"],
)
def test_unreadable_finished_dataset_is_an_error(simulated_writer, shape, dtype, match):
    writer = simulated_writer()
    finished = writer.file.create_dataset("/bad_finished", shape=shape, dtype=dtype)
    with pytest.raises(FinishedDatasetError, match=match):
        KeyFollower(writer.keys, finished_dataset=finished)


@pytest.mark.parametrize(
    "options",
    [
        {"poll_interval_s": -1},
        {"poll_interval_s": math.inf},
        {"gaps": "maybe"},
        {"gap_timeout_s": -0.5},
        {"gap_lookahead": 0},
        {"max_busy_fraction": 0},
        {"max_busy_fraction": 1.5},
        {"finished_interval_s": -1},
    ],
    ids=[
        "negative-poll",
        "infinite-poll",
        "unknown-gap-policy",
        "negative-gap-timeout",
        "lookahead",
        "zero-busy",
        "busy-over-one",
        "negative-finished-interval",
    ],
)
def test_bad_policy_values_are_value_errors(options):
    with pytest.raises(ValueError, match="Fix:"):
        FollowPolicy(**options)


def test_negative_timeout_is_a_value_error(simulated_writer):
    with pytest.raises(ValueError, match="timeout"):
        KeyFollower(simulated_writer().keys, timeout=-1)


# ---------------------------------------------------------------- 1. poll interval vs timeout


def test_waiting_sleeps_the_poll_interval_not_a_fraction_of_the_timeout(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(finished=False)
    follower = follower_for(writer, clock, timeout=10, poll_interval_s=0.002)
    assert list(follower) == []
    assert clock.sleeps == pytest.approx([0.002] * len(clock.sleeps))
    assert 10 <= clock() < 10.01
    assert follower.stop_reason == "timeout"


def test_default_poll_interval_is_low_latency(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer()
    clock.after(0.05, lambda: write(writer, 3))
    follower = KeyFollower(writer.keys, 0.1, clock=clock, sleep=clock.sleep)
    assert next(follower) == 0
    assert max(clock.sleeps) == pytest.approx(0.001)
    assert clock() - 0.05 <= 0.001  # the frame was yielded within one poll interval


def quarter_busy_follower(key: RecordingDataset, clock: FakeClock, timeout: float) -> KeyFollower:
    """A follower of ``key`` that polls every 1 ms at most and is busy a quarter of the time."""
    policy = FollowPolicy(poll_interval_s=0.001, max_busy_fraction=0.25)
    return KeyFollower([key], timeout, policy=policy, clock=clock, sleep=clock.sleep)


def test_slow_polls_are_spaced_to_keep_the_follower_mostly_idle(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,))
    write(writer, 2)
    key = RecordingDataset(writer.keys[0], on_read=lambda: clock.sleep(0.002))  # 2 ms reads
    follower = quarter_busy_follower(key, clock, timeout=1.0)
    assert list(follower) == [0, 1]
    reads = [t for t in clock.sleeps if t == 0.002]
    waits = [t for t in clock.sleeps if t != 0.002]
    assert waits == pytest.approx([0.006] * len(waits))  # a 2 ms poll, then 6 ms of rest
    assert len(reads) / (1.0 / 0.008) == pytest.approx(1, abs=0.05)


def test_one_stalled_poll_does_not_hold_back_the_next_ones(simulated_writer):
    # A poll that takes 3 s (the process paused, the disk busy) once: the polls after it are
    # spaced by what polls usually cost, so the next frame is seen within a poll interval, not
    # 12 s (3 s / max_busy_fraction) later. A converter following its source this way once went
    # silent for 10 s, and a reader of its output stopped on its idle timeout.
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,))
    write(writer, 1)
    costs = iter([0.002] * 5 + [3.0])
    stalled: list[float] = []

    def read_costs() -> None:
        cost = next(costs, 0.002)
        clock.sleep(cost)
        if cost == 3.0:
            stalled.append(clock())

    key = RecordingDataset(writer.keys[0], on_read=read_costs)
    follower = quarter_busy_follower(key, clock, timeout=10.0)
    assert next(follower) == 0
    clock.at(3.5, lambda: write(writer, 2))  # written after the stalled poll
    assert next(follower) == 1
    assert len(stalled) == 1
    assert stalled[0] < 3.5
    assert clock() - 3.5 <= 0.011  # the next poll after the write, not one 12 s after the stall


def test_timeout_none_waits_only_for_the_finished_flag(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,))
    clock.after(1.0, lambda: write(writer, 4))
    clock.after(3600.0, writer.finish)
    follower = follower_for(writer, clock, timeout=None, poll_interval_s=5)
    assert list(follower) == [0, 1, 2, 3]
    assert clock() >= 3600.0
    assert follower.stop_reason == "finished"
    assert not follower.timed_out


# ---------------------------------------------------------------- 2. cheap idle polls


@pytest.mark.parametrize("n_frames", [10**3, 10**6, 10**7], ids=["1e3", "1e6", "1e7"])
def test_idle_poll_reads_only_the_window_after_the_frontier(simulated_writer, n_frames):
    writer = simulated_writer(scan_shape=(n_frames,), frame_shape=(), presized=True)
    write(writer, 500)
    key = RecordingDataset(writer.keys[0])
    follower = KeyFollower([key], timeout=0)
    assert follower.poll() == 499
    key.reads.clear()
    for _ in range(10):
        assert follower.poll() == 499
    assert len(key.reads) == 10
    assert max(key.reads) <= 2048  # one chunk-aligned window: the frontier's chunk and the next


class CountingFile(io.FileIO):
    """A file object that counts the bytes HDF5 reads through it (h5py's fileobj driver)."""

    bytes_read = 0

    def readinto(self, buffer):
        n = super().readinto(buffer)
        self.bytes_read += n or 0
        return n


@pytest.mark.parametrize("n_frames", [10**3, 10**6], ids=["1e3", "1e6"])
def test_idle_poll_of_h5py_keys_reads_the_same_few_bytes_whatever_the_scan(tmp_path, n_frames):
    path = tmp_path / "keys.h5"
    with h5py.File(path, "w", libver="latest") as f:
        chunks = (min(n_frames, 1024),)
        keys = f.create_dataset("k", shape=(n_frames,), dtype="i8", chunks=chunks, fillvalue=0)
        keys[: n_frames // 2] = 1
    with CountingFile(path, "rb") as raw, h5py.File(raw, "r") as f:
        follower = KeyFollower([f["k"]], timeout=0)
        assert follower.poll() == n_frames // 2 - 1
        before = raw.bytes_read
        for _ in range(10):
            follower.poll()
        per_poll = (raw.bytes_read - before) / 10
    assert per_poll <= 32 * 1024  # a couple of 8 KiB key chunks and metadata, not 8 MB


def test_idle_poll_cost_does_not_grow_with_the_frontier(tmp_path):
    keys = np.zeros(10**6, dtype=np.int64)
    keys[:100_000] = 1
    with h5py.File(tmp_path / "deep.h5", "w", libver="latest") as f:
        key = RecordingDataset(f.create_dataset("k", data=keys, chunks=(1024,)))
        follower = KeyFollower([key], timeout=0)
        assert follower.poll() == 99_999
        key.reads.clear()
        for _ in range(10):
            assert follower.poll() == 99_999
    assert max(key.reads) <= 2048  # not everything before the frontier


def test_key_shape_is_read_after_the_refresh():
    class StaleKeys:
        """Shows new entries only after refresh(), as h5py does for SWMR readers."""

        maxshape = (None,)

        def __init__(self):
            self.live = self.seen = np.zeros(0, np.int64)

        @property
        def shape(self):
            return self.seen.shape

        def refresh(self):
            self.seen = self.live.copy()

        def __getitem__(self, selection):
            return self.seen[selection]

    key = StaleKeys()
    follower = KeyFollower([key], timeout=0)
    assert follower.poll() == -1
    key.live = np.ones(3, np.int64)
    assert follower.poll() == 2


def test_contiguous_read_failure_of_a_key_is_explained():
    class ContiguousKey:
        maxshape = (None,)
        shape = (4,)
        name = "/entry/keys/k"

        def __getitem__(self, selection):
            raise OSError("Can't read data (invalid dataset size, likely file corruption)")

    with pytest.raises(KeyDatasetError, match=r"'/entry/keys/k'.*is contiguous.*chunks=True"):
        KeyFollower([ContiguousKey()], timeout=0).poll()


def test_catching_up_reads_geometrically_growing_windows(tmp_path):
    keys = np.ones(10**6, dtype=np.int64)
    keys[-1] = 0
    with h5py.File(tmp_path / "big.h5", "w", libver="latest") as f:
        key = RecordingDataset(f.create_dataset("k", data=keys, chunks=(1024,)))
        follower = KeyFollower([key], timeout=0)
        assert follower.poll() == 10**6 - 2
    assert sum(key.reads) < 10**6 + 4096  # each entry about once
    assert len(key.reads) < 15  # not one read per chunk


def test_idle_poll_stops_at_the_first_key_without_progress(simulated_writer):
    writer = simulated_writer(scan_shape=(100,), n_keys=3)
    write(writer, 10)
    keys = [RecordingDataset(k) for k in writer.keys]
    follower = KeyFollower(keys, timeout=0)
    follower.poll()
    for key in keys:
        key.reads.clear()
    follower.poll()
    assert [len(key.reads) for key in keys] == [1, 0, 0]


def test_many_keys_merge_as_booleans_not_products(tmp_path):
    # A float product of 20 keys near 2**64 overflows to inf, and inf * 0 is NaN, which is
    # not 0: a product-based merge reports frame 3 complete although the last key is 0 there.
    big = np.iinfo(np.uint64).max
    with h5py.File(tmp_path / "many.h5", "w", libver="latest") as f:
        keys = [
            f.create_dataset(f"k{n}", data=np.full(6, big, np.uint64), maxshape=(None,))
            for n in range(20)
        ]
        keys[-1][3] = 0
        assert list(KeyFollower(keys, timeout=0)) == [0, 1, 2]


def test_keys_of_different_lengths_give_the_shorter_frontier(simulated_writer):
    writer = simulated_writer(scan_shape=(20,), n_keys=2)
    writer.append(10)
    writer.set_keys(0, range(10))
    writer.set_keys(1, range(6))
    assert KeyFollower(writer.keys, timeout=0).poll() == 5


# ---------------------------------------------------------------- 3. poll, wait_for, ranges


def test_poll_does_not_block_and_returns_the_frontier(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,))
    follower = follower_for(writer, clock)
    assert follower.poll() == -1
    write(writer, 4)
    assert follower.poll() == 3
    assert clock.sleeps == []
    assert follower.current_key == -1  # polling does not hand frames out


def test_wait_for_blocks_until_the_frame_is_complete(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,))
    clock.after(2.0, lambda: write(writer, 5))
    follower = follower_for(writer, clock, timeout=5)
    assert follower.wait_for(4)
    assert 2.0 <= clock() < 2.01
    assert follower.current_max == 4


def test_wait_for_is_false_when_the_follower_stops_first(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,))
    write(writer, 3)
    writer.finish()
    follower = follower_for(writer, clock)
    assert not follower.wait_for(5)
    assert follower.stop_reason == "finished"


def test_wait_for_raises_follow_timeout_at_its_deadline(simulated_writer):
    clock = FakeClock()
    follower = follower_for(simulated_writer(), clock, timeout=None)
    with pytest.raises(FollowTimeout, match=r"frame 3 .* not complete"):
        follower.wait_for(3, timeout_s=0.5)
    assert 0.5 <= clock() < 0.51
    assert follower.stop_reason is None


def test_iter_ranges_yields_newly_complete_ranges(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(20,))
    write(writer, 5)
    clock.after(1.0, lambda: write(writer, 7))
    clock.after(2.0, lambda: (write(writer, 8), writer.finish()))
    follower = follower_for(writer, clock, timeout=5)
    assert list(follower.iter_ranges()) == [(0, 5), (5, 12), (12, 20)]
    assert follower.stop_reason == "finished"


def test_iter_ranges_splits_at_max_frames(simulated_writer):
    writer = simulated_writer(scan_shape=(10,))
    write(writer, 10)
    follower = KeyFollower(writer.keys, timeout=0)
    assert list(follower.iter_ranges(max_frames=4)) == [(0, 4), (4, 8), (8, 10)]


def test_next_and_iter_ranges_share_one_cursor(simulated_writer):
    writer = simulated_writer(scan_shape=(10,))
    write(writer, 10)
    follower = KeyFollower(writer.keys, timeout=0)
    assert [next(follower), next(follower)] == [0, 1]
    assert next(follower.iter_ranges()) == (2, 10)
    assert list(follower) == []


# ---------------------------------------------------------------- 4. stopping


@pytest.mark.parametrize("scalar", [True, False], ids=["scalar-flag", "shape-1-flag"])
def test_finished_flag_read_triggers_one_more_key_read(simulated_writer, scalar):
    # The race: the follower reads the keys, then the writer sets the last keys and the flag,
    # then the follower reads the flag. Stopping right away would lose the last frames.
    writer = simulated_writer(scan_shape=(10,), finished_scalar=scalar)
    write(writer, 6)

    def writer_finishes() -> None:
        write(writer, 4)
        writer.finish()

    finished = RecordingDataset(writer.finished, before_read=writer_finishes)
    follower = KeyFollower(writer.keys, timeout=5, finished_dataset=finished)
    assert follower.poll() == 5
    assert list(follower) == list(range(10))
    assert follower.finished_set
    assert follower.stop_reason == "finished"


def test_idle_polls_read_the_finished_flag_at_most_every_finished_interval(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,))
    finished = RecordingDataset(writer.finished)
    follower = KeyFollower(
        writer.keys,
        1.0,
        finished,
        policy=FollowPolicy(poll_interval_s=0.001, finished_interval_s=0.01),
        clock=clock,
        sleep=clock.sleep,
    )
    assert list(follower) == []
    assert 1000 <= len(clock.sleeps) <= 1001  # polled every millisecond...
    assert 95 <= len(finished.reads) <= 102  # ...but read the flag every 10 ms


def test_the_poll_that_times_out_reads_the_finished_flag_even_if_not_due(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,))
    write(writer, 3)
    follower = follower_for(writer, clock, timeout=0.5, finished_interval_s=3600)
    assert follower.poll() == 2
    assert follower.poll() == 2  # reads the flag (0): the next read is due in an hour
    writer.finish()
    assert list(follower) == [0, 1, 2]
    assert follower.stop_reason == "finished"


def test_idle_timeout_delivers_every_complete_frame_then_stops(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,))
    write(writer, 3)
    clock.after(0.5, lambda: write(writer, 2))
    follower = follower_for(writer, clock, timeout=1.0)
    assert list(follower) == [0, 1, 2, 3, 4]
    assert follower.stop_reason == "timeout"
    assert follower.timed_out
    assert 1.5 <= clock() < 1.51  # one idle second after frames 3-4 were handed out


def test_wait_for_restarts_the_idle_clock_on_progress(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,))
    for n in range(1, 6):
        clock.after(0.6 * n, lambda: write(writer, 2))  # 0.6 s apart, under the timeout
    follower = follower_for(writer, clock, timeout=1.0)
    assert follower.wait_for(9)
    assert follower.stop_reason is None
    assert 3.0 <= clock() < 3.01


def test_frame_completed_just_before_the_timeout_is_delivered(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,))
    write(writer, 2)
    follower = follower_for(writer, clock, timeout=1.0, poll_interval_s=0.125)
    assert [next(follower), next(follower)] == [0, 1]
    clock.after(0.95, lambda: write(writer, 1))  # after the last regular poll, before the stop
    assert list(follower) == [2]
    assert follower.stop_reason == "timeout"


def test_finished_dataset_unreadable_when_polled_is_an_error(simulated_writer):
    class BrokenFlag:
        shape = (1,)
        dtype = np.dtype("i4")
        name = "/entry/finished"

        def __getitem__(self, selection):
            raise OSError("Can't read data (wrong B-tree signature)")

    writer = simulated_writer(scan_shape=(5,))
    follower = KeyFollower(writer.keys, timeout=5, finished_dataset=BrokenFlag())
    with pytest.raises(
        FinishedDatasetError, match="cannot read finished dataset '/entry/finished'"
    ):
        follower.poll()


def test_finished_dataset_grown_to_several_elements_is_an_error(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w", libver="latest") as f:
        key = f.create_dataset("k", data=[1, 0], maxshape=(None,))
        flag = f.create_dataset("done", data=[0], maxshape=(None,), chunks=(4,))
        follower = KeyFollower([key], timeout=5, finished_dataset=flag)
        assert follower.poll() == 0  # moved, so the flag is not read yet
        flag.resize((3,))
        flag[:] = [1, 0, 0]
        with pytest.raises(FinishedDatasetError, match="must be one number"):
            follower.poll()


def test_slow_consumer_does_not_time_out_on_a_backlog(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,))
    write(writer, 5)
    follower = follower_for(writer, clock, timeout=1.0)
    delivered = []
    for index in follower:
        delivered.append(index)
        clock.sleep(3.0)  # slower than the timeout, per frame
        if index == 2:
            write(writer, 5)
    assert delivered == list(range(10))


def test_pre_sized_complete_keys_stop_without_waiting(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(2, 3), presized=True, finished=False)
    write(writer, 6)
    follower = follower_for(writer, clock, timeout=60)
    assert list(follower) == list(range(6))
    assert follower.stop_reason == "complete"
    assert follower.are_keys_complete()
    assert clock.sleeps == []


def test_is_finished_follows_swmr_tools_meaning(simulated_writer):
    writer = simulated_writer(scan_shape=(5,))
    write(writer, 2)
    follower = KeyFollower(writer.keys, timeout=5, finished_dataset=writer.finished)
    assert not follower.is_finished()
    writer.finish()
    assert not follower.is_finished()  # frames 0 and 1 not handed out yet
    assert list(follower) == [0, 1]
    assert follower.is_finished()


def test_reset_after_a_finished_stop_hands_out_the_same_frames(simulated_writer):
    writer = simulated_writer(scan_shape=(8,))
    write(writer, 5)
    writer.finish()
    follower = KeyFollower(writer.keys, 5, writer.finished)
    assert list(follower) == list(range(5))
    assert follower.stop_reason == "finished"
    follower.reset()
    assert list(follower) == list(range(5))
    assert follower.stop_reason == "finished"


def test_reset_hands_out_frames_again_from_zero(simulated_writer):
    writer = simulated_writer(scan_shape=(5,))
    write(writer, 5)
    follower = KeyFollower(writer.keys, timeout=0)
    assert list(follower) == list(range(5))
    follower.reset()
    assert follower.stop_reason is None
    assert list(follower) == list(range(5))


# ---------------------------------------------------------------- 5. regressions, growth


def test_key_back_to_zero_warns_and_the_frontier_holds(simulated_writer):
    writer = simulated_writer(scan_shape=(20,))
    write(writer, 10)
    follower = KeyFollower(writer.keys, timeout=0)
    assert [next(follower) for _ in range(10)] == list(range(10))
    writer.set_keys(0, [9], value=0)
    with pytest.warns(KeyRegressionWarning, match=r"frame\(s\) \[9\].*frontier 9") as record:
        assert follower.poll() == 9
    assert record[0].filename == __file__  # the warning points at the caller's line
    write(writer, 5)
    assert list(follower) == list(range(10, 15))
    assert follower.regressions == [9]


def test_key_back_to_zero_is_an_error_in_strict_mode(simulated_writer):
    writer = simulated_writer(scan_shape=(20,))
    write(writer, 10)
    follower = KeyFollower(writer.keys, timeout=0, policy=FollowPolicy(strict=True))
    follower.poll()
    writer.set_keys(0, [8], value=0)
    with pytest.raises(KeyRegressionError, match=r"\[8\]"):
        follower.poll()


def test_shrinking_key_dataset_is_a_regression(simulated_writer):
    writer = simulated_writer(scan_shape=(20,))
    write(writer, 10)
    follower = KeyFollower(writer.keys, timeout=0)
    assert follower.poll() == 9
    writer.keys[0].resize((7,))
    with pytest.warns(KeyRegressionWarning, match=r"\[7, 8, 9\]"):
        assert follower.poll() == 9


def test_empty_key_datasets_at_the_start_are_waited_on(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(3, 4))
    assert writer.keys[0].shape == (0, 4)
    clock.after(0.2, lambda: write(writer, 5))
    follower = follower_for(writer, clock, timeout=1.0)
    assert follower.poll() == -1
    assert list(follower) == [0, 1, 2, 3, 4]


def test_inner_scan_dims_may_grow_during_the_first_row(tmp_path):
    with h5py.File(tmp_path / "grow.h5", "w", libver="latest") as f:
        key = f.create_dataset("k", shape=(1, 2), maxshape=(None, None), dtype="i4", chunks=(1, 4))
        key[0, :] = 1
        follower = KeyFollower([key], timeout=0)
        assert follower.poll() == 1
        key.resize((1, 4))
        key[0, 2:] = 1
        assert follower.poll() == 3
        key.resize((2, 4))
        key[1, :2] = 1
        assert follower.poll() == 5


def test_inner_scan_dims_changing_after_the_first_row_is_an_error(tmp_path):
    with h5py.File(tmp_path / "grow.h5", "w", libver="latest") as f:
        key = f.create_dataset("k", shape=(2, 2), maxshape=(None, None), dtype="i4", chunks=(1, 4))
        key[...] = 1
        follower = KeyFollower([key], timeout=0)
        assert follower.poll() == 3
        key.resize((2, 4))
        with pytest.raises(KeyDatasetError, match=r"from \(2, 2\) to \(2, 4\).*renumber"):
            follower.poll()


# ---------------------------------------------------------------- 6. gap policy


def test_gap_blocks_by_default_and_says_what_it_held_back(simulated_writer, caplog):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(20,), gaps=(5,))
    write(writer, 20)
    writer.finish()
    follower = follower_for(writer, clock)
    with caplog.at_level(logging.WARNING, logger="h5live"):
        assert list(follower) == [0, 1, 2, 3, 4]
    assert follower.stop_reason == "finished"
    assert "14 complete frame(s) after the gap at frame 5" in caplog.text


def test_skip_policy_delivers_past_a_gap_that_stays_open(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(20,), gaps=(5, 6, 11))
    write(writer, 15)
    follower = follower_for(
        writer, clock, timeout=10, poll_interval_s=0.01, gaps="skip", gap_timeout_s=1.0
    )
    delivered = [next(follower) for _ in range(5)]
    assert delivered == [0, 1, 2, 3, 4]
    assert clock() == 0
    delivered += [next(follower) for _ in range(7)]
    assert delivered == [0, 1, 2, 3, 4, 7, 8, 9, 10, 12, 13, 14]
    assert 1.0 <= clock() < 1.2
    assert follower.skipped == [5, 6, 11]
    mask = follower.delivered_mask()
    assert mask.tolist() == [i not in (5, 6, 11) for i in range(15)]


def test_skip_policy_keeps_a_gap_that_is_filled_in_time(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(20,), gaps=(5,))
    write(writer, 12)
    clock.after(0.5, lambda: writer.set_keys(0, [5]))
    follower = follower_for(writer, clock, timeout=0.6, gaps="skip", gap_timeout_s=1.0)
    assert list(follower) == list(range(12))
    assert follower.skipped == []


def test_skip_policy_skips_remaining_gaps_at_once_when_finished(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(10,), gaps=(2, 7))
    write(writer, 10)
    writer.finish()
    follower = follower_for(writer, clock, timeout=60, gaps="skip", gap_timeout_s=30)
    assert list(follower) == [0, 1, 3, 4, 5, 6, 8, 9]
    assert follower.skipped == [2, 7]
    assert clock() < 1


def test_skip_policy_delivers_past_open_gaps_when_the_timeout_stops_it(simulated_writer):
    # The writer died with a gap open: nothing will close it, so giving up delivers every
    # complete frame, as the finished flag would, instead of dropping them silently.
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(30,), gaps=(5,), finished=False)
    write(writer, 20)
    follower = follower_for(writer, clock, timeout=2, gaps="skip", gap_timeout_s=5)
    assert list(follower) == [i for i in range(20) if i != 5]
    assert follower.stop_reason == "timeout"
    assert follower.skipped == [5]
    assert clock() < 2.1


def test_skip_policy_finds_a_gap_longer_than_its_first_probe(simulated_writer):
    clock = FakeClock()
    writer = simulated_writer(scan_shape=(2000,), frame_shape=(), gaps=tuple(range(5, 900)))
    write(writer, 1000)
    follower = follower_for(writer, clock, timeout=60, gaps="skip", gap_timeout_s=1)
    delivered = [next(follower) for _ in range(105)]
    assert delivered == [*range(5), *range(900, 1000)]
    assert follower.skipped == list(range(5, 900))
    assert clock() < 5


def entries_read_while_idle(writer: SimulatedWriter, gaps: str) -> int:
    clock = FakeClock()
    key = RecordingDataset(writer.keys[0])
    policy = FollowPolicy(gaps=gaps, gap_timeout_s=0.08)  # skip: a gap scan every 10 ms
    follower = KeyFollower([key], timeout=1.0, policy=policy, clock=clock, sleep=clock.sleep)
    assert list(follower) == list(range(10))
    return sum(key.reads)


def test_skip_policy_looks_ahead_cheaply_when_there_is_no_gap(simulated_writer):
    writer = simulated_writer(scan_shape=(10**6,), frame_shape=(), presized=True)
    write(writer, 10)
    block = entries_read_while_idle(writer, "block")
    skip = entries_read_while_idle(writer, "skip")
    assert skip < 2.5 * block  # scanning the whole 65536-frame lookahead each time: ~4x


def test_iter_ranges_with_max_frames_never_spans_a_skipped_frame(simulated_writer):
    writer = simulated_writer(scan_shape=(12,), gaps=(4,))
    write(writer, 12)
    writer.finish()
    follower = KeyFollower(
        writer.keys, 1, writer.finished, policy=FollowPolicy(gaps="skip", gap_timeout_s=0)
    )
    assert list(follower.iter_ranges(max_frames=3)) == [(0, 3), (3, 4), (5, 8), (8, 11), (11, 12)]


def test_iter_ranges_never_spans_a_skipped_frame(simulated_writer):
    writer = simulated_writer(scan_shape=(10,), gaps=(3, 4, 8))
    write(writer, 10)
    writer.finish()
    follower = KeyFollower(
        writer.keys, 1, writer.finished, policy=FollowPolicy(gaps="skip", gap_timeout_s=0)
    )
    assert list(follower.iter_ranges()) == [(0, 3), (5, 8), (9, 10)]


# ---------------------------------------------------------------- 8. resource handling


def test_repr_says_file_keys_frontier_and_state(simulated_writer):
    writer = simulated_writer(scan_shape=(5,), presized=True, n_keys=2)
    follower = KeyFollower(writer.keys, timeout=0)
    assert repr(follower) == "<KeyFollower 'scan.h5' keys=2 frontier=-1/5 finished=False>"
    write(writer, 5)
    list(follower)
    assert repr(follower).endswith("frontier=4/5 finished=False stopped='complete'>")


def test_close_leaves_a_file_it_did_not_open_open(simulated_writer):
    writer = simulated_writer(scan_shape=(5,))
    with KeyFollower(writer.keys, timeout=0) as follower:
        follower.poll()
    assert writer.file.id.valid


def test_a_closed_follower_refuses_to_poll(simulated_writer):
    follower = KeyFollower(simulated_writer().keys, timeout=0)
    follower.close()
    with pytest.raises(ValueError, match=r"KeyFollower of .*scan\.h5' is closed"):
        follower.poll()
    with pytest.raises(ValueError, match="is closed"):
        next(follower)


def test_keys_whose_file_was_closed_give_a_clear_error(tmp_path):
    f = h5py.File(tmp_path / "k.h5", "w", libver="latest")
    follower = KeyFollower([f.create_dataset("k", data=[1, 1], maxshape=(None,))], timeout=0)
    f.close()
    with pytest.raises(KeyDatasetError, match="its file is closed"):
        follower.poll()


def test_duck_typed_numpy_keys_are_followed():
    class ArrayKeys:
        def __init__(self, array):
            self.array = array
            self.shape = array.shape
            self.maxshape = array.shape

        def __getitem__(self, selection):
            return self.array[selection]

    keys = np.zeros((3, 4, 1), dtype=np.int32)
    keys.reshape(-1)[:7] = 1
    assert list(KeyFollower([ArrayKeys(keys)], timeout=0)) == list(range(7))


def test_source_spec_pickles():
    spec = SourceSpec("scan.h5", key_paths=["/a", "/b"], finished_path="/f", open_timeout_s=3)
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert spec.key_paths == ("/a", "/b")


def test_completed_at_is_the_clock_time_of_the_poll_that_saw_the_frame(
    simulated_writer, fake_clock
):
    writer = simulated_writer(scan_shape=(20,))
    follower = KeyFollower(writer.keys, 1.0, clock=fake_clock, sleep=fake_clock.sleep)
    assert follower.completed_at(0) is None
    write(writer, 5)
    fake_clock.sleep(3.0)
    follower.poll()
    seen = fake_clock()
    write(writer, 5)
    fake_clock.sleep(2.0)
    follower.poll()
    assert [follower.completed_at(i) for i in (0, 4, 5, 9)] == [seen, seen, seen + 2, seen + 2]
    assert follower.completed_at(10) is None


def test_complete_since_is_the_read_before_the_one_that_saw_the_frame(simulated_writer, fake_clock):
    # A consumer that does not poll for a while must not think frames complete later than
    # they may have been: the latency bound counts from the read before.
    writer = simulated_writer(scan_shape=(20,))
    follower = KeyFollower(writer.keys, 1.0, clock=fake_clock, sleep=fake_clock.sleep)
    write(writer, 5)
    follower.poll()
    first = fake_clock()
    fake_clock.sleep(1.0)
    follower.poll()  # nothing new
    idle = fake_clock()
    write(writer, 5)
    fake_clock.sleep(2.0)
    follower.poll()
    assert follower.complete_since(0) == first  # complete at the first read: its time
    assert follower.complete_since(7) == idle  # may have completed right after that read
    assert follower.completed_at(7) == idle + 2.0
    assert follower.complete_since(10) is None
