"""to_nwb and ``h5live nwb``: live NWB conversions from real writer processes.

Every finished file is read back with pynwb (frames equal the writer's, timestamps equal the
source's ``/entry/flush_time``), passes ``pynwb.validate`` and has no nwbinspector finding of
CRITICAL importance or worse. The output always says how complete it is (``/scratch/h5live_*``)
and its series never hold a fill value as data.
"""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pynwb
import pytest

from h5live import KeyFollower, to_nwb
from h5live._write.output import NWB_LAYOUT
from h5live.testing import frame_values
from helpers import IDLE_S, compound_source, ended, output_status, start_converter
from helpers import assert_valid_nwb as assert_valid
from helpers import wait_for_frames as wait_for_output_frames

pytestmark = pytest.mark.live

SERIES_DATA = "/acquisition/detector/data"
FLUSH_TIME = "/entry/flush_time"
SUBJECT = {"subject_id": "mouse-7", "species": "Mus musculus", "sex": "F", "age": "P90D"}
#: Session metadata complete enough for nwbinspector (a subject with species, sex and age).
METADATA = {
    "session_description": "a live scan, converted by the h5live tests",
    "identifier": "h5live-test-session",
    "session_start_time": "2026-03-04T05:06:07+00:00",
    "subject": SUBJECT,
}
SLOW = ("--max-latency", "0.02")  # chunks of slow test writers are written as they fill


