"""Multi-file acquisitions followed live: one writer process per detector file and one for the
master (virtual datasets, growing or pre-sized, interleaved in blocks; or external links).

Every consumer gets every frame exactly once with the right values, under the master's paths.
The detector writers pause after their first frames (``hold_at``) and are let go on only once
the consumer has delivered every frame written so far: each test shows the consumer working
while the files are being written, without a clock.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from h5live import DataSource, KeyFollower, LiveDataChunkIterator, copy_live, to_nwb
from h5live._source.spec import walk_datasets
from h5live._source.virtual import is_virtual
from h5live.errors import OutputExistsError
from h5live.testing import AcquisitionConfig, MultiFileAcquisition, frame_values
from h5live.testing._multifile import detector_paths
from helpers import H5LIVE

pytestmark = pytest.mark.live

N = 90
FRAME = (6, 4)
BLOCK = 5
HOLD = 10  # each detector file pauses before its frame 10 (two whole blocks)
IDLE_S = 60.0  # an idle timeout that only ends a test whose writers died
COMMON = {
    "scan_shape": (N,),
    "frame_shape": FRAME,
    "block": BLOCK,
    "timestamps": True,
    "frame_rate_hz": 1000.0,
    "hold_at": HOLD,
}
VARIANTS = {
    "vds-growing-2-files": {"layout": "vds", "files": 2, "presized": False},
    "vds-presized-3-files": {"layout": "vds", "files": 3, "presized": True},
    "links-2-files": {"layout": "links", "files": 2, "presized": False},
}
METADATA = {
    "session_description": "a multi-file acquisition, converted by the h5live tests",
    "identifier": "h5live-multifile-test",
    "session_start_time": "2026-03-04T05:06:07+00:00",
    "subject": {"subject_id": "detector", "species": "n/a", "sex": "U", "age": "P0D"},
}


@pytest.fixture
def acquisition(tmp_path) -> Iterator[Callable[..., MultiFileAcquisition]]:
    """Starts a master writer and one writer per detector file; every one of them is ended
    at teardown, pass or fail."""
    started: list[MultiFileAcquisition] = []

    def start(variant: str, **overrides: Any) -> MultiFileAcquisition:
        config = AcquisitionConfig(**{**COMMON, **VARIANTS[variant], **overrides})
        acquisition = MultiFileAcquisition(tmp_path / "scan.h5", config)
        started.append(acquisition)
        return acquisition.start()

    yield start
    for acquisition in started:
        acquisition.close()


@pytest.fixture(params=list(VARIANTS))
def variant(request) -> str:
    return str(request.param)


def held(config: AcquisitionConfig) -> int:
    """Frames complete while every detector writer waits at ``HOLD``."""
    return HOLD * config.files if config.layout == "vds" else HOLD


def expected(config: AcquisitionConfig, part: int = 0) -> np.ndarray:
    """The frames the master shows at ``config.data_paths[part]``."""
    offset = part * config.n_frames if config.layout == "links" else 0
    return np.stack([frame_values(i + offset, FRAME, config.dtype) for i in range(N)])


def stop_reason(config: AcquisitionConfig) -> str:
    return "complete" if config.presized and config.layout == "vds" else "finished"


def still_writing(acquisition: MultiFileAcquisition) -> bool:
    return all(writer.returncode is None for writer in acquisition.detectors)


def releaser(acquisition: MultiFileAcquisition, frames: int) -> Callable[..., Any]:
    """A progress-bar class that lets the writers go on once ``frames`` were handed out."""

    class Bar:
        def __init__(self, total: int | None = None, **options: Any) -> None:
            self.total = total
            self.n = 0

        def update(self, n: int) -> None:
            self.n += n
            if self.n >= frames and not getattr(acquisition, "released", False):
                assert still_writing(acquisition)
                acquisition.released = True  # type: ignore[attr-defined]
                acquisition.go()

        def set_postfix_str(self, text: str) -> None:
            pass

        def close(self) -> None:
            pass

    return Bar


def test_key_follower_delivers_every_frame_once(acquisition, variant):
    acq = acquisition(variant)
    delivered: list[int] = []
    with KeyFollower.from_path(acq.path, timeout=IDLE_S) as follower:
        for index in follower:
            delivered.append(index)
            if len(delivered) == held(acq.config):
                assert still_writing(acq)
                acq.go()
        reason = follower.stop_reason
    acq.wait()
    assert delivered == list(range(N))
    assert reason == stop_reason(acq.config)


def test_key_follower_follows_a_vds_over_four_files(acquisition):
    acq = acquisition("vds-growing-2-files", files=4)
    with KeyFollower.from_path(acq.path, timeout=IDLE_S) as follower:
        assert follower.wait_for(held(acq.config) - 1)
        acq.go()
        assert list(follower) == list(range(N))
    acq.wait()


def test_data_source_reads_every_frame_right(acquisition, variant):
    acq = acquisition(variant)
    config = acq.config
    frames: dict[str, dict[int, np.ndarray]] = {path: {} for path in config.data_paths}
    with h5py.File(acq.path, "r", libver="latest", swmr=True) as f:
        source = DataSource(
            [f[path] for path in config.key_paths],
            {path: f[path] for path in config.data_paths},
            timeout=IDLE_S,
            finished_dataset=f[config.finished_path],
            batch_frames=7,
        )
        for item in source:
            for path in config.data_paths:
                for k, index in enumerate(range(item.index, item.stop)):
                    assert index not in frames[path]
                    frames[path][index] = item[path][k]
            if len(frames[config.data_paths[0]]) >= held(config) and still_writing(acq):
                acq.go()
    acq.wait()
    for part, path in enumerate(config.data_paths):
        assert sorted(frames[path]) == list(range(N))
        np.testing.assert_array_equal(
            np.stack([frames[path][i] for i in range(N)]), expected(config, part)
        )


def test_live_data_chunk_iterator_hands_out_every_frame(acquisition, variant):
    acq = acquisition(variant)
    data = acq.config.data_paths[-1]
    out = np.zeros((N, *FRAME), dtype="uint16")
    written = np.zeros(N, dtype=int)
    with LiveDataChunkIterator(
        acq.path,
        data,
        chunk_shape=(BLOCK, *FRAME),
        buffer_shape=(2 * BLOCK, *FRAME),
        max_latency_s=0.05,
        timeout=IDLE_S,
    ) as iterator:
        for chunk in iterator:
            rows = chunk.selection[0]
            out[chunk.selection] = chunk.data
            written[rows] += 1
            if iterator.frames_done >= held(acq.config) and still_writing(acq):
                acq.go()
        assert iterator.frames_done == N
    acq.wait()
    assert (written == 1).all()
    np.testing.assert_array_equal(out, expected(acq.config, len(acq.config.data_paths) - 1))


def test_h5live_follow_reports_every_frame(acquisition, variant, spawn):
    acq = acquisition(variant)
    follow = spawn(
        [*H5LIVE, "follow", acq.path, "--json", "--timeout", str(IDLE_S)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acq.go()
    out, err = follow.communicate()
    acq.wait()
    assert follow.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["frames"], summary["stop_reason"]) == (N, stop_reason(acq.config))


@pytest.mark.parametrize("layout", ["vds-growing-2-files", "links-2-files"])
def test_a_detector_file_of_the_master_is_refused_as_destination(acquisition, layout):
    acq = acquisition(layout, hold_at=None)
    acq.wait()
    detector = Path(detector_paths(acq.path, acq.config.files)[1])
    before = detector.read_bytes()
    with pytest.raises(OutputExistsError, match="is a file the conversion reads"):
        copy_live(acq.path, detector, overwrite=True, timeout=IDLE_S)
    assert detector.read_bytes() == before


def ordinary(path: Path) -> bool:
    """Whether an HDF5 file stands alone: no virtual dataset, no external link."""
    links: list[str] = []
    with h5py.File(path, "r") as f:
        f.visit_links(
            lambda name: (
                links.append(name)
                if isinstance(f.get(name, getlink=True), h5py.ExternalLink)
                else None
            )
        )
        virtual = [name for name, dataset in walk_datasets(f) if is_virtual(dataset)]
    return not links and not virtual


def test_copy_live_finds_the_data_and_copies_them_under_the_masters_paths(
    acquisition, variant, tmp_path
):
    acq = acquisition(variant)
    config = acq.config
    copy = tmp_path / "copy.h5"
    result = copy_live(
        acq.path,
        copy,
        chunk_shape=(BLOCK, *FRAME),
        max_latency_s=0.05,
        timeout=IDLE_S,
        display_progress=True,
        progress_bar_class=releaser(acq, held(config)),
    )
    acq.wait()
    assert (result.state, result.frames_complete, result.stop_reason) == (
        "complete",
        N,
        stop_reason(config),
    )
    assert sorted(result.chunk_copy) == sorted([*config.data_paths, *config.timestamp_paths])
    assert ordinary(copy)
    with h5py.File(copy, "r") as c, h5py.File(acq.path, "r") as m:
        for part, path in enumerate(config.data_paths):
            np.testing.assert_array_equal(c[path][()], expected(config, part))
        for path in [*config.data_paths, *config.timestamp_paths]:
            np.testing.assert_array_equal(c[path][()], m[path][()])
    with KeyFollower.from_path(copy, timeout=IDLE_S) as follower:  # followable on its own
        assert list(follower) == list(range(N))


def test_to_nwb_converts_the_detectors_frames_and_times(acquisition, variant, tmp_path):
    from pynwb import NWBHDF5IO

    acq = acquisition(variant)
    config = acq.config
    nwb = tmp_path / "scan.nwb"
    result = to_nwb(
        acq.path,
        nwb,
        metadata=METADATA,
        chunk_shape=(BLOCK, *FRAME),
        max_latency_s=0.05,
        timeout=IDLE_S,
        display_progress=True,
        progress_bar_class=releaser(acq, held(config)),
    )
    acq.wait()
    assert (result.state, result.frames_complete) == ("complete", N)
    with NWBHDF5IO(nwb, "r") as io, h5py.File(acq.path, "r") as m:
        (series,) = io.read().acquisition.values()
        np.testing.assert_array_equal(series.data[:], expected(config, 0))
        np.testing.assert_array_equal(series.timestamps[:], m[config.timestamp_paths[0]][()])


def test_the_dranspose_source_streams_every_frame(acquisition, variant):
    pytest.importorskip("dranspose")
    from h5live.dranspose import H5LiveSource, parse_stins

    acq = acquisition(variant, compression="bitshuffle")
    config = acq.config
    # a VDS's stored chunks live in its source files: its frames are decoded; a linked
    # dataset's chunks are its own, forwarded as stored
    forwarded = "none" if config.layout == "vds" else "bslz4"
    streams = {"det": {"path": acq.path, "dataset": config.data_paths[0]}}
    events = H5LiveSource({"streams": streams, "timeout_s": IDLE_S}).events()
    assert parse_stins(next(events).streams["det"]).htype == "header"
    frames = {}
    for event in events:
        packet = parse_stins(event.streams["det"])
        if packet.htype != "image":
            assert packet.htype == "series_end"
            break
        assert packet.compression == forwarded
        assert packet.frame not in frames
        frames[packet.frame] = packet.data
        if len(frames) == held(config):
            assert still_writing(acq)
            acq.go()
    acq.wait()
    assert sorted(frames) == list(range(N))
    np.testing.assert_array_equal(np.stack([frames[i] for i in range(N)]), expected(config, 0))


def test_fill_values_a_reader_without_the_data_refresh_sees_never_come_out_of_h5live(
    acquisition,
):
    acq = acquisition("vds-presized-3-files", hold_at=0)
    config = acq.config
    with h5py.File(acq.path, "r", libver="latest", swmr=True) as f:
        keys, data = f[config.key_paths[0]], f[config.data_paths[0]]
        assert not data[()].any()  # read before the writers write: every frame a fill value
        acq.go()
        acq.wait()
        keys.refresh()
        assert keys[()].all()  # every key is set...
        stale = data[()]  # ...but the VDS was not refreshed: fill values where frames are
        wrong = [i for i in range(N) if not np.array_equal(stale[i], expected(config)[i])]
        assert len(wrong) == N
        source = DataSource([keys], {"data": data}, timeout=IDLE_S, batch_frames=16)
        got = np.concatenate([item["data"] for item in source])
    np.testing.assert_array_equal(got, expected(config))


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize("layout", ["vds", "links"])
def test_h5live_simulate_writes_a_master_and_one_file_per_process(tmp_path, capsys, layout):
    from h5live._cli import main

    path = tmp_path / "scan.h5"
    args = ["simulate", str(path), "--files", "2", "--layout", layout, "--scan", "40"]
    assert main([*args, "--frame", "4", "3", "--rate", "2000", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["frames"], summary["layout"], summary["master"]) == (40, layout, str(path))
    assert [Path(p).name for p in summary["files"]] == ["scan_000001.h5", "scan_000002.h5"]
    assert main(["follow", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 40
    config = AcquisitionConfig(files=2, layout=layout, scan_shape=(40,), frame_shape=(4, 3))
    with h5py.File(path, "r") as f:
        for part, data in enumerate(config.data_paths):
            offset = part * 40 if layout == "links" else 0
            wanted = [frame_values(i + offset, (4, 3), "uint16") for i in range(40)]
            np.testing.assert_array_equal(f[data][()], np.stack(wanted))


def test_h5live_simulate_refuses_several_keys_for_several_files(tmp_path, capsys):
    from h5live._cli import main

    assert main(["simulate", str(tmp_path / "scan.h5"), "--files", "2", "--keys", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "Fix:" in err[0]
    assert not (tmp_path / "scan.h5").exists()


def test_h5live_demo_converts_a_master_of_two_files(tmp_path, capsys):
    from h5live._cli import main

    args = ["demo", "--files", "2", "--frames", "300", "--rate", "2000", "--dir", str(tmp_path)]
    code = main([*args, "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (summary["frames_complete"], summary["state"]) == (300, "complete")
    assert summary["nwb_equals_source"] is True
    assert (tmp_path / "acquisition_000002.h5").exists()
