"""h5live.neuroconv: live conversions through neuroconv 0.10 (the real neuroconv, real writer
processes, real NWB files read back with pynwb, validated, inspected).

- LiveHDF5Interface: bad input refused at construction (no NWB file is made), what
  get_metadata says, run_conversion of a source of unknown length equal to the source
  (frames and timestamps), pynwb.validate clean, no CRITICAL nwbinspector finding.
- Backend configurations: neuroconv's own refuse a length of None (pinned, so that this module
  is dropped once they do not); h5live's default configuration of the same NWBFile works, and an
  edited one (chunks, buffers, compression) is what the file holds and what the iterators do.
- Converters: two live interfaces in one converter, written round-robin (the second source
  advances while the first waits), beside a static neuroconv interface.
- The neuroconv private names h5live.neuroconv relies on, with the version they assume.
"""

from __future__ import annotations

import datetime
import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
import pynwb
import pytest
from hdmf.backends.hdf5.h5_utils import H5DataIO
from jsonschema import ValidationError
from neuroconv import BaseDataInterface, ConverterPipe, NWBConverter
from neuroconv.tools import nwb_helpers

import h5live.neuroconv._write
from h5live import LiveDataChunkIterator, LiveNWBHDF5IO
from h5live._write.output import NWB_LAYOUT
from h5live.errors import DatasetNotFoundError, OutputExistsError, SourceNotReadyError
from h5live.neuroconv import (
    BackendConfigurationError,
    LiveConverterPipe,
    LiveHDF5DatasetIOConfiguration,
    LiveHDF5Interface,
    LiveNWBConverter,
    NWBSourceError,
    configure_and_write_nwbfile,
    configure_backend,
    get_default_backend_configuration,
)
from h5live.neuroconv._private import ASSUMED_NEUROCONV
from h5live.testing import frame_values, wait_for_progress
from helpers import H5LIVE, Background, compound_source, ended, output_status, wait_for_frames
from helpers import assert_valid_nwb as assert_valid

pytestmark = pytest.mark.live  # real writer processes

START = "2026-03-04T05:06:07+00:00"
SUBJECT = {"subject_id": "mouse-7", "species": "Mus musculus", "sex": "F", "age": "P90D"}
#: Held writers must not look idle to the follower while a test waits on progress (60 s).
IDLE_S = 120.0


def session(metadata: Any) -> Any:
    """``metadata`` with what a valid, inspected NWB file needs besides the source's part."""
    metadata["NWBFile"].update(
        session_start_time=START,
        session_description="a live acquisition, converted by the h5live tests",
        experimenter=["Tester, Tess"],
        institution="h5live",
    )
    metadata["Subject"] = dict(SUBJECT)
    return metadata


