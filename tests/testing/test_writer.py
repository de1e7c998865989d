"""The simulated detector writer: layout, options, misbehaviour, process handle."""

from __future__ import annotations

import select
import time

import h5py
import numpy as np
import pytest

from h5live.testing import (
    CRASH_EXIT_CODE,
    SimulatedWriter,
    WriterConfig,
    WriterProcess,
    frame_values,
    wait_for_progress,
)


def read(path, name):
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        return f[name][()]


def test_default_layout_is_detector_like(simulated_writer):
    writer = simulated_writer(scan_shape=(5,), n_keys=2)
    assert writer.data.name == "/entry/data/data"
    assert [k.name for k in writer.keys] == ["/entry/keys/key_0", "/entry/keys/key_1"]
    assert writer.finished.name == "/entry/finished"
    assert writer.file.swmr_mode
    assert writer.keys[0].fillvalue == 0
    assert writer.data.chunks == (1, 8, 8)  # one frame per chunk


def test_every_path_is_configurable(simulated_writer):
    writer = simulated_writer(
        data_path="/a/frames",
        keys_group="/a/k",
        finished_path="/a/done",
        timestamp_path="/a/t",
        timestamps=True,
    )
    names = {writer.data.name, writer.keys[0].name, writer.finished.name, writer.timestamps.name}
    assert names == {"/a/frames", "/a/k/key_0", "/a/done", "/a/t"}


@pytest.mark.parametrize("presized", [False, True], ids=["growing", "presized"])
def test_grid_scan_writes_frames_in_c_order(simulated_writer, presized):
    writer = simulated_writer(scan_shape=(3, 4), frame_shape=(2, 3), presized=presized)
    writer.append(6)
    writer.flush_keys()
    assert writer.data.shape == ((3 if presized else 2), 4, 2, 3)
    assert writer.keys[0].maxshape == ((3 if presized else None), 4)
    np.testing.assert_array_equal(writer.data[1, 1], frame_values(5, (2, 3), "uint16"))
    assert writer.keys[0][1, 1] == 6
    assert writer.keys[0][1, 2] == 0


@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32", "bool"])
def test_frames_differ_from_each_other_and_within(dtype):
    a, b = frame_values(3, (4, 4), dtype), frame_values(4, (4, 4), dtype)
    assert a.dtype == np.dtype(dtype)
    assert not np.array_equal(a, b)
    assert len(np.unique(a)) > 1


@pytest.mark.parametrize("compression", ["gzip", "zstd", "lz4", "blosc", "bitshuffle"])
def test_compressed_frames_read_back(tmp_path, compression):
    pytest.importorskip("hdf5plugin")
    with SimulatedWriter(tmp_path / "c.h5", scan_shape=(4,), compression=compression) as writer:
        writer.run()
    data = read(tmp_path / "c.h5", "/entry/data/data")
    np.testing.assert_array_equal(data[3], frame_values(3, (8, 8), "uint16"))


def test_unknown_compression_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown compression 'snappy'"):
        SimulatedWriter(tmp_path / "c.h5", compression="snappy")


def test_keys_are_flushed_in_the_configured_order(simulated_writer):
    writer = simulated_writer(n_keys=3, key_order="reverse")
    assert writer._key_sequence() == [2, 1, 0]
    shuffled = simulated_writer("r.h5", n_keys=3, key_order="random", seed=1)
    orders = {tuple(shuffled._key_sequence()) for _ in range(20)}
    assert len(orders) > 1


def test_gaps_stay_zero_until_filled(simulated_writer):
    writer = simulated_writer(scan_shape=(10,), gaps=(2,), gap_fill_after=3, n_keys=2)
    writer.append(4)
    writer.flush_keys()
    assert writer.keys[0][:4].tolist() == [1, 2, 0, 4]
    assert writer.keys[1][:4].tolist() == [1, 2, 3, 4]
    writer.append(1)
    writer.flush_keys()
    assert writer.keys[0][2] == 3


def test_regression_resets_a_key_once_due(simulated_writer):
    writer = simulated_writer(scan_shape=(10,), regressions=((5, 1),))
    writer.append(4)
    writer.flush_keys()
    assert writer.keys[0][1] == 2
    writer.append(1)
    writer.flush_keys()
    assert writer.keys[0][1] == 0


def test_timestamps_record_flush_time(simulated_writer):
    writer = simulated_writer(scan_shape=(2, 3), timestamps=True)
    writer.append(4)
    values = writer.timestamps[...].reshape(-1)
    assert np.all(values[:4] > 1e9)
    assert np.isnan(values[4:]).all()


