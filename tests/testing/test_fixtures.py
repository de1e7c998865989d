"""The fixtures that own a test's processes, and the progress wait, tested for what they promise:
a test that fails in the middle of a live conversion leaves no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from h5live.testing import FakeClock, ProcessGroup, StallError, wait_for_progress

FAILING_TEST = """
import json
import subprocess
import sys

from helpers import start_converter, wait_for_frames


def test_fails_in_the_middle_of_a_live_conversion(writer_process, spawn, tmp_path):
    writer = writer_process(scan_shape=(100000,), frame_shape=(4,), frame_rate_hz=200)
    copy = tmp_path / "copy.h5"
    copier = start_converter(spawn, "copy", writer.path, copy, "--max-latency", "0.05")
    sleeper = spawn([sys.executable, "-c", "import time; time.sleep(600)"], stdout=subprocess.PIPE)
    wait_for_frames(copy, 2, copier)
    with open({pids!r}, "w") as f:
        json.dump([writer.pid, copier.pid, sleeper.pid], f)
    assert False, "a failure in the middle of a live conversion"
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, ended but not reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.live
def test_a_test_failing_mid_conversion_leaves_no_process_behind(pytester, tmp_path):
    pids = tmp_path / "pids.json"
    pytester.makeconftest('pytest_plugins = ["h5live.testing.pytest_plugin"]')
    pytester.makepyfile(test_inner=FAILING_TEST.replace("{pids!r}", repr(str(pids))))
    tests = Path(__file__).resolve().parents[1]  # for `helpers`
    env_path = os.pathsep.join(filter(None, [str(tests), os.environ.get("PYTHONPATH")]))
    pytester._monkeypatch.setenv("PYTHONPATH", env_path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", timeout=300)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*a failure in the middle of a live conversion*"])
    started = json.loads(pids.read_text())
    assert len(started) == 3
    assert [pid for pid in started if alive(pid)] == []


def test_a_process_group_ends_what_it_started():
    with ProcessGroup() as group:
        sleeper = group.start([sys.executable, "-c", "import time; time.sleep(600)"])
        done = group.start([sys.executable, "-c", "pass"], stdout=subprocess.PIPE)
        done.communicate(timeout=120)
        assert group.running() == [sleeper.pid]
        assert repr(group) == "<ProcessGroup processes=2 running=1>"
    assert sleeper.returncode is not None  # killed and reaped
    assert not alive(sleeper.pid)
    group.close()  # idempotent


def counter(values: list[int | None]):
    steps = iter(values)
    return lambda: next(steps)


def test_progress_is_waited_for_as_long_as_it_advances(fake_clock: FakeClock):
    # 1 s between polls: no deadline would hold 7 s, but the count never stalls for 3 s.
    count = counter([None, 0, 0, 1, 1, 2, 3, 4])
    reached = wait_for_progress(
        count, 4, what="frames", stall_s=3, poll_s=1, clock=fake_clock, sleep=fake_clock.sleep
    )
    assert reached == 4


def test_a_stall_fails_and_says_what_stalled(fake_clock: FakeClock):
    count = counter([0, 1, 1, 1, 1, 1])
    with pytest.raises(StallError, match=r"frames in copy\.h5 stalled: 1 of 5, no progress for 3"):
        wait_for_progress(
            count,
            5,
            what="frames in copy.h5",
            stall_s=3,
            poll_s=1,
            clock=fake_clock,
            sleep=fake_clock.sleep,
        )


def test_an_ended_process_fails_the_wait_at_once_with_its_stderr(spawn):
    process = spawn(
        [sys.executable, "-c", "import sys; sys.exit('h5live: error: no keys')"],
        stderr=subprocess.PIPE,
        text=True,
    )
    process.wait(timeout=120)
    with pytest.raises(StallError, match=r"0 of 5 when .* ended with exit code 1: h5live: error"):
        wait_for_progress(lambda: 0, 5, what="frames", process=process)


def test_unreadable_counts_are_not_progress_yet(fake_clock: FakeClock):
    def missing() -> int:
        raise FileNotFoundError("copy.h5")

    with pytest.raises(StallError, match="None of 1"):
        wait_for_progress(
            missing, 1, what="frames", stall_s=2, poll_s=1, clock=fake_clock, sleep=fake_clock.sleep
        )


@pytest.mark.live
def test_a_stalled_h5live_process_is_asked_where_it_is(writer_process, spawn):
    # The writer never goes past its first hold: `h5live follow` waits, and the wait stalls.
    writer = writer_process(scan_shape=(10,), frame_shape=(2,), hold_at=0)
    follower = spawn(
        [sys.executable, "-m", "h5live", "follow", writer.path, "--timeout", "none"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with pytest.raises(StallError) as stalled:
        wait_for_progress(lambda: 0, 1, what="frames followed", process=follower, stall_s=2)
    message = str(stalled.value)
    assert "frames followed stalled: 0 of 1, no progress for 2 s; where its process was:" in message
    assert "most recent call first" in message  # its stacks, from faulthandler
    assert "follower.py" in message
    assert follower.poll() is not None  # and it was ended