def expected(n: int, frame: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    return np.stack([frame_values(i, frame, dtype) for i in range(n)])


def source_array(path: str | Path, dataset: str) -> np.ndarray:
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        return f[dataset][...]


def seconds_after_start(times: np.ndarray) -> np.ndarray:
    """Unix times (flush times) as seconds after the session start."""
    return times - datetime.datetime.fromisoformat(START).timestamp()


def read_series(path: Path, name: str) -> dict[str, Any]:
    with pynwb.NWBHDF5IO(path, "r") as io:
        series = io.read().acquisition[name]
        return {
            "type": type(series).__name__,
            "data": series.data[:],
            "timestamps": None if series.timestamps is None else series.timestamps[:],
            "rate": series.rate,
            "chunks": series.data.chunks,
            "compression": series.data.compression,
            "compression_opts": series.data.compression_opts,
            "shuffle": series.data.shuffle,
            "timestamps_chunks": None if series.timestamps is None else series.timestamps.chunks,
            "timestamps_compression": None
            if series.timestamps is None
            else series.timestamps.compression,
        }


@pytest.fixture
def interfaces() -> Iterator[list[LiveHDF5Interface]]:
    """Interfaces a test makes, closed at teardown (their sessions hold the sources open)."""
    made: list[LiveHDF5Interface] = []
    yield made
    for interface in made:
        interface.close()


# ---------------------------------------------------------------------- bad input


def test_a_missing_source_is_refused_at_construction(tmp_path):
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(SourceNotReadyError, match=r"nowhere\.h5") as caught:
        LiveHDF5Interface(missing, rate=10.0, timeout=0.2)
    assert "Fix:" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # no NWB file, nothing else


def test_a_dataset_that_is_not_there_is_refused_at_construction(writer_process, tmp_path):
    writer = writer_process("scan.h5", scan_shape=(20,), frame_shape=(4, 4))
    with pytest.raises(DatasetNotFoundError, match="/entry/data/nope") as caught:
        LiveHDF5Interface(writer.path, "/entry/data/nope", rate=10.0, timeout=0.2)
    assert "scan.h5" in str(caught.value)
    assert "Fix:" in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["scan.h5"]


def test_a_source_without_timing_is_refused_at_construction(writer_process, tmp_path):
    writer = writer_process("scan.h5", scan_shape=(20,), frame_shape=(4, 4))  # no flush times
    with pytest.raises(NWBSourceError, match="no timing") as caught:
        LiveHDF5Interface(writer.path, timeout=0.2)
    assert "scan.h5" in str(caught.value)
    assert "Fix: pass rate=" in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["scan.h5"]


def test_compound_frames_are_refused_at_construction(tmp_path):
    source = compound_source(tmp_path / "compound.h5")
    with pytest.raises(NWBSourceError, match=r"holds compound values .*Fix:"):
        LiveHDF5Interface(source, rate=10.0, timeout=0.2)
    assert [p.name for p in tmp_path.iterdir()] == ["compound.h5"]


def test_writing_over_the_source_is_refused_and_the_source_kept(
    simulated_writer, tmp_path, interfaces
):
    writer = simulated_writer("camera.h5", scan_shape=(6,), frame_shape=(4, 3))
    writer.run()
    writer.close()
    source = Path(writer.path)
    before = source.read_bytes()
    interface = LiveHDF5Interface(source, rate=10.0, timeout=IDLE_S)
    interfaces.append(interface)
    metadata = session(interface.get_metadata())
    with pytest.raises(OutputExistsError, match="is a file the conversion reads"):
        interface.run_conversion(source, metadata=metadata, overwrite=True)
    assert source.read_bytes() == before


def test_a_grid_scan_is_refused_at_construction(writer_process, tmp_path):
    writer = writer_process("grid.h5", scan_shape=(4, 5), frame_shape=(3, 3))
    with pytest.raises(NWBSourceError, match="grid scan") as caught:
        LiveHDF5Interface(writer.path, rate=10.0, timeout=0.2)
    assert "grid.h5" in str(caught.value)
    assert "Fix:" in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.h5"]


def test_frames_that_do_not_suit_the_series_type_are_refused_at_construction(writer_process):
    writer = writer_process("spectra.h5", scan_shape=(20,), frame_shape=(16,))
    with pytest.raises(NWBSourceError, match="ImageSeries needs frames of 2 dims"):
        LiveHDF5Interface(writer.path, rate=10.0, series_type="ImageSeries", timeout=0.2)


def test_both_a_rate_and_timestamps_are_refused(writer_process):
    writer = writer_process("scan.h5", scan_shape=(20,), frame_shape=(4, 4), timestamps=True)
    with pytest.raises(NWBSourceError, match="pass one of them"):
        LiveHDF5Interface(writer.path, rate=10.0, timestamps_path="/entry/flush_time")


# ---------------------------------------------------------------------- metadata


def test_get_metadata_says_what_the_source_knows(writer_process, interfaces):
    writer = writer_process("camera.h5", scan_shape=(20,), frame_shape=(8, 6), timestamps=True)
    interface = LiveHDF5Interface(writer.path, timeout=IDLE_S)
    interfaces.append(interface)
    metadata = interface.get_metadata()
    assert interface.metadata_key == "camera"
    assert metadata["LiveHDF5"]["camera"] == {
        "name": "camera",
        "series_type": "ImageSeries",
        "description": (
            "frames of '/entry/data/data' in 'camera.h5', converted while they were written "
            "(h5live)"
        ),
        "unit": "counts",
        "timestamps_path": "/entry/flush_time",
        "timestamps_reference_time": "1970-01-01T00:00:00+00:00",
        "device_metadata_key": "camera",
    }
    assert metadata["Devices"]["camera"]["name"] == "camera_device"
    assert "session_start_time" not in metadata["NWBFile"]  # the simulator records none
    interface.validate_metadata(session(metadata))  # neuroconv's validation, with our schema


def test_the_metadata_schema_refuses_what_the_series_cannot_take(writer_process, interfaces):
    writer = writer_process("camera.h5", scan_shape=(20,), frame_shape=(8, 6))
    interface = LiveHDF5Interface(writer.path, rate=25.0, timeout=IDLE_S)
    interfaces.append(interface)
    metadata = session(interface.get_metadata())
    assert metadata["LiveHDF5"]["camera"]["rate"] == 25.0
    metadata["LiveHDF5"]["camera"]["rate"] = -1.0
    with pytest.raises(ValidationError, match=r"-1\.0 is less than or equal to the minimum of 0"):
        interface.validate_metadata(metadata)
    metadata["LiveHDF5"]["camera"]["rate"] = 25.0
    metadata["LiveHDF5"]["camera"]["colour"] = "blue"
    with pytest.raises(ValidationError, match="'colour' was unexpected"):
        interface.validate_metadata(metadata)


def test_a_session_start_the_source_records_is_the_sessions(tmp_path, interfaces):
    # A NeXus-like file that records its start time, written (and finished) by hand.
    path = tmp_path / "nexus.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/entry/start_time", data="2026-01-02T03:04:05+01:00")
        f.create_dataset("/entry/data/data", data=expected(5, (4, 4)), chunks=(1, 4, 4))
        keys = f.create_dataset("/entry/keys/key_0", data=np.ones(5, "i8"), chunks=(5,))
        keys.attrs["note"] = "every frame written"
        f.create_dataset("/entry/finished", data=np.int32(1))
        f["/detector"] = h5py.ExternalLink("not-there.h5", "/entry")  # a place not to look
    interface = LiveHDF5Interface(path, "/entry/data/data", rate=5.0, timeout=1.0)
    interfaces.append(interface)
    start = interface.get_metadata()["NWBFile"]["session_start_time"]
    assert start == datetime.datetime.fromisoformat("2026-01-02T03:04:05+01:00")


