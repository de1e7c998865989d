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
from pynwb.ecephys import ElectricalSeries
from pynwb.image import ImageSeries
from pynwb.ophys import OpticalChannel, TwoPhotonSeries

from h5live import LiveDataChunkIterator
from h5live.testing import frame_values

pytestmark = pytest.mark.live


def new_nwbfile() -> NWBFile:
    return NWBFile(
        session_description="live acquisition",
        identifier="h5live-test",
        session_start_time=datetime.datetime(2026, 11, 21, tzinfo=datetime.timezone.utc),
    )


def expected(n: int, frame: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    return np.stack([frame_values(i, frame, dtype) for i in range(n)])


def destination_layout(path, dataset: str) -> tuple[tuple[int, ...] | None, list[int]]:
    """Chunk shape and filter ids of a dataset of the written NWB file."""
    with h5py.File(path, "r") as nwb:
        dset = nwb[dataset]
        plist = dset.id.get_create_plist()
        return dset.chunks, [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


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


def test_two_photon_series_of_a_live_source(writer_process, tmp_path):
    process = writer_process(scan_shape=(300,), frame_shape=(16, 12), frame_rate_hz=3000, hold_at=0)
    nwbfile = new_nwbfile()
    device = nwbfile.create_device(name="microscope", description="two-photon microscope")
    plane = nwbfile.create_imaging_plane(
        name="plane",
        optical_channel=OpticalChannel(
            name="green", description="GCaMP emission", emission_lambda=525.0
        ),
        description="layer 2/3",
        device=device,
        excitation_lambda=920.0,
        imaging_rate=3000.0,
        indicator="GCaMP6f",
        location="V1",
    )
    # chunk_mb: the iterator chooses the chunks (whole frames); buffer_gb: several buffers.
    with LiveDataChunkIterator(
        process.path, "/entry/data/data", chunk_mb=0.01, buffer_gb=0.0001
    ) as frames:
        chunk_shape = frames.chunk_shape
        assert frames.dtype == np.dtype("uint16")  # the writer's default, as expected() has
        nwbfile.add_acquisition(
            TwoPhotonSeries(
                name="two_photon",
                imaging_plane=plane,
                data=H5DataIO(frames, compression="gzip"),
                unit="n.a.",
                rate=3000.0,
            )
        )
        process.go()
        with NWBHDF5IO(tmp_path / "out.nwb", "w") as io:
            io.write(nwbfile)
    assert process.wait() == 0
    assert chunk_shape[1:] == (16, 12)
    with NWBHDF5IO(tmp_path / "out.nwb", "r") as io:
        series = io.read().acquisition["two_photon"]
        assert series.imaging_plane.name == "plane"
        data = series.data[:]
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data, expected(300, (16, 12)))
    chunks, filters = destination_layout(tmp_path / "out.nwb", "/acquisition/two_photon/data")
    assert chunks == chunk_shape
    assert filters == [h5py.h5z.FILTER_DEFLATE]
    assert pynwb.validate(path=str(tmp_path / "out.nwb")) == []


# hdmf warns that plugin filters are less portable than gzip; that is the point of this case.
@pytest.mark.filterwarnings("ignore:32001 compression may not be available:UserWarning")
def test_electrical_series_of_a_live_source(writer_process, tmp_path):
    channels = 16
    process = writer_process(
        scan_shape=(3000,),
        frame_shape=(channels,),
        dtype="int16",
        frame_rate_hz=20000,
        flush_every=50,
        hold_at=0,
    )
    nwbfile = new_nwbfile()
    device = nwbfile.create_device(name="probe", description="16-channel silicon probe")
    group = nwbfile.create_electrode_group(
        name="shank0", description="the only shank", location="CA1", device=device
    )
    for channel in range(channels):
        nwbfile.add_electrode(group=group, location="CA1", x=0.0, y=20.0 * channel, z=0.0)
    electrodes = nwbfile.create_electrode_table_region(
        region=list(range(channels)), description="all channels"
    )
    blosc = hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)
    with LiveDataChunkIterator(
        process.path, "/entry/data/data", chunk_mb=0.002, buffer_gb=0.00002
    ) as frames:
        chunk_shape = frames.chunk_shape
        assert frames.dtype == np.dtype("int16")
        nwbfile.add_acquisition(
            ElectricalSeries(
                name="ephys",
                data=H5DataIO(frames, **blosc, allow_plugin_filters=True),
                electrodes=electrodes,
                rate=20000.0,
            )
        )
        process.go()
        with NWBHDF5IO(tmp_path / "out.nwb", "w") as io:
            io.write(nwbfile)
    assert process.wait() == 0
    assert chunk_shape[1:] == (channels,)
    with NWBHDF5IO(tmp_path / "out.nwb", "r") as io:
        series = io.read().acquisition["ephys"]
        assert len(series.electrodes) == channels
        data = series.data[:]
    assert data.dtype == np.int16
    np.testing.assert_array_equal(data, expected(3000, (channels,), "int16"))
    chunks, filters = destination_layout(tmp_path / "out.nwb", "/acquisition/ephys/data")
    assert chunks == chunk_shape
    assert filters == [hdf5plugin.BLOSC_ID]
    assert pynwb.validate(path=str(tmp_path / "out.nwb")) == []
