"""The invariants of every output h5live writes, for ``h5live copy`` and ``h5live nwb``.

- Extent truth: a reader that refreshes and trusts the shape never sees a frame that differs
  from the source (a fill value shown as a frame).
- Latency: a frame complete in the source reaches the output's extent, keyed, without waiting
  for its chunk to fill (chunks here are ten times the scan); the latencies are logged, never
  asserted.
- Followable from birth: swmr_tools 0.9's KeyFollower and ``h5live follow`` follow an output
  from before its first frame to its end.
- Resume beside readers: a resume succeeds while SWMR readers hold the output open.

Each converter runs in its own process, from a real writer process; the writer pauses
(``hold_at``) so that every "while it is written" is a known point, not a race.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import swmr_tools

from h5live._write.output import HDF5_LAYOUT, NWB_LAYOUT, OutputLayout
from h5live.testing import frame_values
from helpers import (
    H5LIVE,
    OutputReaders,
    ended,
    output_status,
    start_converter,
    wait_for_frames,
)

pytestmark = pytest.mark.live

logger = logging.getLogger(__name__)

READER = Path(__file__).parent / "programs" / "output_reader.py"
FRAME = (8, 6)


@dataclass(frozen=True)
class Output:
    """Where a converter's output keeps its frames and bookkeeping."""

    command: str
    data: str
    layout: OutputLayout


OUTPUTS = [
    Output("copy", "/entry/data/data", HDF5_LAYOUT),
    Output("nwb", "/acquisition/detector/data", NWB_LAYOUT),
]


@pytest.fixture(params=OUTPUTS, ids=lambda o: o.command)
def output(request: pytest.FixtureRequest) -> Output:
    return request.param


def start(spawn, output: Output, source: Path, destination: Path, *args: str):
    return start_converter(
        spawn, output.command, source, destination, *args, layout=output.layout, data=output.data
    )


def frames_in(path: Path, output: Output) -> int:
    return wait_for_frames(path, 0, None, output.layout, output.data)


def latencies(lines: list[dict[str, float]], flushed: np.ndarray) -> np.ndarray:
    """Per frame, from the writer's flush to the first look that found it inside the extent."""
    extents = np.array([line["extent"] for line in lines])
    times = np.array([line["at"] for line in lines])
    first_look = np.searchsorted(extents, np.arange(len(flushed)), side="right")
    return times[first_look] - flushed


def test_a_reader_never_sees_a_frame_that_is_not_written_and_frames_come_within_the_latency(
    writer_process, spawn, tmp_path, output
):
    # The writer holds after 150 of 400 frames; chunks are 4096 frames (the default for small
    # frames), so none is full while it holds: the 150 frames must still arrive.
    process = writer_process(
        scan_shape=(400,), frame_shape=FRAME, frame_rate_hz=400, timestamps=True, hold_at=150
    )
    destination = tmp_path / f"out.{output.command}.h5"
    converter = start(spawn, output, process.path, destination, "--timeout", "600")
    where = [str(destination), output.data, output.layout.status]
    reader = spawn(
        [sys.executable, str(READER), *where, "1", "uint16", *map(str, FRAME)],
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for_frames(destination, 150, converter, output.layout, output.data)
    lines = []
    while not lines or lines[-1]["extent"] < 150:  # the reader saw them while the writer held
        line = reader.stdout.readline()
        assert line, "the reader ended before it saw the first 150 frames"
        lines.append(json.loads(line))
    assert converter.poll() is None  # the conversion waits for the writer, it did not stop
    process.go()
    code, _, err = ended(converter)
    assert code == 0, err
    assert process.wait() == 0
    out, _ = reader.communicate(timeout=120)
    *more, summary = [json.loads(line) for line in out.splitlines()]
    lines += more
    assert reader.returncode == 0
    assert summary["wrong"] == []  # (look, extent, first wrong frame, how many)
    assert summary["frames"] == 400
    assert summary["looks"] > len(lines) >= 2  # it looked while the output was written
    with h5py.File(process.path, "r") as f:
        flushed = f["/entry/flush_time"][...]
    waited = latencies(lines, flushed)[150:]  # the first 150 waited for the reader to start
    logger.info(
        "%s: flush -> inside the extent, frames 150..399: p50 %.3f s, max %.3f s (bound 1 s)",
        output.command,
        np.median(waited),
        waited.max(),
    )
    status = output_status(destination, output.layout, output.data)
    assert (status["frames"], status["state"], status["data"]) == (400, "complete", 400)


def test_swmr_tools_and_h5live_follow_an_output_from_birth(writer_process, spawn, tmp_path, output):
    process = writer_process(
        scan_shape=(120,), frame_shape=FRAME, frame_rate_hz=400, timestamps=True, hold_at=0
    )
    destination = tmp_path / f"out.{output.command}.h5"
    converter = start(spawn, output, process.path, destination, "--max-latency", "0.05")
    follower = spawn(
        [*H5LIVE, "follow", str(destination), "--timeout", "60", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with h5py.File(destination, "r", libver="latest", swmr=True) as f:
        keys, finished = f[output.layout.keys], f[output.layout.finished]
        assert keys.size >= 1  # never empty
        theirs = swmr_tools.KeyFollower([keys], timeout=30, finished_dataset=finished)
        theirs.check_datasets()
        assert not theirs.refresh()  # before the first frame: nothing, and no crash
        assert f[output.layout.status + "frames_complete"][()] == 0
        process.go()
        frames = list(theirs)
        data = f[output.data]
        data.refresh()
        np.testing.assert_array_equal(
            data[...], np.stack([frame_values(i, FRAME, "uint16") for i in range(120)])
        )
    assert frames == list(range(120))
    assert not theirs.timed_out  # it stopped on the finished flag
    summary, err = follower.communicate(timeout=120)
    assert follower.returncode == 0, err
    assert (json.loads(summary)["frames"], json.loads(summary)["stop_reason"]) == (120, "finished")
    code, _, err = ended(converter)
    assert code == 0, err
    assert process.wait() == 0


def test_an_nwb_conversion_resumes_while_readers_follow_it(writer_process, spawn, tmp_path):
    output = OUTPUTS[1]
    process = writer_process(
        scan_shape=(400,), frame_shape=FRAME, frame_rate_hz=400, timestamps=True, hold_at=0
    )
    destination = tmp_path / "out.nwb"
    converter = start(spawn, output, process.path, destination, "--max-latency", "0.02")
    process.go()
    wait_for_frames(destination, 40, converter, output.layout, output.data)
    converter.kill()
    ended(converter)
    readers = OutputReaders(spawn, destination, output.layout.status, 400)
    code, _, err = ended(start(spawn, output, process.path, destination, "--resume"))
    assert code == 0, err
    assert process.wait() == 0
    readers.check()
    status = output_status(destination, output.layout, output.data)
    assert (status["frames"], status["state"], status["data"]) == (400, "complete", 400)