# ---------------------------------------------------------------------- conversions


def test_a_scan_that_ended_before_its_first_frame_converts_to_an_empty_series(
    simulated_writer, tmp_path, interfaces
):
    # neuroconv's default configuration cut the chunks to the 0 rows of the data
    writer = simulated_writer("camera.h5", scan_shape=(6,), frame_shape=(4, 3))
    writer.append(2)  # written, never keyed: the scan was aborted
    writer.finish()
    writer.close()
    interface = LiveHDF5Interface(writer.path, rate=10.0, timeout=IDLE_S)
    interfaces.append(interface)
    out = tmp_path / "camera.nwb"
    interface.run_conversion(out, metadata=session(interface.get_metadata()))
    assert read_series(out, "camera")["data"].shape == (0, 4, 3)
    assert pynwb.validate(path=str(out)) == []  # nwbinspector: time is not the longest axis


def test_run_conversion_of_a_live_source_of_unknown_length_equals_the_source(
    writer_process, tmp_path, interfaces
):
    writer = writer_process(
        "camera.h5", scan_shape=(150,), frame_shape=(12, 10), timestamps=True, hold_at=40
    )
    interface = LiveHDF5Interface(writer.path, timeout=IDLE_S)
    interfaces.append(interface)
    out = tmp_path / "camera.nwb"
    metadata = session(interface.get_metadata())
    run = Background(lambda: interface.run_conversion(out, metadata=metadata))
    # The writer holds at frame 40: the conversion has started on a source of unknown length
    # and holds the 40 frames written so far (its latency bound releases them).
    wait_for_progress(
        lambda: interface.iterators[0].frames_done if interface.iterators else None,
        40,
        what="frames handed out by the interface",
    )
    assert interface.iterators[0].maxshape[0] is None  # the length is not known
    writer.go()
    run.join()
    writer.wait()

    series = read_series(out, "camera")
    assert series["type"] == "ImageSeries"
    np.testing.assert_array_equal(series["data"], expected(150, (12, 10)))
    times = source_array(writer.path, "/entry/flush_time")
    np.testing.assert_allclose(series["timestamps"], seconds_after_start(times), rtol=0, atol=1e-6)
    assert series["compression"] == "gzip"  # neuroconv's default configuration
    assert_valid(out)
    assert interface.iterators == []  # the session is closed
    # written by h5live's live write path: its bookkeeping says every frame is complete
    final = output_status(out, NWB_LAYOUT, "/acquisition/camera/data")
    assert (final["state"], final["frames"], final["finished"]) == ("complete", 150, 1)


