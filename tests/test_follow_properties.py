"""Property: for any write schedule, the frames reported complete are exactly the frames whose
data was written and whose keys were all flushed (a prefix), never more, never fewer."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from h5live import KeyFollower
from h5live.testing import SimulatedWriter
from h5live.testing.strategies import write_schedules


def model_frontier(keyed: list[set[int]], written: int) -> int:
    """Highest i such that every key is set at every index 0..i (and data was written)."""
    frontier = -1
    while frontier + 1 < written and all(frontier + 1 in k for k in keyed):
        frontier += 1
    return frontier


@st.composite
def scenarios(draw):
    if draw(st.booleans()):
        scan_shape = (draw(st.integers(1, 60)),)
    else:
        scan_shape = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    n_keys = draw(st.integers(1, 3))
    schedule = draw(write_schedules(n_frames=math.prod(scan_shape), n_keys=n_keys))
    options = {
        "scan_shape": scan_shape,
        "n_keys": n_keys,
        "presized": draw(st.booleans()),
        "key_trailing_ones": draw(st.integers(0, 1)),
        "frame_shape": (),
    }
    return options, schedule


@settings(max_examples=60, deadline=None)
@given(scenario=scenarios())
def test_complete_frames_are_exactly_the_frames_written_and_flushed(scenario):
    options, schedule = scenario
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimulatedWriter(Path(tmp) / "scan.h5", **options) as writer,
    ):
        follower = KeyFollower(writer.keys, timeout=0, finished_dataset=writer.finished)
        keyed: list[set[int]] = [set() for _ in range(writer.config.n_keys)]
        for step in schedule:
            if step[0] == "append":
                writer.append(step[1])
            else:
                _, key, frames = step
                writer.set_keys(key, frames)
                keyed[key].update(frames)
            assert follower.poll() == model_frontier(keyed, writer.frames_written)
        writer.finish()
        delivered = list(follower)
        assert delivered == list(range(model_frontier(keyed, writer.frames_written) + 1))
        assert follower.stop_reason in ("finished", "complete")