def expected(n: int, frame: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    return np.stack([frame_values(i, frame, dtype) for i in range(n)])


def flush_times(source: str | Path, n: int | None = None) -> np.ndarray:
    with h5py.File(source, "r", libver="latest", swmr=True) as f:
        times = f[FLUSH_TIME][...]
    return times if n is None else times[:n]


def status(path: Path, series: str = "detector") -> dict[str, Any]:
    """The output's bookkeeping, and how many rows its series' data hold."""
    return output_status(path, NWB_LAYOUT, f"/acquisition/{series}/data")


def read_series(path: Path, name: str = "detector") -> dict[str, Any]:
    """A series of a closed NWB file, read with pynwb."""
    with pynwb.NWBHDF5IO(path, "r") as io:
        series = io.read().acquisition[name]
        return {
            "type": type(series).__name__,
            "data": series.data[:],
            "timestamps": None if series.timestamps is None else series.timestamps[:],
            "rate": series.rate,
            "starting_time": series.starting_time,
        }


@pytest.fixture
def converter(spawn):
    """Starts ``h5live nwb`` in another process, owned by the test (killed at teardown), and
    returns once its output can be followed (the bookkeeping exists, the file is in SWMR
    mode)."""

    def start(source: str, destination: Path, *args: str) -> subprocess.Popen[str]:
        return start_converter(
            spawn, "nwb", source, destination, *args, layout=NWB_LAYOUT, data=SERIES_DATA
        )

    return start


def wait_for_frames(path: Path, frames: int, process: subprocess.Popen[str]) -> int:
    """Until the NWB output at ``path`` says ``frames`` frames are complete, while they advance."""
    return wait_for_output_frames(path, frames, process, NWB_LAYOUT, SERIES_DATA)


def write_metadata(path: Path, metadata: dict[str, Any]) -> Path:
    path.write_text(json.dumps(metadata))
    return path


# ---------------------------------------------------------------------- in-process to_nwb


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_an_image_stack_becomes_an_image_series_with_the_found_timestamps(
    writer_process, tmp_path, compression
):
    process = writer_process(
        scan_shape=(300,),
        frame_shape=(8, 6),
        frame_rate_hz=2000,
        timestamps=True,
        compression=compression,
        hold_at=0,
    )
    process.go()
    nwb = tmp_path / "scan.nwb"
    result = to_nwb(
        process.path, nwb, metadata=METADATA, compression=compression, chunk_shape=(16, 8, 6)
    )
    assert process.wait() == 0
    assert (result.frames_complete, result.state, result.stop_reason) == (
        300,
        "complete",
        "finished",
    )
    series = read_series(nwb)
    assert series["type"] == "ImageSeries"
    np.testing.assert_array_equal(series["data"], expected(300, (8, 6)))
    np.testing.assert_array_equal(series["timestamps"], flush_times(process.path))
    assert series["rate"] is None
    with h5py.File(nwb, "r") as f:
        data = f["/acquisition/detector/data"]
        assert data.chunks == (16, 8, 6)
        plist = data.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        assert filters == {None: [], "gzip": [1], "zstd": [32015]}[compression]
        # flush times are seconds since the epoch: the file's reference time says so
        assert f["/timestamps_reference_time"][()].decode().startswith("1970-01-01")
    assert status(nwb) == {
        "frames": 300,
        "state": "complete",
        "stop_reason": "finished",
        "keys": 300,
        "finished": 1,
        "data": 300,
    }
    assert_valid(nwb)


YAML_METADATA = """\
session_description: two-photon imaging of a live scan
session_start_time: "2026-03-04T05:06:07+01:00"
identifier: scan-0042
experimenter: ["Doe, Jane"]
subject:
  subject_id: mouse-7
  species: Mus musculus
  sex: F
  age: P90D
imaging_plane:
  name: plane0
  description: layer 2/3
  indicator: GCaMP6f
  location: VISp
  excitation_lambda: 920.0
  emission_lambda: 510.0
series:
  name: TwoPhotonSeries
  unit: photons
"""


def test_a_two_photon_series_takes_its_rate_and_metadata_from_a_yaml_file(writer_process, tmp_path):
    process = writer_process(scan_shape=(120,), frame_shape=(8, 6), frame_rate_hz=2000, hold_at=0)
    (tmp_path / "session.yaml").write_text(YAML_METADATA)
    process.go()
    nwb = tmp_path / "2p.nwb"
    result = to_nwb(
        process.path,
        nwb,
        series_type="TwoPhotonSeries",
        rate=30.0,
        metadata=tmp_path / "session.yaml",
        chunk_shape=(16, 8, 6),
    )
    assert process.wait() == 0
    assert (result.frames_complete, result.state) == (120, "complete")
    with pynwb.NWBHDF5IO(nwb, "r") as io:
        nwbfile = io.read()
        series = nwbfile.acquisition["TwoPhotonSeries"]
        assert type(series).__name__ == "TwoPhotonSeries"
        np.testing.assert_array_equal(series.data[:], expected(120, (8, 6)))
        assert (series.rate, series.starting_time, series.timestamps) == (30.0, 0.0, None)
        assert series.unit == "photons"
        assert nwbfile.session_description == "two-photon imaging of a live scan"
        assert nwbfile.identifier == "scan-0042"
        assert nwbfile.session_start_time == datetime.datetime(
            2026, 3, 4, 5, 6, 7, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
        )
        assert list(nwbfile.experimenter) == ["Doe, Jane"]
        subject = nwbfile.subject
        assert (subject.subject_id, subject.species, subject.sex, subject.age) == (
            "mouse-7",
            "Mus musculus",
            "F",
            "P90D",
        )
        plane = series.imaging_plane
        assert plane.name == "plane0"
        assert (plane.description, plane.indicator, plane.location) == (
            "layer 2/3",
            "GCaMP6f",
            "VISp",
        )
        assert (plane.excitation_lambda, plane.imaging_rate) == (920.0, 30.0)
        assert plane.optical_channel[0].emission_lambda == 510.0
    assert status(nwb, "TwoPhotonSeries")["state"] == "complete"
    assert_valid(nwb)


def test_channels_become_an_electrical_series_with_metadata_from_a_json_file(
    writer_process, tmp_path
):
    process = writer_process(
        scan_shape=(300,),
        frame_shape=(16,),
        dtype="int16",
        frame_rate_hz=3000,
        timestamps=True,
        hold_at=0,
    )
    metadata = {
        **METADATA,
        "session_description": "extracellular recording",
        "identifier": "ephys-1",
        "subject": {**SUBJECT, "subject_id": "rat-1", "species": "Rattus norvegicus"},
        "electrodes": {"location": "CA1", "group_name": "shank0"},
        "device": {"name": "probe-A", "description": "a 16-channel probe"},
        "series": {"conversion": 1e-6, "description": "raw voltage"},
    }
    path = write_metadata(tmp_path / "session.json", metadata)
    process.go()
    nwb = tmp_path / "ephys.nwb"
    result = to_nwb(
        process.path,
        nwb,
        series_type="ElectricalSeries",
        timestamps_path=FLUSH_TIME,
        metadata=path,
        chunk_shape=(32, 16),
    )
    assert process.wait() == 0
    assert (result.frames_complete, result.state) == (300, "complete")
    with pynwb.NWBHDF5IO(nwb, "r") as io:
        nwbfile = io.read()
        series = nwbfile.acquisition["ElectricalSeries"]
        assert type(series).__name__ == "ElectricalSeries"
        assert series.data.dtype == np.int16
        np.testing.assert_array_equal(series.data[:], expected(300, (16,), "int16"))
        np.testing.assert_array_equal(series.timestamps[:], flush_times(process.path))
        assert (series.conversion, series.description) == (1e-6, "raw voltage")
        assert (nwbfile.identifier, nwbfile.subject.subject_id) == ("ephys-1", "rat-1")
        electrodes = nwbfile.electrodes
        assert len(electrodes) == 16
        assert list(electrodes["location"][:]) == ["CA1"] * 16
        assert list(series.electrodes.data[:]) == list(range(16))
        assert electrodes["group"][0].name == "shank0"
        assert electrodes["group"][0].device.name == "probe-A"
    assert_valid(nwb)


@pytest.mark.parametrize("frame_shape", [(4,), ()], ids=["channels", "scalars"])
def test_one_dimensional_frames_become_a_time_series(writer_process, tmp_path, frame_shape):
    process = writer_process(scan_shape=(200,), frame_shape=frame_shape, frame_rate_hz=3000)
    nwb = tmp_path / "signal.nwb"
    result = to_nwb(process.path, nwb, rate=1000.0, metadata=METADATA)
    assert process.wait() == 0
    assert (result.frames_complete, result.state) == (200, "complete")
    series = read_series(nwb)
    assert series["type"] == "TimeSeries"
    np.testing.assert_array_equal(series["data"], expected(200, frame_shape))
    assert (series["rate"], series["starting_time"], series["timestamps"]) == (1000.0, 0.0, None)
    assert_valid(nwb)


def test_without_a_finished_flag_the_conversion_ends_incomplete_after_the_timeout(
    writer_process, tmp_path
):
    process = writer_process(
        scan_shape=(50,), frame_shape=(4, 3), finished=False, timestamps=True, hold_at=0
    )
    process.go()
    nwb = tmp_path / "scan.nwb"
    result = to_nwb(process.path, nwb, metadata=METADATA, timeout=IDLE_S)
    assert process.wait() == 0
    assert (result.frames_complete, result.state, result.stop_reason) == (
        50,
        "incomplete",
        "timeout",
    )
    # every frame is there, but nothing said the acquisition was over: not marked finished
    assert status(nwb) == {
        "frames": 50,
        "state": "incomplete",
        "stop_reason": "timeout",
        "keys": 50,
        "finished": 0,
        "data": 50,
    }
    series = read_series(nwb)
    np.testing.assert_array_equal(series["data"], expected(50, (4, 3)))
    np.testing.assert_array_equal(series["timestamps"], flush_times(process.path))
    assert_valid(nwb)


def test_a_writer_crash_leaves_exactly_the_complete_frames(writer_process, tmp_path):
    process = writer_process(
        scan_shape=(100,), frame_shape=(4,), crash_after=37, timestamps=True, hold_at=0
    )
    process.go()
    nwb = tmp_path / "scan.nwb"
    result = to_nwb(process.path, nwb, metadata=METADATA, timeout=IDLE_S, chunk_shape=(8, 4))
    assert process.wait() != 0
    assert (result.frames_complete, result.state, result.stop_reason) == (
        37,
        "incomplete",
        "timeout",
    )
    left = status(nwb)
    assert (left["frames"], left["keys"], left["finished"], left["state"]) == (
        37,
        37,
        0,
        "incomplete",
    )
    series = read_series(nwb)
    # 37 rows, not the 40 of five whole chunks: no fill value is presented as data
    np.testing.assert_array_equal(series["data"], expected(37, (4,)))
    np.testing.assert_array_equal(series["timestamps"], flush_times(process.path, 37))
    assert np.isfinite(series["timestamps"]).all()  # the source's fill is NaN
    assert_valid(nwb)


def test_compound_frames_are_refused_with_the_fix_and_nothing_is_written(tmp_path):
    # hdmf cannot write a compound array from an iterator ("Size must be positive", deep in it)
    source = compound_source(tmp_path / "compound.h5")
    nwb = tmp_path / "out.nwb"
    with pytest.raises(ValueError, match=r"holds compound values .*Fix: pass the frames' dataset"):
        to_nwb(source, nwb, rate=10.0, timeout=5)
    assert not nwb.exists()


def test_a_grid_scan_is_refused_with_the_fix(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(6, 7), frame_shape=(3,))
    writer.run()
    writer.close()
    with pytest.raises(ValueError, match=r"is a grid scan .*Fix: convert it with copy_live"):
        to_nwb(writer.path, tmp_path / "grid.nwb", rate=10.0)
    assert not (tmp_path / "grid.nwb").exists()


def test_a_source_without_timing_is_refused_with_the_fix(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(6,), frame_shape=(3,))  # no flush times
    writer.run()
    writer.close()
    with pytest.raises(ValueError, match=r"no timestamp dataset.*Fix: pass rate= \(--rate\)"):
        to_nwb(writer.path, tmp_path / "scan.nwb")
    assert not (tmp_path / "scan.nwb").exists()


def test_the_default_metadata_has_no_critical_findings(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(20,), frame_shape=(4, 3), timestamps=True)
    writer.run()
    writer.close()
    result = to_nwb(writer.path, tmp_path / "scan.nwb")
    assert result.state == "complete"
    with pynwb.NWBHDF5IO(tmp_path / "scan.nwb", "r") as io:
        assert io.read().subject is not None  # a subject is always written
    assert_valid(tmp_path / "scan.nwb")


# ---------------------------------------------------------------------- h5live nwb, live


# Mid-write, HDF5IO writes the data and the timestamps chunk by chunk in turn, so one is a chunk
# longer than the other at times; pynwb warns, and the frames complete say what is there.
@pytest.mark.filterwarnings("ignore:ImageSeries 'detector'. Length of data does not match")
def test_pynwb_reads_the_nwb_file_while_it_is_written(writer_process, converter, tmp_path):
    process = writer_process(
        scan_shape=(500,),
        frame_shape=(8, 6),
        frame_rate_hz=400,
        timestamps=True,
        hold_at=(0, 100, 300),  # each look is mid-write however slow the machine
    )
    nwb = tmp_path / "live.nwb"
    metadata = write_metadata(tmp_path / "session.json", METADATA)
    command = converter(
        process.path, nwb, "--metadata", str(metadata), *SLOW, "--chunk-shape", "8", "8", "6"
    )
    seen = []
    for frames in (40, 200):
        process.go()  # the writer pauses again before frame 100, then 300
        wait_for_frames(nwb, frames, command)
        with (
            h5py.File(nwb, "r", libver="latest", swmr=True) as f,
            pynwb.NWBHDF5IO(file=f, mode="r") as io,
        ):
            complete = int(f["/scratch/h5live_frames_complete"][()])
            assert f["/scratch/h5live_state"][()].decode() == "writing"
            nwbfile = io.read()
            assert nwbfile.identifier == METADATA["identifier"]
            series = nwbfile.acquisition["detector"]
            assert frames <= complete < 500  # mid-write
            assert np.count_nonzero(f["/scratch/h5live_keys"][...]) >= complete
            assert complete <= series.data.shape[0] < 500
            assert series.timestamps.shape[0] >= complete
            np.testing.assert_array_equal(series.data[:complete], expected(complete, (8, 6)))
            np.testing.assert_array_equal(
                series.timestamps[:complete], flush_times(process.path, complete)
            )
            seen.append(complete)
    assert seen[0] < seen[1]
    process.go()
    code, out, err = ended(command)
    assert code == 0, err
    assert process.wait() == 0
    assert json.loads(out)["state"] == "complete"
    series = read_series(nwb)
    np.testing.assert_array_equal(series["data"], expected(500, (8, 6)))
    np.testing.assert_array_equal(series["timestamps"], flush_times(process.path))
    assert status(nwb)["finished"] == 1
    assert_valid(nwb)


def test_a_killed_converter_resumes_with_no_frame_missing_or_twice(
    writer_process, converter, tmp_path
):
    process = writer_process(
        scan_shape=(800,),
        frame_shape=(8, 6),
        frame_rate_hz=800,
        timestamps=True,
        hold_at=(0, 400),
    )
    nwb = tmp_path / "live.nwb"
    metadata = write_metadata(tmp_path / "session.json", METADATA)
    command = converter(
        process.path, nwb, "--metadata", str(metadata), *SLOW, "--chunk-shape", "8", "8", "6"
    )
    process.go()  # the writer pauses again before frame 400
    wait_for_frames(nwb, 100, command)
    command.send_signal(signal.SIGKILL)
    ended(command)
    killed = status(nwb)
    assert 100 <= killed["frames"] <= 400
    assert killed["state"] == "writing"  # it had no time to say otherwise
    # the keys are the truth: a kill between setting them and writing the count leaves the
    # count behind (LiveOutput.mark); no frame is keyed that is not written
    assert killed["frames"] <= killed["keys"] <= killed["data"]
    process.go()
    code, out, err = ended(converter(process.path, nwb, "--resume"))
    assert code == 0, err
    assert process.wait() == 0
    summary = json.loads(out)
    with h5py.File(nwb, "r") as f:
        rows = [f[f"/acquisition/detector/{name}"].chunks[0] for name in ("data", "timestamps")]
    assert rows[0] == 8
    # each dataset from its last whole chunk row
    assert summary["resumed_from"] == min(killed["frames"] // r * r for r in rows)
    assert (summary["frames_complete"], summary["state"]) == (800, "complete")
    series = read_series(nwb)
    np.testing.assert_array_equal(series["data"], expected(800, (8, 6)))
    np.testing.assert_array_equal(series["timestamps"], flush_times(process.path))
    assert status(nwb) == {
        "frames": 800,
        "state": "complete",
        "stop_reason": "finished",
        "keys": 800,
        "finished": 1,
        "data": 800,
    }
    assert_valid(nwb)


def test_ctrl_c_marks_the_nwb_file_interrupted_and_it_resumes(writer_process, converter, tmp_path):
    process = writer_process(
        scan_shape=(450,), frame_shape=(4,), frame_rate_hz=450, timestamps=True, hold_at=(0, 200)
    )
    nwb = tmp_path / "live.nwb"
    metadata = write_metadata(tmp_path / "session.json", METADATA)
    command = converter(
        process.path, nwb, "--metadata", str(metadata), *SLOW, "--chunk-shape", "8", "4"
    )
    process.go()  # the writer pauses again before frame 200
    wait_for_frames(nwb, 50, command)
    command.send_signal(signal.SIGINT)
    code, _, err = ended(command)
    assert code == 130, err
    assert "interrupted" in err
    interrupted = status(nwb)
    assert (interrupted["state"], interrupted["stop_reason"], interrupted["finished"]) == (
        "interrupted",
        "interrupted",
        0,
    )
    assert interrupted["keys"] == interrupted["frames"] <= 200
    assert pynwb.validate(path=str(nwb)) == []  # valid as it was left
    n = interrupted["frames"]
    with h5py.File(nwb, "r") as f:  # (see test_ctrl_c_leaves_series_of_the_complete_frames)
        np.testing.assert_array_equal(f["/acquisition/detector/data"][:n], expected(n, (4,)))
        np.testing.assert_array_equal(
            f["/acquisition/detector/timestamps"][:n], flush_times(process.path, n)
        )
    process.go()
    code, out, err = ended(converter(process.path, nwb, "--resume"))
    assert code == 0, err
    assert process.wait() == 0
    assert json.loads(out)["state"] == "complete"
    series = read_series(nwb)
    np.testing.assert_array_equal(series["data"], expected(450, (4,)))
    np.testing.assert_array_equal(series["timestamps"], flush_times(process.path))
    assert status(nwb)["state"] == "complete"
    assert_valid(nwb)


class CtrlCAfter:
    """A progress bar that presses Ctrl-C once 40 frames are handed out (in-process and
    deterministic: between two chunks of HDF5IO's write)."""

    def __init__(self, total: int | None = None, **options: Any) -> None:
        self.total = total
        self.n = 0

    def update(self, frames: int) -> None:
        self.n += frames
        if self.n >= 40:
            raise KeyboardInterrupt

    def close(self) -> None:
        pass


def interrupted_conversion(simulated_writer, nwb: Path) -> str:
    """A finished source of 100 frames whose conversion is stopped by Ctrl-C at frame 40."""
    writer = simulated_writer(scan_shape=(100,), frame_shape=(4,), timestamps=True)
    writer.run()
    writer.close()
    with pytest.raises(KeyboardInterrupt):
        to_nwb(
            writer.path,
            nwb,
            metadata=METADATA,
            chunk_shape=(8, 4),
            buffer_shape=(8, 4),
            display_progress=True,
            progress_bar_class=CtrlCAfter,
        )
    return writer.path


def test_ctrl_c_in_process_then_resume_completes_the_nwb_file(simulated_writer, tmp_path):
    nwb = tmp_path / "scan.nwb"
    source = interrupted_conversion(simulated_writer, nwb)
    interrupted = status(nwb)
    assert (interrupted["state"], interrupted["finished"]) == ("interrupted", 0)
    assert 0 < interrupted["frames"] < 100
    assert pynwb.validate(path=str(nwb)) == []
    result = to_nwb(source, nwb, resume=True)
    assert (result.frames_complete, result.state) == (100, "complete")
    assert result.resumed_from == interrupted["frames"] // 8 * 8
    series = read_series(nwb)
    np.testing.assert_array_equal(series["data"], expected(100, (4,)))
    np.testing.assert_array_equal(series["timestamps"], flush_times(source))
    assert_valid(nwb)


def test_ctrl_c_leaves_series_of_the_complete_frames(simulated_writer, tmp_path):
    nwb = tmp_path / "scan.nwb"
    source = interrupted_conversion(simulated_writer, nwb)
    n = status(nwb)["frames"]
    series = read_series(nwb)
    assert (len(series["data"]), len(series["timestamps"])) == (n, n)
    np.testing.assert_array_equal(series["data"], expected(n, (4,)))
    np.testing.assert_array_equal(series["timestamps"], flush_times(source, n))
    assert_valid(nwb)


def test_an_nwb_output_is_followed_without_naming_its_keys(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(20,), frame_shape=(4,), timestamps=True)
    writer.run()
    writer.close()
    to_nwb(writer.path, tmp_path / "scan.nwb")
    with KeyFollower.from_path(tmp_path / "scan.nwb", timeout=1) as follower:
        assert [k.name for k in follower.key_datasets] == ["/scratch/h5live_keys"]
        assert list(follower) == list(range(20))
        assert follower.stop_reason in ("finished", "complete")


def test_a_scan_that_ended_before_its_first_frame_gives_a_valid_empty_nwb_file(
    simulated_writer, tmp_path
):
    writer = simulated_writer(scan_shape=(6,), frame_shape=(4, 3))
    writer.append(2)  # written, never keyed: the scan was aborted
    writer.finish()
    writer.close()
    nwb = tmp_path / "empty.nwb"
    result = to_nwb(writer.path, nwb, rate=10.0, timeout=5)
    assert (result.frames_complete, result.state) == (0, "complete")
    assert pynwb.validate(path=str(nwb)) == []  # nwbinspector: time is not the longest axis
    with pynwb.NWBHDF5IO(nwb, "r") as io:
        series = next(iter(io.read().acquisition.values()))
        assert series.data.shape == (0, 4, 3)