def test_a_live_conversion_is_followed_while_it_is_written(
    writer_process, spawn, tmp_path, interfaces
):
    writer = writer_process(
        "camera.h5", scan_shape=(120,), frame_shape=(8, 8), timestamps=True, hold_at=40
    )
    interface = LiveHDF5Interface(writer.path, timeout=IDLE_S)
    interfaces.append(interface)
    out = tmp_path / "camera.nwb"
    metadata = session(interface.get_metadata())
    run = Background(lambda: interface.run_conversion(out, metadata=metadata, max_latency_s=0.05))
    # Mid-write (the writer holds at frame 40): the file says 40 frames are complete, and its
    # series holds those 40, no row more.
    wait_for_frames(out, 40, layout=NWB_LAYOUT, data="/acquisition/camera/data")
    mid = output_status(out, NWB_LAYOUT, "/acquisition/camera/data")
    assert (mid["frames"], mid["data"], mid["state"]) == (40, 40, "writing")
    follower = spawn(
        [*H5LIVE, "follow", str(out), "--timeout", "60", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writer.go()
    run.join()
    writer.wait()
    code, summary, err = ended(follower)
    assert code == 0, err
    assert (json.loads(summary)["frames"], json.loads(summary)["stop_reason"]) == (120, "finished")
    np.testing.assert_array_equal(read_series(out, "camera")["data"], expected(120, (8, 8)))
    assert output_status(out, NWB_LAYOUT, "/acquisition/camera/data")["state"] == "complete"
    assert_valid(out)


def test_neuroconvs_own_default_configuration_refuses_an_unknown_length(writer_process, interfaces):
    # Why h5live.neuroconv.get_default_backend_configuration exists: when this fails to
    # fail, neuroconv takes live sources itself.
    writer = writer_process("camera.h5", scan_shape=(40,), frame_shape=(8, 8), hold_at=5)
    interface = LiveHDF5Interface(writer.path, rate=10.0, timeout=IDLE_S)
    interfaces.append(interface)
    nwbfile = interface.create_nwbfile(metadata=session(interface.get_metadata()))
    with pytest.raises(TypeError, match="'>' not supported between instances of 'int' and"):
        nwb_helpers.get_default_backend_configuration(nwbfile, backend="hdf5")
    configuration = get_default_backend_configuration(nwbfile, backend="hdf5")
    entry = configuration.dataset_configurations["acquisition/camera/data"]
    assert isinstance(entry, LiveHDF5DatasetIOConfiguration)
    assert entry.full_shape == (None, 8, 8)
    assert "unknown: a live source, still growing" in str(entry)
    writer.go()


class RecordingLiveIO(LiveNWBHDF5IO):
    """h5live's live NWB IO, keeping how each live dataset was written."""

    chunk_copy: ClassVar[list[dict[str, str]]] = []

    def write(self, *args: Any, **kwargs: Any) -> None:
        super().write(*args, **kwargs)
        assert self.live_write is not None
        RecordingLiveIO.chunk_copy.append(dict(self.live_write.chunk_copy))


def test_an_edited_backend_configuration_is_what_the_file_holds(
    writer_process, tmp_path, interfaces, monkeypatch
):
    monkeypatch.setattr(h5live.neuroconv._write, "HDF5_IO", RecordingLiveIO)
    RecordingLiveIO.chunk_copy.clear()
    writer = writer_process(
        "camera.h5", scan_shape=(120,), frame_shape=(16, 12), timestamps=True, hold_at=10
    )
    interface = LiveHDF5Interface(writer.path, timeout=IDLE_S)
    interfaces.append(interface)
    nwbfile = interface.create_nwbfile(metadata=session(interface.get_metadata()))
    configuration = interface.get_default_backend_configuration(nwbfile, backend="hdf5")
    data = configuration.dataset_configurations["acquisition/camera/data"]
    data.chunk_shape = (8, 16, 12)
    data.buffer_shape = (24, 16, 12)
    data.compressors = ["shuffle", "gzip"]
    data.compressor_options = [None, {"level": 7}]
    times = configuration.dataset_configurations["acquisition/camera/timestamps"]
    times.chunk_shape = (32,)
    times.buffer_shape = (64,)
    times.compressors = None

    writer.go()  # the iterators were made while the length was unknown
    configure_backend(nwbfile, configuration)
    configure_and_write_nwbfile(
        nwbfile, nwbfile_path=tmp_path / "camera.nwb", backend_configuration=configuration
    )
    writer.wait()

    # The iterators followed the configuration (neuroconv's leaves their own buffers) ...
    series = nwbfile.acquisition["camera"]
    assert series.data.data.chunk_shape == (8, 16, 12)
    assert series.data.data.buffer_shape == (24, 16, 12)
    assert series.timestamps.data.buffer_shape == (64,)
    interface.close()  # before the source is read again: this process's view of it is its
    # Applied twice (configure_backend, then configure_and_write_nwbfile) is applied once.
    assert isinstance(series.data, H5DataIO)
    assert isinstance(series.data.data, LiveDataChunkIterator)
    # ... and the file holds the configuration's chunks and compression.
    written = read_series(tmp_path / "camera.nwb", "camera")
    assert written["chunks"] == (8, 16, 12)
    assert (written["compression"], written["compression_opts"]) == ("gzip", 7)
    assert written["shuffle"] is True
    assert written["timestamps_chunks"] == (32,)
    assert written["timestamps_compression"] is None
    # shuffle + gzip 7, encoded on every core by h5live's pool (one thread per core)
    (how,) = RecordingLiveIO.chunk_copy
    assert how["/acquisition/camera/data"].startswith("parallel ("), how
    assert how["/acquisition/camera/timestamps"] == "direct"
    np.testing.assert_array_equal(written["data"], expected(120, (16, 12)))
    flush = source_array(writer.path, "/entry/flush_time")
    np.testing.assert_allclose(written["timestamps"], seconds_after_start(flush), atol=1e-6)
    assert_valid(tmp_path / "camera.nwb")


def test_an_nwbfile_a_user_builds_with_live_iterators_is_configured_and_written(
    writer_process, tmp_path
):
    # No interface: a user's own NWBFile, neuroconv's workflow, h5live's two functions.
    writer = writer_process(
        "camera.h5", scan_shape=(100,), frame_shape=(10, 8), timestamps=True, hold_at=15
    )
    frames = LiveDataChunkIterator(writer.path, "/entry/data/data", timeout=IDLE_S)
    times = LiveDataChunkIterator(
        frames.dataset.file["/entry/flush_time"], follower=frames.follower
    )
    with frames, times:
        nwbfile = pynwb.NWBFile(
            session_description="a user's own NWBFile",
            identifier="h5live-user-nwbfile",
            session_start_time=datetime.datetime.fromisoformat(START),
        )
        nwbfile.add_acquisition(
            pynwb.image.ImageSeries(name="camera", data=frames, timestamps=times, unit="counts")
        )
        configuration = get_default_backend_configuration(nwbfile, backend="hdf5")
        entry = configuration.dataset_configurations["acquisition/camera/data"]
        assert entry.full_shape == (None, 10, 8)
        entry.chunk_shape, entry.buffer_shape = (5, 10, 8), (20, 10, 8)
        writer.go()
        configure_and_write_nwbfile(
            nwbfile, nwbfile_path=tmp_path / "camera.nwb", backend_configuration=configuration
        )
        writer.wait()
        written = nwbfile.acquisition["camera"].data.data
        assert (written.chunk_shape, written.buffer_shape) == ((5, 10, 8), (20, 10, 8))
        assert written.dataset is frames.dataset  # the same open dataset: no second handle
    series = read_series(tmp_path / "camera.nwb", "camera")
    assert series["chunks"] == (5, 10, 8)
    np.testing.assert_array_equal(series["data"], expected(100, (10, 8)))
    flush = source_array(writer.path, "/entry/flush_time")
    np.testing.assert_array_equal(series["timestamps"], flush)  # the user's, as they are


def test_a_live_nwb_converter_with_conversion_options(writer_process, tmp_path):
    # neuroconv's NWBConverter machinery: source data validated against the interface's
    # source schema, conversion options against add_to_nwbfile's signature.
    class Session(LiveNWBConverter):
        data_interface_classes: ClassVar[dict[str, type]] = {"Camera": LiveHDF5Interface}

    writer = writer_process("camera.h5", scan_shape=(40,), frame_shape=(6, 6), hold_at=5)
    converter = Session(source_data={"Camera": {"file_path": writer.path, "rate": 20.0}})
    try:
        metadata = session(converter.get_metadata())
        writer.go()
        converter.run_conversion(
            tmp_path / "camera.nwb",
            metadata=metadata,
            conversion_options={"Camera": {"max_latency_s": 0.1}},
        )
    finally:
        converter.close()
    writer.wait()
    series = read_series(tmp_path / "camera.nwb", "camera")
    assert series["rate"] == 20.0
    np.testing.assert_array_equal(series["data"], expected(40, (6, 6)))
    assert_valid(tmp_path / "camera.nwb")


def test_a_configuration_made_while_live_fits_the_source_once_it_has_finished(
    writer_process, tmp_path, interfaces
):
    # neuroconv's workflow: a configuration from one NWBFile, run_conversion makes another.
    # Here the source finished in between, so the second knows the length (40 rows) and the
    # configuration's chunks of 4096 rows (made for an unknown length) are cut to it.
    writer = writer_process("camera.h5", scan_shape=(40,), frame_shape=(8, 8), hold_at=5)
    interface = LiveHDF5Interface(writer.path, rate=10.0, timeout=IDLE_S)
    interfaces.append(interface)
    metadata = session(interface.get_metadata())
    configuration = get_default_backend_configuration(
        interface.create_nwbfile(metadata=metadata), backend="hdf5"
    )
    assert configuration.dataset_configurations["acquisition/camera/data"].chunk_shape[0] > 40
    writer.go()
    writer.wait()
    out = tmp_path / "camera.nwb"
    interface.run_conversion(out, metadata=metadata, backend_configuration=configuration)
    series = read_series(out, "camera")
    assert series["chunks"] == (40, 8, 8)
    np.testing.assert_array_equal(series["data"], expected(40, (8, 8)))
    assert_valid(out)


def test_a_configuration_a_live_dataset_cannot_follow_is_refused_before_the_file(
    writer_process, tmp_path, interfaces
):
    writer = writer_process("camera.h5", scan_shape=(40,), frame_shape=(8, 8), hold_at=5)
    interface = LiveHDF5Interface(writer.path, rate=10.0, timeout=IDLE_S)
    interfaces.append(interface)
    nwbfile = interface.create_nwbfile(metadata=session(interface.get_metadata()))
    configuration = get_default_backend_configuration(nwbfile, backend="hdf5")
    entry = configuration.dataset_configurations["acquisition/camera/data"]
    # neuroconv's checks, on a length without end: buffers of whole chunks along it, ...
    entry.chunk_shape = (4, 8, 8)
    with pytest.raises(ValueError, match="do not evenly divide the buffer_shape=\\(6, 8, 8\\)"):
        entry.buffer_shape = (6, 8, 8)
    # ... within the frame, and None said as None
    with pytest.raises(ValueError, match="exceed the full_shape=\\(None, 8, 8\\)"):
        entry.buffer_shape = (8, 16, 8)
    # A configuration that does not describe the live dataset: refused before the file is made
    del configuration.dataset_configurations["acquisition/camera/data"]
    with pytest.raises(BackendConfigurationError, match="no entry for the live dataset") as caught:
        configure_and_write_nwbfile(
            nwbfile, nwbfile_path=tmp_path / "camera.nwb", backend_configuration=configuration
        )
    assert "'acquisition/camera/data'" in str(caught.value)
    assert "camera.h5" in str(caught.value)
    assert "Fix:" in str(caught.value)
    assert not (tmp_path / "camera.nwb").exists()
    assert nwbfile.acquisition["camera"].data is interface.iterators[0]  # untouched
    writer.go()


def test_two_live_interfaces_in_one_converter_are_written_round_robin(
    writer_process, tmp_path, interfaces, caplog
):
    camera = writer_process("camera.h5", scan_shape=(60,), frame_shape=(8, 8), hold_at=20)
    probe = writer_process(
        "probe.h5", scan_shape=(300,), frame_shape=(4,), timestamps=True, hold_at=20
    )
    interfaces.extend(
        [
            LiveHDF5Interface(camera.path, rate=30.0, timeout=IDLE_S),
            LiveHDF5Interface(probe.path, series_type="TimeSeries", timeout=IDLE_S),
        ]
    )
    converter = LiveConverterPipe(interfaces)
    metadata = session(converter.get_metadata())
    out = tmp_path / "session.nwb"
    run = Background(lambda: converter.run_conversion(out, metadata=metadata))
    # Both writers hold at frame 20: written one after the other, the second source would
    # not start before the first ends; round-robin, both hand out their 20 frames.
    for interface, name in zip(interfaces, ("camera", "probe"), strict=True):
        wait_for_progress(
            lambda i=interface: i.iterators[0].frames_done if i.iterators else None,
            20,
            what=f"frames of {name} handed out",
        )
    camera.go()
    probe.go()
    run.join()
    camera.wait()
    probe.wait()

    np.testing.assert_array_equal(read_series(out, "camera")["data"], expected(60, (8, 8)))
    probe_series = read_series(out, "probe")
    assert probe_series["type"] == "TimeSeries"
    np.testing.assert_array_equal(probe_series["data"], expected(300, (4,)))
    flush = source_array(probe.path, "/entry/flush_time")
    np.testing.assert_allclose(probe_series["timestamps"], seconds_after_start(flush), atol=1e-6)
    assert_valid(out)
    # Two sources: h5live's live write path would cut both series to the shorter one (one
    # count of complete frames per file), so pynwb's NWBHDF5IO writes this file, and says so.
    assert "live datasets of 2 sources" in caplog.text


def test_a_live_interface_beside_a_static_one_in_neuroconvs_converter_pipe(
    writer_process, tmp_path, interfaces
):
    # neuroconv's own ConverterPipe fills the NWBFile; h5live's function writes it.
    from neuroconv.datainterfaces import CsvTimeIntervalsInterface

    table = tmp_path / "trials.csv"
    table.write_text("start_time,stop_time,outcome\n0.0,1.0,hit\n1.5,2.5,miss\n")
    writer = writer_process("camera.h5", scan_shape=(50,), frame_shape=(8, 8), hold_at=10)
    interfaces.append(LiveHDF5Interface(writer.path, rate=30.0, timeout=IDLE_S))
    converter = ConverterPipe([interfaces[0], CsvTimeIntervalsInterface(file_path=table)])
    nwbfile = converter.create_nwbfile(metadata=session(converter.get_metadata()))
    configuration = get_default_backend_configuration(nwbfile, backend="hdf5")
    assert "intervals/trials/start_time/data" in configuration.dataset_configurations
    writer.go()
    configure_and_write_nwbfile(
        nwbfile, tmp_path / "session.nwb", backend_configuration=configuration
    )
    writer.wait()

    np.testing.assert_array_equal(
        read_series(tmp_path / "session.nwb", "camera")["data"], expected(50, (8, 8))
    )
    with pynwb.NWBHDF5IO(tmp_path / "session.nwb", "r") as io:
        trials = io.read().trials
        assert list(trials["outcome"][:]) == ["hit", "miss"]
        assert trials["start_time"].data.compression == "gzip"  # configured by neuroconv
    assert_valid(tmp_path / "session.nwb")


@pytest.mark.parametrize(
    ("series_type", "frame_shape"),
    [("TwoPhotonSeries", (8, 6)), ("ElectricalSeries", (5,))],
    ids=["two-photon", "electrical"],
)
def test_series_types_that_need_more_than_data(
    simulated_writer, tmp_path, interfaces, series_type, frame_shape
):
    writer = simulated_writer("rec.h5", scan_shape=(30,), frame_shape=frame_shape)
    writer.run()
    writer.close()
    interface = LiveHDF5Interface(writer.path, rate=20.0, series_type=series_type, timeout=2.0)
    interfaces.append(interface)
    interface.run_conversion(tmp_path / "rec.nwb", metadata=session(interface.get_metadata()))
    series = read_series(tmp_path / "rec.nwb", "rec")
    assert series["type"] == series_type
    np.testing.assert_array_equal(series["data"], expected(30, frame_shape))
    assert_valid(tmp_path / "rec.nwb")


def test_appending_a_live_source_to_a_file_on_disk_is_refused(
    simulated_writer, tmp_path, interfaces
):
    writer = simulated_writer("rec.h5", scan_shape=(5,), frame_shape=(4, 4))
    writer.run()
    writer.close()
    interface = LiveHDF5Interface(writer.path, rate=20.0, timeout=2.0)
    interfaces.append(interface)
    (tmp_path / "old.nwb").write_bytes(b"")
    with pytest.raises(NWBSourceError, match="cannot append a live source"):
        interface.run_conversion(
            tmp_path / "old.nwb",
            metadata=session(interface.get_metadata()),
            append_on_disk_nwbfile=True,
        )


# ---------------------------------------------------------------------- neuroconv's privates


def test_the_neuroconv_private_names_h5live_relies_on_are_there():
    assert version("neuroconv") == ASSUMED_NEUROCONV  # else: re-read these
    write = ["self", "nwbfile_path", "nwbfile", "metadata", "backend"]
    write += ["backend_configuration", "conversion_options"]
    append = ["self", "nwbfile_path", "metadata", "backend", "backend_configuration"]
    append += ["conversion_options"]
    for owner in (BaseDataInterface, NWBConverter):
        assert list(inspect.signature(owner._write_nwbfile).parameters) == write
        assert list(inspect.signature(owner._append_nwbfile).parameters) == append
    assert "metadata_key" in inspect.signature(nwb_helpers._add_device_to_nwbfile).parameters


def test_the_public_names_of_h5live_neuroconv():
    import h5live.neuroconv as package

    assert package.__all__ == [
        "BackendConfigurationError",
        "LiveConverterPipe",
        "LiveHDF5DatasetIOConfiguration",
        "LiveHDF5Interface",
        "LiveNWBConverter",
        "LiveNWBZarrIO",
        "LiveZarrDatasetIOConfiguration",
        "NWBSourceError",
        "configure_and_write_nwbfile",
        "configure_backend",
        "get_default_backend_configuration",
    ]
    for name in package.__all__:
        assert getattr(package, name).__name__ == name
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = package.nothing


def test_live_nwb_zarr_io_and_the_errors_do_not_import_neuroconv():
    script = (
        "import sys\n"
        "from h5live.neuroconv import LiveNWBZarrIO, NWBSourceError, BackendConfigurationError\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'neuroconv')\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
