"""Processing stages inside the live conversions: reduced in one pass, chunk-aligned, followable."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np
import pynwb
import pytest

from h5live import (
    KeyFollower,
    LiveDataChunkIterator,
    bin_frames,
    copy_live,
    crop_frames,
    sum_frames,
    to_nwb,
)
from h5live.errors import OutputExistsError
from h5live.testing import frame_values

DATA = "/entry/data/data"
METADATA = {
    "session_description": "stages",
    "identifier": "h5live-stages",
    "session_start_time": "2026-03-04T05:06:07+00:00",
}


def frames(n: int, frame: tuple[int, ...]) -> np.ndarray:
    return np.stack([frame_values(i, frame, "uint16") for i in range(n)])


def binned(stack: np.ndarray) -> np.ndarray:
    n, h, w = stack.shape
    return stack.reshape(n, h // 2, 2, w // 2, 2).sum(axis=(2, 4), dtype="uint32")


@pytest.mark.live
def test_the_iterator_hands_out_the_stages_output_of_a_live_grid(writer_process):
    process = writer_process(scan_shape=(5, 3), frame_shape=(8, 6), frame_rate_hz=500, hold_at=0)
    process.go()
    with LiveDataChunkIterator(
        process.path, DATA, stages=[crop_frames(np.s_[2:6, 1:4])], chunk_shape=(1, 3, 4, 3)
    ) as iterator:
        assert (iterator.frame_shape, iterator.dtype) == ((4, 3), np.dtype("uint16"))
        chunks = list(iterator)
    assert process.wait() == 0
    got = np.zeros((5, 3, 4, 3), dtype="uint16")
    for chunk in chunks:
        got[chunk.selection] = chunk.data
    np.testing.assert_array_equal(got, frames(15, (8, 6))[:, 2:6, 1:4].reshape(5, 3, 4, 3))


def test_stages_need_chunks_of_whole_frames(simulated_writer):
    writer = simulated_writer(scan_shape=(8,), frame_shape=(8, 6))
    writer.run()
    writer.close()
    with pytest.raises(ValueError, match=r"span whole frames \(4, 3\).*Fix"):
        LiveDataChunkIterator(writer.path, DATA, stages=[bin_frames(2, 2)], chunk_shape=(1, 2, 3))


@pytest.mark.live
@pytest.mark.parametrize("compression", [None, "zstd"])
def test_copy_live_reduces_a_live_stack_in_one_pass(writer_process, tmp_path, compression):
    process = writer_process(
        scan_shape=(120,),
        frame_shape=(16, 12),
        frame_rate_hz=600,
        timestamps=True,
        compression=compression,
        hold_at=0,
    )
    process.go()
    result = copy_live(
        process.path, tmp_path / "binned.h5", stages=[bin_frames(2, 2)], chunk_shape=(8, 8, 6)
    )
    assert process.wait() == 0
    assert (result.state, result.frames_complete) == ("complete", 120)
    assert not result.chunk_copy[DATA].startswith("raw")  # the stages change the frames
    with h5py.File(tmp_path / "binned.h5", "r") as f, h5py.File(process.path, "r") as s:
        assert (f[DATA].dtype, f[DATA].chunks) == (np.dtype("uint32"), (8, 8, 6))
        np.testing.assert_array_equal(f[DATA][...], binned(frames(120, (16, 12))))
        np.testing.assert_array_equal(f["/entry/flush_time"][...], s["/entry/flush_time"][...])
    follower = KeyFollower.from_path(tmp_path / "binned.h5", timeout=1.0)
    with follower:
        assert list(follower) == list(range(120))  # followable like any other output


class CtrlCAfter:
    """A progress bar that presses Ctrl-C once 40 frames are handed out."""

    def __init__(self, total: int | None = None, **options: Any) -> None:
        self.n = 0

    def update(self, frames: int) -> None:
        self.n += frames
        if self.n >= 40:
            raise KeyboardInterrupt

    def close(self) -> None:
        pass


def test_a_reduced_copy_resumes_with_the_same_stages_only(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(100,), frame_shape=(8, 6))
    writer.run()
    writer.close()
    copy = tmp_path / "sums.h5"
    shapes = {"chunk_shape": (8,), "buffer_shape": (8,)}
    with pytest.raises(KeyboardInterrupt):
        copy_live(
            writer.path,
            copy,
            stages=[sum_frames()],
            display_progress=True,
            progress_bar_class=CtrlCAfter,
            **shapes,
        )
    with pytest.raises(OutputExistsError, match="frames"):
        copy_live(writer.path, copy, resume=True)  # unreduced frames would not fit
    result = copy_live(writer.path, copy, resume=True, stages=[sum_frames()])
    assert (result.state, result.frames_complete) == ("complete", 100)
    assert 0 < result.resumed_from < 100
    with h5py.File(copy, "r") as f:
        sums = frames(100, (8, 6)).reshape(100, -1).sum(axis=1)
        np.testing.assert_array_equal(f[DATA][...], sums)


@pytest.mark.live
def test_to_nwb_writes_one_number_per_frame_as_a_time_series(writer_process, tmp_path):
    process = writer_process(
        scan_shape=(90,), frame_shape=(16, 12), frame_rate_hz=600, timestamps=True, hold_at=0
    )
    process.go()
    nwb = tmp_path / "totals.nwb"
    result = to_nwb(process.path, nwb, metadata=METADATA, stages=[sum_frames()])
    assert process.wait() == 0
    assert result.state == "complete"
    assert pynwb.validate(path=str(nwb)) == []
    with pynwb.NWBHDF5IO(str(nwb), "r") as io:
        series = io.read().acquisition["detector"]
        assert type(series).__name__ == "TimeSeries"
        sums = frames(90, (16, 12)).reshape(90, -1).sum(axis=1)
        np.testing.assert_array_equal(series.data[:], sums)


def test_stages_for_a_dataset_not_converted_are_refused_by_name(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(8,), frame_shape=(8, 6))
    writer.run()
    writer.close()
    with pytest.raises(ValueError, match=r"\['/entry/nope'\].*scan\.h5.*Fix: name live datasets"):
        copy_live(writer.path, tmp_path / "copy.h5", stages={"/entry/nope": [sum_frames()]})
    assert not (tmp_path / "copy.h5").exists()  # refused before the destination is touched
