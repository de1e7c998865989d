"""copy_live and ``h5live copy``: live copies from real writer processes, followable, resumable."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pynwb
import pytest
import swmr_tools

from h5live import KeyFollower, to_nwb
from h5live._write.copy import copy_live
from h5live._write.output import HDF5_LAYOUT
from h5live._write.stop import Stopped, clear_stop, request_stop
from h5live.errors import OutputError, OutputExistsError
from h5live.testing import frame_values
from helpers import (
    H5LIVE,
    IDLE_S,
    OutputReaders,
    converter_report,
    output_status,
    start_converter,
    wait_for_frames,
)
from helpers import ended as ended_process

pytestmark = pytest.mark.live

DATA = "/entry/data/data"
SMALL = ("--chunk-shape", "8", "4")  # chunks of slow test writers fill within the latency


def expected(n: int, frame: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    return np.stack([frame_values(i, frame, dtype) for i in range(n)])


def status(path: Path) -> dict[str, object]:
    return output_status(path)


@pytest.fixture
def converter(spawn):
    """Starts ``h5live copy`` in another process, owned by the test (killed at teardown)."""

    def start(source: str | Path, destination: Path, *args: str) -> subprocess.Popen[str]:
        return start_converter(spawn, "copy", source, destination, *args)

    return start


def ended(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Exit code and stderr of a converter, its pipes closed."""
    code, _, err = ended_process(process)
    return code, err


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_a_live_stack_is_copied_with_its_timestamps(writer_process, tmp_path, compression):
    process = writer_process(
        scan_shape=(400,), frame_shape=(8, 6), frame_rate_hz=2000, timestamps=True, hold_at=0
    )
    process.go()
    result = copy_live(
        process.path, tmp_path / "copy.h5", compression=compression, chunk_shape=(16, 8, 6)
    )
    assert process.wait() == 0
    assert (result.frames_complete, result.state, result.stop_reason) == (
        400,
        "complete",
        "finished",
    )
    with h5py.File(tmp_path / "copy.h5", "r") as f, h5py.File(process.path, "r") as s:
        np.testing.assert_array_equal(f[DATA][...], expected(400, (8, 6)))
        np.testing.assert_array_equal(f["/entry/flush_time"][...], s["/entry/flush_time"][...])
        assert f[DATA].chunks == (16, 8, 6)
        # whole chunk rows of the frames' that reach 4 KiB (not 16 timestamps of 8 bytes)
        assert f["/entry/flush_time"].chunks == (512,)
        plist = f[DATA].id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        assert filters == {None: [], "gzip": [1], "zstd": [32015]}[compression]
    assert status(tmp_path / "copy.h5") == {
        "frames": 400,
        "state": "complete",
        "stop_reason": "finished",
        "keys": 400,
        "finished": 1,
        "data": 400,
    }


