"""KeyFollower against real writer processes: live growth, races, crashes, misbehaving writers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from h5live import FollowPolicy, KeyFollower
from h5live.errors import KeyRegressionWarning
from h5live.testing import CRASH_EXIT_CODE, WriterProcess
from h5live.testing.strategies import writer_configs

pytestmark = pytest.mark.live

LAYOUTS = {
    "stack": {"scan_shape": (400,)},
    "stack-presized": {"scan_shape": (400,), "presized": True},
    "grid": {"scan_shape": (20, 15)},
    "grid-presized-trailing-ones": {
        "scan_shape": (20, 15),
        "presized": True,
        "key_trailing_ones": 2,
    },
}


@pytest.mark.parametrize("n_keys", [1, 2, 3], ids=["1-key", "2-keys", "3-keys"])
@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_live_scan_delivers_every_frame_once_in_order(writer_process, layout, n_keys):
    process = writer_process(
        **layout,
        n_keys=n_keys,
        key_order="random",
        key_jitter_s=0.0002,
        frame_rate_hz=4000,
        hold_at=0,
    )
    with KeyFollower.from_path(process.path, timeout=10) as follower:
        assert follower.poll() == -1
        process.go()
        delivered = list(follower)
    assert process.wait() == 0
    assert delivered == list(range(process.config.n_frames))
    assert follower.stop_reason in ("finished", "complete")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scalar", [True, False], ids=["scalar-flag", "shape-1-flag"])
def test_finished_right_after_the_last_keys_loses_no_frame(writer_process, seed, scalar):
    # As fast as possible, finished set straight after the last keys, with a real writer.
    # The race itself (keys read, then keys and flag set, then flag read) is too narrow to
    # hit reliably here; test_follow.py forces it deterministically.
    process = writer_process(
        scan_shape=(1500,), frame_shape=(), n_keys=2, finished_scalar=scalar, seed=seed, hold_at=0
    )
    with KeyFollower.from_path(process.path, timeout=30) as follower:
        process.go()
        ranges = list(follower.iter_ranges())
    assert process.wait() == 0
    assert ranges[0][0] == 0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert ranges[-1][1] == 1500
    assert follower.stop_reason == "finished"


def test_writer_crash_stops_after_the_timeout_with_exactly_the_complete_frames(writer_process):
    process = writer_process(scan_shape=(300,), crash_after=123, frame_rate_hz=3000, hold_at=0)
    with KeyFollower.from_path(process.path, timeout=3) as follower:
        process.go()
        delivered = list(follower)
    assert process.wait() == CRASH_EXIT_CODE
    assert delivered == list(range(123))
    assert follower.stop_reason == "timeout"
    assert follower.timed_out
    assert not follower.finished_set


def test_aborted_scan_stops_on_finished(writer_process):
    process = writer_process(scan_shape=(300,), stop_after=77, presized=True)
    with KeyFollower.from_path(process.path, timeout=30) as follower:
        assert list(follower) == list(range(77))
    assert follower.stop_reason == "finished"
    assert process.wait() == 0


def test_empty_keys_at_the_start_then_growth_are_followed(writer_process):
    process = writer_process(scan_shape=(12, 10), frame_rate_hz=2000, hold_at=0)
    with KeyFollower.from_path(process.path, timeout=10) as follower:
        assert follower.key_datasets[0].shape == (0, 10)
        assert follower.poll() == -1
        process.go()
        assert list(follower) == list(range(120))
    assert process.wait() == 0


def test_key_reset_by_the_writer_warns_and_no_frame_is_repeated(writer_process):
    process = writer_process(scan_shape=(100,), regressions=((60, 10),), hold_at=20)
    with KeyFollower.from_path(process.path, timeout=10) as follower:
        assert follower.wait_for(19)
        process.go()
        with pytest.warns(KeyRegressionWarning, match=r"\[10\]"):
            delivered = list(follower)
    assert delivered == list(range(100))
    assert follower.regressions == [10]
    assert process.wait() == 0


def test_gap_blocks_by_default(writer_process):
    process = writer_process(scan_shape=(200,), gaps=(50,))
    with KeyFollower.from_path(process.path, timeout=30) as follower:
        assert list(follower) == list(range(50))
    assert follower.stop_reason == "finished"
    assert process.wait() == 0


def test_gap_is_skipped_with_the_skip_policy(writer_process):
    # The writer pauses after frame 149 without finishing: only the gap timer can pass the
    # gaps at 50, 51 and 120 (no timeout, no finished flag yet).
    process = writer_process(scan_shape=(200,), gaps=(50, 51, 120), hold_at=150)
    policy = FollowPolicy(gaps="skip", gap_timeout_s=0.05)
    with KeyFollower.from_path(process.path, timeout=None, policy=policy) as follower:
        assert follower.wait_for(149, timeout_s=60)
        assert follower.skipped == [50, 51, 120]
        process.go()
        delivered = list(follower)
    assert delivered == [i for i in range(200) if i not in (50, 51, 120)]
    assert follower.stop_reason == "finished"
    assert process.wait() == 0


def test_million_frame_pre_sized_keys(writer_process):
    process = writer_process(
        scan_shape=(10**6,), frame_shape=(), presized=True, n_keys=3, stop_after=3000, hold_at=0
    )
    with KeyFollower.from_path(process.path, timeout=30) as follower:
        assert follower.maxshape == (10**6,)
        process.go()
        delivered = list(follower)
    assert delivered == list(range(3000))
    assert follower.stop_reason == "finished"
    assert process.wait() == 0


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=writer_configs(max_frames=150), attach_first=st.booleans())
def test_any_live_writer_schedule_delivers_exactly_the_frames_written(
    tmp_path_factory, config, attach_first
):
    path = tmp_path_factory.mktemp("live") / "scan.h5"
    with WriterProcess(path, config, hold_at=0 if attach_first else None) as process:
        process.start()
        with KeyFollower.from_path(path, timeout=20) as follower:
            if attach_first:
                process.go()
            delivered = list(follower)
        assert process.wait() == 0
    assert delivered == list(range(config.n_frames))
