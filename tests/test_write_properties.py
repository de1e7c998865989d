"""Property of the live write path: for any write schedule, chunk and buffer shapes and latency
bound, what a reader of the destination sees after every write is a prefix of the source (its
extent never covers a frame that is not written, every frame inside it is the source's, its keys
never cover more), and the finished destination equals the source.

The writer is stepped in-process on a fake clock: its steps run while the iterator waits, so
releases for the latency bound, whole buffers and the end all happen, without real sleeping.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from h5live import KeyFollower, LiveDataChunkIterator
from h5live._write.destination import create_live_dataset
from h5live._write.loop import LiveTarget, LiveWrite
from h5live._write.output import HDF5_LAYOUT, LiveOutput, frames_keyed
from h5live._write.sink import DatasetSink
from h5live.testing import FakeClock, SimulatedWriter, frame_values
from h5live.testing.strategies import write_schedules

FRAME = (3,)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        scan = (draw(st.integers(1, 60)),)
    else:
        scan = (draw(st.integers(1, 8)), draw(st.integers(1, 6)))
    presized = draw(st.booleans())
    rows = scan[0]
    chunk_rows = draw(st.integers(1, min(rows, 12) if presized else 12))
    buffer_rows = chunk_rows * draw(st.integers(1, 4))
    if presized:
        buffer_rows = min(buffer_rows, rows)
    steps = draw(write_schedules(n_frames=math.prod(scan), n_keys=1, max_steps=12))
    return {
        "scan": scan,
        "presized": presized,
        "chunk_rows": chunk_rows,
        "buffer_rows": buffer_rows,
        "same_chunks": draw(st.booleans()),  # the source's chunks: copied raw
        "compression": draw(st.sampled_from([None, "gzip"])),
        "max_latency_s": draw(st.sampled_from([None, 0.0, 0.01, 0.2])),
        "steps": [(draw(st.sampled_from([0.0, 0.003, 0.05, 0.4])), step) for step in steps],
    }


class ReaderCheck(DatasetSink):
    """A sink that looks at its destination as a reader would after every write."""

    def __init__(self, destination: Any, iterator: Any, scan: tuple[int, ...]) -> None:
        super().__init__(destination, iterator.dataset)
        self.per_row = math.prod(scan[1:])
        self.output: LiveOutput | None = None
        self.looks = 0

    def write(self, chunk: Any) -> int:
        written = super().write(chunk)
        rows = int(self.destination.shape[0])
        frames = self.destination[:rows].reshape(-1, *FRAME)
        want = [frame_values(i, FRAME, "uint16") for i in range(len(frames))]
        if want:  # (chunks handed to the encoding pool may not be written yet)
            assert np.array_equal(frames, np.stack(want).reshape(frames.shape)), "a frame differs"
        if self.output is not None:  # keys set so far never cover more than the extent
            assert frames_keyed(self.output.keys) <= rows * self.per_row
        self.looks += 1
        return written


@settings(max_examples=50, deadline=None)
@given(case=scenarios())
def test_a_reader_sees_a_prefix_of_the_source_and_the_end_equals_it(case):
    scan, rows = case["scan"], case["chunk_rows"]
    inner = scan[1:]
    with tempfile.TemporaryDirectory() as tmp:
        clock = FakeClock()
        data_chunks = (rows, *inner, *FRAME) if case["same_chunks"] else None
        writer = SimulatedWriter(
            Path(tmp) / "scan.h5",
            scan_shape=scan,
            frame_shape=FRAME,
            presized=case["presized"],
            data_chunks=data_chunks,
        )
        at = 0.0
        for delay, step in case["steps"]:
            at += delay
            if step[0] == "append":
                clock.at(at, lambda n=step[1]: writer.append(n))
            else:
                clock.at(at, lambda frames=step[2]: writer.set_keys(0, frames))

        def end() -> None:
            writer.append(math.prod(scan))
            writer.set_keys(0, range(math.prod(scan)))
            writer.finish()

        clock.at(at + 0.01, end)
        try:
            follower = KeyFollower(
                writer.keys, 30.0, writer.finished, clock=clock, sleep=clock.sleep
            )
            iterator = LiveDataChunkIterator(
                writer.data,
                follower=follower,
                chunk_shape=(rows, *inner, *FRAME),
                buffer_shape=(case["buffer_rows"], *inner, *FRAME),
                max_latency_s=case["max_latency_s"],
                clock=clock,
                sleep=clock.sleep,
            )
            with h5py.File(Path(tmp) / "out.h5", "w", libver="latest") as out:
                compression = {"compression": case["compression"]} if case["compression"] else {}
                made = create_live_dataset(out, "/entry/data/data", iterator, compression)
                assert made.shape[0] == 0
                output = LiveOutput.create(
                    out,
                    HDF5_LAYOUT,
                    iterator.recommended_data_shape()[: len(scan)],
                    iterator.final_rows,
                    source=str(writer.path),
                    datasets=["/entry/data/data"],
                )
                sink = ReaderCheck(made, iterator, scan)
                sink.output = output
                loop = LiveWrite(out, output, [LiveTarget(iterator, sink)])
                assert loop.run() == "complete"
                assert sink.looks >= 1
                np.testing.assert_array_equal(
                    made[...].reshape(-1, *FRAME),
                    np.stack([frame_values(i, FRAME, "uint16") for i in range(math.prod(scan))]),
                )
                assert output.frames_complete == math.prod(scan)
            iterator.close()
        finally:
            writer.close()