def test_a_grid_scan_is_copied_in_scan_order(writer_process, tmp_path):
    process = writer_process(scan_shape=(6, 7), frame_shape=(3,), frame_rate_hz=2000, hold_at=0)
    process.go()
    result = copy_live(process.path, tmp_path / "grid.h5", max_latency_s=0.01)
    assert process.wait() == 0
    assert result.state == "complete"
    with h5py.File(tmp_path / "grid.h5", "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(42, (3,)).reshape(6, 7, 3))
        assert f["/entry/keys/key_0"].shape == (6, 7)


def test_without_a_finished_flag_the_copy_ends_incomplete_after_the_timeout(
    writer_process, tmp_path
):
    process = writer_process(scan_shape=(50,), frame_shape=(4,), finished=False, hold_at=0)
    process.go()
    result = copy_live(process.path, tmp_path / "copy.h5", timeout=IDLE_S)
    assert process.wait() == 0
    assert (result.frames_complete, result.state, result.stop_reason) == (
        50,
        "incomplete",
        "timeout",
    )
    assert status(tmp_path / "copy.h5")["finished"] == 0  # no more frames, but not known complete


def test_a_writer_crash_leaves_exactly_the_complete_frames(writer_process, tmp_path):
    process = writer_process(scan_shape=(100,), frame_shape=(4,), crash_after=37, hold_at=0)
    process.go()
    result = copy_live(process.path, tmp_path / "copy.h5", timeout=IDLE_S, chunk_shape=(8, 4))
    assert process.wait() != 0
    assert (result.frames_complete, result.state) == (37, "incomplete")
    with h5py.File(tmp_path / "copy.h5", "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(37, (4,)))  # no fill as data


def test_h5live_follows_the_copy_while_it_is_written(writer_process, converter, tmp_path):
    process = writer_process(
        scan_shape=(600,), frame_shape=(4,), frame_rate_hz=400, hold_at=(0, 300)
    )
    copier = converter(process.path, tmp_path / "copy.h5", "--max-latency", "0.05", *SMALL)
    process.go()  # the writer pauses again before frame 300
    with KeyFollower.from_path(tmp_path / "copy.h5", timeout=10) as follower:
        assert follower.poll() < 300  # it is mid-copy
        process.go()
        frames = list(follower)
        assert follower.stop_reason == "finished", converter_report(copier, tmp_path / "copy.h5")
        data = follower.key_datasets[0].file[DATA]
        data.refresh()
        np.testing.assert_array_equal(data[...], expected(600, (4,)))
    assert frames == list(range(600))
    code, err = ended(copier)
    assert code == 0, err
    assert process.wait() == 0


def test_swmr_tools_follows_the_copy_while_it_is_written(writer_process, converter, tmp_path):
    process = writer_process(
        scan_shape=(600,), frame_shape=(4,), frame_rate_hz=400, hold_at=(0, 300)
    )
    copier = converter(process.path, tmp_path / "copy.h5", "--max-latency", "0.05", *SMALL)
    process.go()  # the writer pauses again before frame 300
    wait_for_frames(tmp_path / "copy.h5", 1, copier)  # swmr_tools cannot follow keys of length 0
    with h5py.File(tmp_path / "copy.h5", "r", libver="latest", swmr=True) as f:
        assert f["/entry/h5live/frames_complete"][()] <= 300  # it is mid-copy
        process.go()
        source = swmr_tools.DataSource(
            [f["/entry/keys/key_0"]],
            {DATA: f[DATA]},
            timeout=5,
            finished_dataset=f["/entry/finished"],
        )
        frames = [(item.index, item[DATA].reshape(-1).tolist()) for item in source]
    assert [i for i, _ in frames] == list(range(600))
    assert [v for _, v in frames] == expected(600, (4,)).tolist()
    code, err = ended(copier)
    assert code == 0, err
    assert process.wait() == 0


def test_a_killed_converter_resumes_with_no_frame_missing_or_twice(
    writer_process, converter, tmp_path
):
    process = writer_process(
        scan_shape=(800,), frame_shape=(4,), frame_rate_hz=800, hold_at=(0, 400)
    )
    copy = tmp_path / "copy.h5"
    copier = converter(process.path, copy, "--max-latency", "0.02", "--chunk-shape", "8", "4")
    process.go()  # the writer pauses again before frame 400
    wait_for_frames(copy, 100, copier)
    copier.send_signal(signal.SIGKILL)
    ended(copier)
    killed_at = status(copy)["frames"]
    assert 100 <= killed_at <= 400
    process.go()
    result = copy_live(process.path, copy, resume=True)
    assert process.wait() == 0
    assert result.resumed_from == killed_at // 8 * 8  # from the last whole chunk row
    assert (result.frames_complete, result.state) == (800, "complete")
    with h5py.File(copy, "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(800, (4,)))
        assert int(np.count_nonzero(f["/entry/keys/key_0"][...])) == 800


def test_a_copy_resumes_while_readers_follow_it(writer_process, converter, spawn, tmp_path):
    """SWMR readers hold a lock on the file: a resume must not be refused for them."""
    process = writer_process(scan_shape=(400,), frame_shape=(4,), frame_rate_hz=400, hold_at=0)
    copy = tmp_path / "copy.h5"
    copier = converter(process.path, copy, "--max-latency", "0.02", *SMALL)
    process.go()
    wait_for_frames(copy, 40, copier)
    copier.kill()
    ended(copier)
    readers = OutputReaders(spawn, copy, HDF5_LAYOUT.status, 400)
    code, err = ended(converter(process.path, copy, "--resume"))
    assert code == 0, err
    assert process.wait() == 0
    readers.check()
    assert status(copy)["state"] == "complete"


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_marks_the_output_interrupted_and_it_resumes(
    writer_process, converter, tmp_path, stop, code
):
    process = writer_process(
        scan_shape=(600,), frame_shape=(4,), frame_rate_hz=300, hold_at=(0, 300)
    )
    copy = tmp_path / "copy.h5"
    copier = converter(process.path, copy, "--max-latency", "0.02", *SMALL)
    process.go()  # the writer pauses again before frame 300
    wait_for_frames(copy, 50, copier)
    copier.send_signal(stop)  # Ctrl-C, or a job scheduler's SIGTERM
    exit_code, err = ended(copier)
    assert exit_code == code, err
    interrupted = status(copy)
    assert (interrupted["state"], interrupted["finished"]) == ("interrupted", 0)
    assert interrupted["keys"] == interrupted["frames"] <= 300
    assert interrupted["data"] == interrupted["frames"]  # no rows beyond the complete frames
    process.go()
    resumed, err = ended(converter(process.path, copy, "--resume"))
    assert resumed == 0, err
    assert process.wait() == 0
    assert status(copy)["state"] == "complete"
    with h5py.File(copy, "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(600, (4,)))


def test_a_stop_inside_mark_leaves_the_count_equal_to_the_keys(
    simulated_writer, tmp_path, monkeypatch
):
    """A signal raises wherever it lands: here between a mark's keys and its count."""
    from h5live._write.output import LiveOutput

    writer = simulated_writer(scan_shape=(64,), frame_shape=(4,))
    writer.run()
    writer.close()
    real_mark = LiveOutput.mark

    def cut_short(self: LiveOutput, frames: int, data: object) -> None:
        before = self.frames_complete
        real_mark(self, frames, data)  # type: ignore[arg-type]
        if frames >= 24:  # keys set and flushed, the count not yet written
            self.frames_complete = before
            self.status["frames_complete"][()] = before
            raise KeyboardInterrupt

    monkeypatch.setattr(LiveOutput, "mark", cut_short)
    copy = tmp_path / "copy.h5"
    with pytest.raises(KeyboardInterrupt):
        copy_live(writer.path, copy, chunk_shape=(8, 4), buffer_shape=(8, 4))
    left = status(copy)
    assert left["state"] == "interrupted"
    assert left["keys"] == left["frames"] == left["data"] == 24
    monkeypatch.undo()
    assert copy_live(writer.path, copy, resume=True).frames_complete == 64
    with h5py.File(copy, "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(64, (4,)))


def test_a_stop_asked_while_the_writer_pauses_stops_the_copy(writer_process, tmp_path):
    """The CLI's signal handler records a stop before it raises, because its raise is lost
    when it lands inside a weakref callback (h5py runs them at every poll). A copy waiting for
    a paused writer hands out no chunk, so the wait itself must see the request; before, it
    ran on to its idle timeout (CI: a Ctrl-C that exited 0 with the output 'incomplete')."""
    process = writer_process(scan_shape=(80,), frame_shape=(4,), hold_at=(0, 40))
    copy = tmp_path / "copy.h5"

    def ask_to_stop() -> None:
        wait_for_frames(copy, 40)  # everything before the pause is copied: the copy waits
        request_stop(signal.SIGINT)  # as the handler does, its raise swallowed

    asker = threading.Thread(target=ask_to_stop, daemon=True)
    process.go()
    asker.start()
    try:
        with pytest.raises(Stopped):
            copy_live(process.path, copy, timeout=60, chunk_shape=(8, 4), max_latency_s=0.02)
    finally:
        clear_stop()
        asker.join(60)
    left = status(copy)
    assert (left["state"], left["frames"], left["keys"], left["data"]) == (
        "interrupted",
        40,
        40,
        40,
    )


def test_an_existing_destination_is_refused_without_resume_or_overwrite(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(10,), frame_shape=(2,))
    writer.run()
    writer.close()
    (tmp_path / "copy.h5").write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match=r"exists\. Fix: pass resume=True"):
        copy_live(writer.path, tmp_path / "copy.h5")
    assert (tmp_path / "copy.h5").read_bytes() == b"precious"
    with pytest.raises(OutputExistsError, match="is not an output of h5live"):
        copy_live(writer.path, tmp_path / "copy.h5", resume=True)
    result = copy_live(writer.path, tmp_path / "copy.h5", overwrite=True)
    assert result.state == "complete"
    other = simulated_writer("other.h5", scan_shape=(10,), frame_shape=(2,))
    other.run()
    other.close()
    with pytest.raises(OutputExistsError, match=r"was converted from .*scan\.h5"):
        copy_live(other.path, tmp_path / "copy.h5", resume=True)


def test_a_full_disk_fails_clearly_and_leaves_a_valid_output(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(800,), frame_shape=(64, 64))  # 6.6 MB of frames
    writer.run()
    writer.close()
    command = [*H5LIVE, "copy", str(writer.path), str(tmp_path / "copy.h5"), "--no-progress"]
    command += ["--chunk-shape", "4", "64", "64", "--buffer-shape", "8", "64", "64"]
    limited = (  # a disk that fills up after 5 MB: writes then fail with EFBIG, as when full
        "import resource, signal, subprocess, sys; "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (5_000_000, 5_000_000)); "
        f"sys.exit(subprocess.call({command!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", limited], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1  # one clear line
    assert "failed" in done.stderr
    assert "resume" in done.stderr
    left = status(tmp_path / "copy.h5")
    assert left["state"] == "failed"
    assert left["keys"] == left["frames"] > 0
    with h5py.File(tmp_path / "copy.h5", "r") as f:
        n = left["frames"]
        np.testing.assert_array_equal(f[DATA][:n], expected(n, (64, 64)))
    result = copy_live(writer.path, tmp_path / "copy.h5", resume=True)  # space is back
    assert (result.frames_complete, result.state) == (800, "complete")
    assert isinstance(OutputError("x"), OSError)


def test_a_diamond_layout_is_found_and_the_copy_uses_h5lives(writer_process, tmp_path):
    # Keys in /entry/diamond_scan/keys (several, with trailing ones), the flag a 1-element
    # dataset: found without options; the copy carries h5live's own keys and flag.
    process = writer_process(
        scan_shape=(30,),
        frame_shape=(4,),
        n_keys=2,
        keys_group="/entry/diamond_scan/keys",
        finished_path="/entry/diamond_scan/scan_finished",
        finished_scalar=False,
        hold_at=0,
    )
    process.go()
    result = copy_live(process.path, tmp_path / "copy.h5", timeout=5)
    assert process.wait() == 0
    assert (result.frames_complete, result.state) == (30, "complete")
    with h5py.File(tmp_path / "copy.h5", "r") as f:
        assert "/entry/diamond_scan/keys" not in f  # the source's bookkeeping is not copied
        np.testing.assert_array_equal(f[DATA][...], expected(30, (4,)))
    assert status(tmp_path / "copy.h5")["finished"] == 1


def test_static_content_is_copied_once_with_the_attributes(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(12,), frame_shape=(3,))
    writer.file.attrs["facility"] = "beamline I14"
    writer.file["/entry/data"].attrs["signal"] = "data"
    writer.data.attrs["units"] = "counts"
    writer.run()
    writer.close()
    with h5py.File(writer.path, "a", libver="latest") as f:  # metadata written at the start
        f.create_dataset("/entry/instrument/energy_keV", data=12.4)
    copy_live(writer.path, tmp_path / "copy.h5")
    with h5py.File(tmp_path / "copy.h5", "r") as f:
        assert f.attrs["facility"] == "beamline I14"
        assert f["/entry/data"].attrs["signal"] == "data"
        assert f[DATA].attrs["units"] == "counts"
        assert f["/entry/instrument/energy_keV"][()] == 12.4
        np.testing.assert_array_equal(f[DATA][...], expected(12, (3,)))


def test_resume_is_refused_while_another_converter_on_this_host_is_alive(
    simulated_writer, spawn, tmp_path
):
    writer = simulated_writer(scan_shape=(10,), frame_shape=(2,))
    writer.run()
    writer.close()
    copy_live(writer.path, tmp_path / "copy.h5")
    other = spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    with h5py.File(tmp_path / "copy.h5", "a", libver="latest") as f:
        f["/entry/keys/key_0"].attrs["h5live_writer_pid"] = other.pid  # "it writes"
    with pytest.raises(OutputExistsError, match=f"still being written by process {other.pid}"):
        copy_live(writer.path, tmp_path / "copy.h5", resume=True)
    other.kill()
    other.wait()
    assert copy_live(writer.path, tmp_path / "copy.h5", resume=True).state == "complete"


def test_a_frame_is_keyed_only_once_every_live_dataset_holds_it(
    simulated_writer, tmp_path, monkeypatch
):
    # Frames and flush times advance in turn (hdmf's round robin): after the frames' chunk is
    # written, the times of those frames are still fill values until theirs is.
    from h5live._write.output import LiveOutput

    writer = simulated_writer(scan_shape=(64,), frame_shape=(2,), timestamps=True)
    writer.run()
    writer.close()
    with h5py.File(writer.path, "r") as f:
        flushed = f["/entry/flush_time"][...]
    mark, checked = LiveOutput.mark, []

    def checked_mark(self, frames, data):
        mark(self, frames, data)
        n = self.frames_complete
        checked.append(n)
        np.testing.assert_array_equal(self.file["/entry/flush_time"][:n], flushed[:n])

    monkeypatch.setattr(LiveOutput, "mark", checked_mark)
    result = copy_live(writer.path, tmp_path / "copy.h5", chunk_shape=(8, 2), buffer_shape=(8, 2))
    assert result.frames_complete == 64
    assert checked[-1] == 64


def test_options_come_as_one_object_or_as_keywords(simulated_writer, tmp_path):
    from h5live import ConversionOptions

    writer = simulated_writer(scan_shape=(40,), frame_shape=(4,))
    writer.run()
    writer.close()
    shared = ConversionOptions(chunk_shape=(8, 4), timeout=5.0)
    by_object = copy_live(writer.path, tmp_path / "a.h5", options=shared)
    by_keywords = copy_live(writer.path, tmp_path / "b.h5", chunk_shape=(8, 4), timeout=5.0)
    overridden = copy_live(writer.path, tmp_path / "c.h5", options=shared, chunk_shape=(4, 4))
    for name, chunks in (("a.h5", 8), ("b.h5", 8), ("c.h5", 4)):
        with h5py.File(tmp_path / name, "r") as f:
            assert f[DATA].chunks == (chunks, 4)
            np.testing.assert_array_equal(f[DATA][...], expected(40, (4,)))
    assert by_object.state == by_keywords.state == overridden.state == "complete"
    with pytest.raises(TypeError, match=r"'chunk_shap'.*ConversionOptions"):
        copy_live(writer.path, tmp_path / "d.h5", chunk_shap=(8, 4))


def test_a_scan_that_ended_before_its_first_frame_copies_to_an_empty_complete_output(
    simulated_writer, tmp_path
):
    writer = simulated_writer(scan_shape=(6,), frame_shape=(2,))
    writer.append(3)  # written, never keyed: the scan was aborted
    writer.finish()
    writer.close()
    copy = tmp_path / "copy.h5"
    result = copy_live(writer.path, copy, timeout=5)
    assert (result.frames_complete, result.state, result.stop_reason) == (0, "complete", "finished")
    assert output_status(copy) == {
        "frames": 0,
        "state": "complete",
        "stop_reason": "finished",
        "keys": 0,
        "finished": 1,
        "data": 0,
    }
    with KeyFollower.from_path(copy, timeout=5) as follower:  # followable: it ends at once
        assert list(follower) == []
        assert follower.stop_reason == "finished"


def test_a_destination_that_is_a_file_of_the_source_is_refused_and_the_source_kept(
    simulated_writer, tmp_path
):
    # overwrite replaced the scan's own file with its copy (the source was read from the
    # unlinked file): nothing lost here, but the detector's file was gone
    writer = simulated_writer(scan_shape=(6,), frame_shape=(2,))
    writer.run()
    writer.close()
    source = Path(writer.path)
    before = source.read_bytes()
    (tmp_path / "again.h5").hardlink_to(source)
    for destination in (source, tmp_path / "." / source.name, tmp_path / "again.h5"):
        with pytest.raises(OutputExistsError, match="is a file the conversion reads"):
            copy_live(source, destination, overwrite=True)
    assert source.read_bytes() == before


def test_a_folder_as_destination_is_refused_with_the_fix(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(6,), frame_shape=(2,))
    writer.run()
    writer.close()
    with pytest.raises(OutputError, match=r"is a folder\. Fix: pass the path of a file"):
        copy_live(writer.path, tmp_path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["scan.h5"]


@pytest.mark.parametrize("presized", [False, True], ids=["growing", "presized-keys-of-one"])
def test_a_scan_of_one_frame_copies_and_its_copy_converts_again(
    simulated_writer, tmp_path, presized
):
    # keys of shape (1,) have scan rank 0 (trailing size-1 dims dropped): the data were not
    # found, so h5live's own copy of a one-frame scan could not be copied or converted again
    writer = simulated_writer(scan_shape=(1,), frame_shape=(8, 8), presized=presized)
    writer.run()
    writer.close()
    first = copy_live(writer.path, tmp_path / "a.h5", timeout=5)
    again = copy_live(tmp_path / "a.h5", tmp_path / "b.h5", timeout=5)
    nwb = to_nwb(tmp_path / "b.h5", tmp_path / "c.nwb", rate=10.0, timeout=5)
    for result in (first, again, nwb):
        assert (result.frames_complete, result.state) == (1, "complete")
    with h5py.File(tmp_path / "b.h5", "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(1, (8, 8)))
    with pynwb.NWBHDF5IO(tmp_path / "c.nwb", "r") as io:
        series = next(iter(io.read().acquisition.values()))
        np.testing.assert_array_equal(series.data[:], expected(1, (8, 8)))
