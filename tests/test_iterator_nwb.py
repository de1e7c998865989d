"""LiveDataChunkIterator inside real PyNWB writes, from a live writer process."""

from __future__ import annotations

import datetime

import h5py
import hdf5plugin
import numpy as np
import pynwb
import pytest
from hdmf.backends.hdf5.h5_utils import H5DataIO
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.image import ImageSeries

from h5live import LiveDataChunkIterator
from h5live.testing import frame_values

pytestmark = pytest.mark.live


def new_nwbfile() -> NWBFile:
    return NWBFile(
        session_description="live acquisition",
        identifier="h5live-test",
        session_start_time=datetime.datetime(2026, 11, 21, tzinfo=datetime.timezone.utc),
    )


def expected(n: int, frame: tuple[int, ...]) -> np.ndarray:
    return np.stack([frame_values(i, frame, "uint16") for i in range(n)])


COMPRESSION = {
    "gzip": {"compression": "gzip"},
    "zstd": {**hdf5plugin.Zstd(), "allow_plugin_filters": True},
}


# hdmf warns that plugin filters are less portable than gzip; that is the point of this case.
@pytest.mark.filterwarnings("ignore:32015 compression may not be available:UserWarning")
@pytest.mark.parametrize("compression", COMPRESSION.values(), ids=COMPRESSION.keys())
def test_timeseries_of_a_live_source(writer_process, tmp_path, compression):
    process = writer_process(scan_shape=(400,), frame_shape=(8,), frame_rate_hz=3000, hold_at=0)
    nwbfile = new_nwbfile()
    with LiveDataChunkIterator(
        process.path, "/entry/data/data", chunk_shape=(64, 8), buffer_gb=0.0001
    ) as frames:
        nwbfile.add_acquisition(
            TimeSeries(
                name="detector", data=H5DataIO(frames, **compression), unit="counts", rate=3000.0
            )
        )
        process.go()
        with NWBHDF5IO(tmp_path / "out.nwb", "w") as io:
            io.write(nwbfile)
    assert process.wait() == 0
    with NWBHDF5IO(tmp_path / "out.nwb", "r") as io:
        data = io.read().acquisition["detector"].data[:]
    np.testing.assert_array_equal(data, expected(400, (8,)))
    assert pynwb.validate(path=str(tmp_path / "out.nwb")) == []


def test_image_frames_and_their_timestamps_converted_together(writer_process, tmp_path):
    process = writer_process(
        scan_shape=(300,), frame_shape=(16, 12), frame_rate_hz=3000, timestamps=True, hold_at=0
    )
    nwbfile = new_nwbfile()
    with LiveDataChunkIterator(
        process.path, "/entry/data/data", chunk_shape=(32, 16, 12), buffer_gb=0.0002
    ) as frames:
        times = LiveDataChunkIterator(
            frames.dataset.file["/entry/flush_time"],
            follower=frames.follower,
            chunk_shape=(64,),
            buffer_shape=(128,),
        )
        nwbfile.add_acquisition(
            ImageSeries(
                name="camera",
                data=H5DataIO(frames, compression="gzip"),
                timestamps=H5DataIO(times),
                unit="n.a.",
            )
        )
        process.go()
        with NWBHDF5IO(tmp_path / "out.nwb", "w") as io:
            io.write(nwbfile, exhaust_dci=False)
    assert process.wait() == 0
    with h5py.File(process.path, "r") as source:
        flushed = source["/entry/flush_time"][...]
    with NWBHDF5IO(tmp_path / "out.nwb", "r") as io:
        series = io.read().acquisition["camera"]
        np.testing.assert_array_equal(series.data[:], expected(300, (16, 12)))
        np.testing.assert_array_equal(series.timestamps[:], flushed)
    assert pynwb.validate(path=str(tmp_path / "out.nwb")) == []