def test_run_writes_everything_and_finishes(tmp_path):
    with SimulatedWriter(tmp_path / "s.h5", scan_shape=(50,), frame_rate_hz=5000) as writer:
        summary = writer.run()
    assert summary["frames"] == 50
    assert not summary["crashed"]
    assert read(tmp_path / "s.h5", "/entry/finished") == 1
    keys = read(tmp_path / "s.h5", "/entry/keys/key_0")
    assert keys.tolist() == list(range(1, 51))


@pytest.mark.parametrize("scalar", [True, False])
def test_finished_flag_shapes(simulated_writer, scalar):
    writer = simulated_writer(finished_scalar=scalar)
    assert writer.finished.shape == (() if scalar else (1,))
    writer.finish()
    assert int(np.asarray(writer.finished[()]).reshape(-1)[0]) == 1


def test_config_round_trips_through_json():
    config = WriterConfig(
        scan_shape=(3, 4), regressions=((5, 1),), gaps=(2,), key_chunks=(1, 4), hold_at=0
    )
    assert WriterConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"scan_shape": ()}, "scan_shape"),
        ({"n_keys": 0}, "n_keys"),
        ({"flush_every": 0}, "flush_every"),
        ({"key_order": "sideways"}, "key_order"),
        ({"contiguous_keys": True}, "presized"),
    ],
    ids=["empty-scan", "no-keys", "no-flush", "bad-order", "contiguous-growing"],
)
def test_bad_config_is_refused(options, match):
    with pytest.raises(ValueError, match=match):
        WriterConfig(**options)


@pytest.mark.live
def test_process_crash_exits_without_finished(writer_process):
    process = writer_process(scan_shape=(40,), crash_after=10)
    assert process.wait() == CRASH_EXIT_CODE
    assert read(process.path, "/entry/finished") == 0
    assert read(process.path, "/entry/keys/key_0").tolist() == list(range(1, 11))


@pytest.mark.live
def test_process_reports_its_rate(writer_process):
    process = writer_process(scan_shape=(200,), frame_rate_hz=4000)
    assert process.wait() == 0
    assert process.summary is not None
    assert process.summary["frames"] == 200
    assert process.summary["rate_hz"] > 0
    assert process.summary["cpu_s"] > 0


@pytest.mark.live
def test_process_holds_until_go(writer_process):
    process = writer_process(scan_shape=(30,), hold_at=10)
    with h5py.File(process.path, "r", libver="latest", swmr=True) as f:
        keys = f["/entry/keys/key_0"]
        for _ in range(200):
            keys.refresh()
            if keys.shape[0] == 10:
                break
            time.sleep(0.01)
        assert keys.shape == (10,)
        process.go()
        assert process.wait() == 0
        keys.refresh()
        assert keys.shape == (30,)


@pytest.mark.live
def test_summary_survives_a_slow_reader_of_the_ready_line(tmp_path, monkeypatch):
    # The READY handshake must not buffer what follows it (the summary), however late the
    # parent reads READY: here the writer has finished and printed its summary by then.
    class SlowSelect:
        @staticmethod
        def select(*args):
            time.sleep(1.0)
            return select.select(*args)

    monkeypatch.setattr("h5live.testing._process.select", SlowSelect)
    process = WriterProcess(tmp_path / "slow.h5", scan_shape=(20,))
    try:
        process.start()
        assert process.wait() == 0
        assert process.summary is not None
        assert process.summary["frames"] == 20
    finally:
        process.close()


def test_process_that_fails_to_start_says_why(tmp_path):
    process = WriterProcess(tmp_path / "no-such-dir" / "x.h5")
    with pytest.raises(RuntimeError, match="did not start"):
        process.start()
    process.close()


def test_repr(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(5,))
    writer.append(2)
    assert repr(writer) == "<SimulatedWriter 'scan.h5' written=2 keyed=0/5>"
    assert repr(WriterProcess(tmp_path / "p.h5")) == "<WriterProcess 'p.h5' not started>"


@pytest.mark.live
def test_a_writer_process_pauses_at_each_hold_point(writer_process):
    process = writer_process(scan_shape=(30,), frame_shape=(2,), hold_at=(10, 0, 20))
    with h5py.File(process.path, "r", libver="latest", swmr=True) as f:
        keys = f["/entry/keys/key_0"]

        def keyed() -> int:
            keys.refresh()
            return int(np.count_nonzero(keys[...]))

        assert keyed() == 0
        for point in (10, 20):
            process.go()
            assert wait_for_progress(keyed, point, what="frames keyed") == point
            assert keyed() == point  # it waits there for the next go
    assert process.wait() == 0  # the last go is sent by wait
    assert process.summary["frames"] == 30
