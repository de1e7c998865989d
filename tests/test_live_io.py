"""h5live.LiveHDF5IO and h5live.LiveNWBHDF5IO: a user's own hdmf/pynwb write, live."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pynwb
import pytest
import swmr_tools
from hdmf.backends.hdf5.h5_utils import H5DataIO
from hdmf.backends.hdf5.h5tools import HDF5IO
from hdmf.common import SimpleMultiContainer, VectorData, get_manager
from hdmf.common import validate as hdmf_validate

import h5live
from h5live._write.output import HDF5_LAYOUT, NWB_LAYOUT
from h5live.errors import OutputExistsError
from h5live.testing import frame_values
from helpers import H5LIVE, OutputReaders, ended, output_status, wait_for_frames

USER_WRITE = Path(__file__).parent / "programs" / "user_nwb_write.py"
READER = Path(__file__).parent / "programs" / "output_reader.py"
SERIES = "/acquisition/detector/data"
FRAME = (8, 6)


def expected(n: int, frame: tuple[int, ...] = FRAME) -> np.ndarray:
    return np.stack([frame_values(i, frame, "uint16") for i in range(n)])


def flush_times(source: Path) -> np.ndarray:
    with h5py.File(source, "r", libver="latest", swmr=True) as f:
        return f["/entry/flush_time"][...]


@pytest.mark.live
def test_a_users_nwb_write_of_frames_and_timestamps_is_followed_while_it_is_written(
    writer_process, spawn, tmp_path
):
    process = writer_process(
        scan_shape=(150,), frame_shape=FRAME, frame_rate_hz=400, timestamps=True, hold_at=(0, 60)
    )
    nwb = tmp_path / "user.nwb"
    user = spawn(
        [sys.executable, str(USER_WRITE), str(process.path), str(nwb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_frames(nwb, 0, user, NWB_LAYOUT, SERIES)  # in SWMR mode before the first frame
    follower = spawn(
        [*H5LIVE, "follow", str(nwb), "--timeout", "60", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reader = spawn(
        [sys.executable, str(READER), str(nwb), SERIES, NWB_LAYOUT.status, "1", "uint16"]
        + [str(n) for n in FRAME],
        stdout=subprocess.PIPE,
        text=True,
    )
    with h5py.File(nwb, "r", libver="latest", swmr=True) as f:
        keys, finished = f[NWB_LAYOUT.keys], f[NWB_LAYOUT.finished]
        theirs = swmr_tools.KeyFollower([keys], timeout=30, finished_dataset=finished)
        theirs.check_datasets()
        assert not theirs.refresh()  # followable from birth
        process.go()  # the writer pauses again before frame 60
        wait_for_frames(nwb, 60, user, NWB_LAYOUT, SERIES)
        with (
            h5py.File(nwb, "r", libver="latest", swmr=True) as g,
            pynwb.NWBHDF5IO(file=g, mode="r") as io,  # pynwb, mid-write
        ):
            for name in (SERIES, "/acquisition/detector/timestamps"):
                g[name].refresh()  # HDF5 caches a SWMR dataset's shape: a reader refreshes it
            series = io.read().acquisition["detector"]
            assert g[NWB_LAYOUT.status + "state"][()].decode() == "writing"
            assert series.data.shape[0] == series.timestamps.shape[0] == 60
            np.testing.assert_array_equal(series.data[:], expected(60))
            np.testing.assert_array_equal(series.timestamps[:], flush_times(process.path)[:60])
        process.go()
        assert list(theirs) == list(range(150))
    code, out, err = ended(user)
    assert code == 0, err
    assert out.strip() == "complete"
    assert process.wait() == 0
    summary, err = follower.communicate(timeout=120)
    assert follower.returncode == 0, err
    assert (json.loads(summary)["frames"], json.loads(summary)["stop_reason"]) == (150, "finished")
    looks, _ = reader.communicate(timeout=120)
    assert json.loads(looks.splitlines()[-1])["wrong"] == []
    with pynwb.NWBHDF5IO(nwb, "r") as io:
        series = io.read().acquisition["detector"]
        np.testing.assert_array_equal(series.data[:], expected(150))
        np.testing.assert_array_equal(series.timestamps[:], flush_times(process.path))
    assert pynwb.validate(path=str(nwb)) == []
    status = output_status(nwb, NWB_LAYOUT, SERIES)
    assert (status["frames"], status["state"], status["finished"]) == (150, "complete", 1)


@pytest.mark.live
def test_a_killed_users_nwb_write_resumes_while_readers_follow_it(writer_process, spawn, tmp_path):
    process = writer_process(
        scan_shape=(300,), frame_shape=FRAME, frame_rate_hz=400, timestamps=True, hold_at=(0, 100)
    )
    nwb = tmp_path / "user.nwb"
    command = [sys.executable, str(USER_WRITE), str(process.path), str(nwb)]
    user = spawn(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_frames(nwb, 0, user, NWB_LAYOUT, SERIES)
    process.go()  # the writer pauses again before frame 100
    wait_for_frames(nwb, 100, user, NWB_LAYOUT, SERIES)
    user.kill()  # mid-write, as a crash would
    ended(user)
    readers = OutputReaders(spawn, nwb, NWB_LAYOUT.status, 300)
    again = spawn([*command, "a"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_frames(nwb, 100, again, NWB_LAYOUT, SERIES)
    process.go()
    code, out, err = ended(again)
    assert code == 0, err
    assert out.strip() == "complete"
    assert process.wait() == 0
    readers.check()
    with pynwb.NWBHDF5IO(nwb, "r") as io:
        series = io.read().acquisition["detector"]
        np.testing.assert_array_equal(series.data[:], expected(300))
        np.testing.assert_array_equal(series.timestamps[:], flush_times(process.path))
    assert pynwb.validate(path=str(nwb)) == []


def test_an_hdmf_container_of_any_namespace_is_written_live_and_valid(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(50,), frame_shape=(4, 3))
    writer.run()
    writer.close()
    with h5live.LiveDataChunkIterator(writer.path, "/entry/data/data") as frames:
        root = SimpleMultiContainer(
            name="root",
            containers=[VectorData(name="frames", description="d", data=H5DataIO(frames))],
        )
        with h5live.LiveHDF5IO(tmp_path / "out.h5", "w", manager=get_manager()) as io:
            io.write(root)
            assert io.live_write is not None
            assert io.live_write.state == "complete"
            assert "complete" in repr(io)
    with HDF5IO(str(tmp_path / "out.h5"), "r", manager=get_manager()) as io:
        assert hdmf_validate(io) == []
    # (hdmf 6.2 cannot read this root back: SimpleMultiContainer constructs every group of the
    # file, and asking the type of h5live's untyped /entry group raises; docs/live_writes.md)
    with h5py.File(tmp_path / "out.h5", "r") as f:
        np.testing.assert_array_equal(f["frames"][...], expected(50, (4, 3)))
    status = output_status(tmp_path / "out.h5", HDF5_LAYOUT, "/frames")
    assert (status["frames"], status["state"], status["data"]) == (50, "complete", 50)


def test_only_new_files_and_swmr_ready_files_are_accepted(tmp_path):
    (tmp_path / "old.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="writes new files"):
        h5live.LiveHDF5IO(tmp_path / "x.h5", "r+", manager=get_manager())
    with pytest.raises(OutputExistsError, match="not an output of h5live"):
        h5live.LiveHDF5IO(tmp_path / "old.h5", "a", manager=get_manager())
    with pytest.raises(OutputExistsError, match="exists"):
        h5live.LiveHDF5IO(tmp_path / "old.h5", "w-", manager=get_manager())
    with (
        h5py.File(tmp_path / "plain.h5", "w") as plain,
        pytest.raises(ValueError, match="libver='latest'"),
    ):
        h5live.LiveHDF5IO(file=plain, mode="w", manager=get_manager())
