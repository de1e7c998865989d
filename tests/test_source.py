"""Opening sources: retries while the writer starts, clear errors, default layouts."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from h5live import KeyFollower, SourceSpec, open_source
from h5live.errors import (
    DatasetNotFoundError,
    FinishedDatasetError,
    KeyDatasetError,
    SourceNotReadyError,
)
from h5live.testing import FakeClock, WriterProcess


def test_missing_file_is_reported_after_the_deadline(tmp_path):
    clock = FakeClock()
    path = tmp_path / "nowhere.h5"
    with pytest.raises(
        SourceNotReadyError, match=r"no file at .*nowhere\.h5.*after waiting 2\.0 s"
    ):
        open_source(path, timeout_s=2.0, clock=clock, sleep=clock.sleep)
    assert clock() >= 2.0
    assert len(clock.sleeps) > 5  # retried, with growing delays


def test_not_hdf5_is_reported(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5")
    with pytest.raises(SourceNotReadyError, match="is not an HDF5 file"):
        open_source(path, timeout_s=0)


def test_a_folder_is_reported_at_once_without_retries(tmp_path):
    clock = FakeClock()
    with pytest.raises(SourceNotReadyError, match=r"is a folder, not an HDF5 file\. Fix: pass"):
        open_source(tmp_path, timeout_s=30.0, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


@pytest.mark.live
def test_file_held_by_a_writer_without_swmr_is_reported(tmp_path, caplog):
    path = tmp_path / "locked.h5"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import h5py, sys; f = h5py.File(sys.argv[1], 'w'); f['k'] = [1]; f.flush(); "
            "print('held', flush=True); sys.stdin.readline()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SourceNotReadyError, match=r"locked by a writer.*swmr_mode = True"):
            open_source(path, timeout_s=0.2)
        # the retry line says it in words, not in HDF5's error stack
        [retry] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert "locked by its writer, which has not switched SWMR mode on yet" in retry
        assert "Errno" not in retry
    finally:
        holder.communicate("\n")


@pytest.mark.parametrize("missing", ["/entry/keys/key_b", "key_b"], ids=["absolute", "relative"])
def test_missing_key_dataset_names_file_path_and_neighbours(tmp_path, missing):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/entry/keys/key_a", data=[1, 2])
    with pytest.raises(DatasetNotFoundError) as info:
        KeyFollower.from_path(path, key_paths=[missing], open_timeout_s=0)
    message = str(info.value)
    assert f"{missing!r} not found in" in message
    assert "scan.h5" in message
    assert "/entry/keys/key_a" in message  # what is there instead


def test_missing_finished_dataset_is_reported(tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/k", data=[1, 2], maxshape=(None,))
    with pytest.raises(DatasetNotFoundError, match="finished dataset '/done' not found"):
        KeyFollower.from_path(path, "/k", "/done", open_timeout_s=0)


def test_file_without_a_known_layout_says_what_to_pass(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/entry/counts", data=[1, 2])
    with pytest.raises(DatasetNotFoundError, match=r"none of the known key groups.*key_paths="):
        KeyFollower.from_path(path, open_timeout_s=0)


def test_a_dangling_link_key_is_reported_as_not_resolvable(tmp_path):
    path = tmp_path / "links.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["/entry/keys/remote"] = h5py.ExternalLink("detector.h5", "/keys")
    with pytest.raises(DatasetNotFoundError, match="ExternalLink that cannot be resolved yet"):
        KeyFollower.from_path(path, open_timeout_s=0)


@pytest.mark.parametrize(
    ("keys_group", "finished_path"),
    [
        ("/entry/keys", "/entry/finished"),
        ("/entry/diamond_scan/keys", "/entry/diamond_scan/scan_finished"),
        ("/entry/solstice_scan/keys", "/entry/solstice_scan/scan_finished"),
    ],
    ids=["h5live", "diamond", "solstice"],
)
def test_known_layouts_are_found(tmp_path, keys_group, finished_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w", libver="latest") as f:
        for name in ("uniqueKeys", "detector"):
            keys = np.arange(1, 7, dtype=np.int32).reshape(2, 3, 1, 1)
            f.create_dataset(f"{keys_group}/{name}", data=keys, chunks=(1, 1, 1, 1))
        f.create_dataset(finished_path, data=[1], maxshape=(None,), chunks=(8192,))
    with KeyFollower.from_path(path, timeout=5) as follower:
        assert [d.name for d in follower.key_datasets] == [
            f"{keys_group}/detector",
            f"{keys_group}/uniqueKeys",
        ]
        assert follower.finished_dataset.name == finished_path
        assert follower.scan_rank == 2
        assert list(follower) == list(range(6))
        assert follower.stop_reason in ("finished", "complete")


def test_given_key_paths_still_find_the_finished_flag(tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/entry/keys/key_0", data=[1, 1, 0], maxshape=(None,))
        f.create_dataset("/entry/finished", data=np.int32(1))
    with KeyFollower.from_path(path, "/entry/keys/key_0", timeout=60) as follower:
        assert follower.finished_dataset.name == "/entry/finished"
        assert list(follower) == [0, 1]
        assert follower.stop_reason == "finished"


def test_a_wrong_path_in_a_complete_file_fails_without_waiting(tmp_path):
    clock = FakeClock()
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/k", data=[1], maxshape=(None,))
    with pytest.raises(DatasetNotFoundError, match="'/kk' not found"):
        KeyFollower.from_path(path, "/kk", open_timeout_s=30, clock=clock, sleep=clock.sleep)
    assert clock() == 0


def test_a_dangling_link_is_waited_for_until_the_deadline(tmp_path):
    clock = FakeClock()
    path = tmp_path / "links.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["/entry/keys/remote"] = h5py.ExternalLink("detector.h5", "/keys")
    with pytest.raises(DatasetNotFoundError, match="cannot be resolved yet"):
        KeyFollower.from_path(path, open_timeout_s=2, clock=clock, sleep=clock.sleep)
    assert clock() >= 2


def test_a_link_that_resolves_while_waiting_is_followed(tmp_path):
    clock = FakeClock()
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["/entry/keys/detector"] = h5py.ExternalLink("detector.h5", "/keys")

    def detector_file_appears() -> None:
        with h5py.File(tmp_path / "detector.h5", "w", libver="latest") as f:
            f.create_dataset("/keys", data=[1, 1, 0], maxshape=(None,))

    clock.after(0.5, detector_file_appears)
    with KeyFollower.from_path(
        path, timeout=0, open_timeout_s=5, clock=clock, sleep=clock.sleep
    ) as follower:
        assert follower.poll() == 1
    assert 0.5 <= clock() < 5


def test_a_key_group_path_means_all_its_datasets(tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/g/a", data=[1, 1, 0], maxshape=(None,))
        f.create_dataset("/g/b", data=[1, 0, 0], maxshape=(None,))
    with KeyFollower.from_path(path, "/g", timeout=0) as follower:
        assert len(follower.key_datasets) == 2
        assert list(follower) == [0]


def test_from_path_accepts_a_source_spec(tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/k", data=[1, 1], maxshape=(None,))
    spec = SourceSpec(str(path), key_paths=("/k",), open_timeout_s=0)
    with KeyFollower.from_path(spec, timeout=0) as follower:
        assert follower.poll() == 1
    with pytest.raises(ValueError, match="inside the SourceSpec"):
        KeyFollower.from_path(spec, key_paths="/k")


def test_context_manager_closes_the_file_it_opened(tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/entry/keys/k", data=[1, 1], maxshape=(None,))
    with KeyFollower.from_path(path, timeout=0) as follower:
        file = follower.key_datasets[0].file
        assert file.id.valid
    assert not file.id.valid
    follower.close()  # idempotent


def test_contiguous_key_being_written_is_reported(writer_process):
    process = writer_process(scan_shape=(50,), presized=True, contiguous_keys=True, hold_at=0)
    with pytest.raises(KeyDatasetError, match=r"'/entry/keys/key_0'.*is contiguous.*chunks=True"):
        KeyFollower.from_path(process.path, open_timeout_s=5)


def _contiguous_finished_file(path) -> None:
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/entry/keys/k", shape=(4,), maxshape=(None,), dtype="i4", chunks=(4,))
        f.create_dataset("/entry/finished", shape=(1,), dtype="i4")  # contiguous, unallocated
        f.swmr_mode = True


def test_contiguous_finished_dataset_given_explicitly_is_reported(tmp_path):
    path = tmp_path / "scan.h5"
    _contiguous_finished_file(path)
    with pytest.raises(FinishedDatasetError, match=r"'/entry/finished'.*is contiguous"):
        KeyFollower.from_path(path, "/entry/keys/k", "/entry/finished", open_timeout_s=0)


def test_contiguous_finished_dataset_found_by_layout_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "scan.h5"
    _contiguous_finished_file(path)
    with caplog.at_level(logging.WARNING, logger="h5live"):
        follower = KeyFollower.from_path(path, open_timeout_s=0, timeout=0)
    with follower:
        assert follower.finished_dataset is None
    assert "Following without it" in caplog.text


@pytest.mark.live
def test_from_path_waits_for_a_writer_that_starts_late(tmp_path):
    path = tmp_path / "late.h5"
    process = WriterProcess(path, scan_shape=(30,), frame_rate_hz=300)
    starter = threading.Timer(0.5, process.start)
    starter.start()
    try:
        with KeyFollower.from_path(path, timeout=5, open_timeout_s=60) as follower:
            assert list(follower) == list(range(30))
            assert follower.stop_reason in ("finished", "complete")
        starter.join()
        assert process.wait() == 0
    finally:
        starter.cancel()
        process.close()


def test_retry_log_names_the_file(tmp_path, caplog):
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, logger="h5live"), pytest.raises(SourceNotReadyError):
        open_source(tmp_path / "x.h5", timeout_s=0.1, clock=clock, sleep=clock.sleep)
    assert "cannot open" in caplog.text
    assert "x.h5" in caplog.text


def test_a_truncated_source_is_reported_not_read_forever(simulated_writer, tmp_path):
    # A SWMR reader skips HDF5's end-of-file check (a live file grows) and HDF5 retries reads
    # past the end without end: a closed file cut short must be refused at open.
    writer = simulated_writer(scan_shape=(50,), frame_shape=(32, 32))
    writer.run()
    writer.close()
    whole = Path(writer.path).read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SourceNotReadyError, match=r"'.*cut\.h5' is truncated: .* ends \d+ bytes"):
        open_source(cut, timeout_s=0)
    with open_source(writer.path, timeout_s=0) as f:  # the whole file opens
        assert f["/entry/data/data"].shape[0] == 50
