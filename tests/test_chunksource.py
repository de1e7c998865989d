"""ChunkSource: datasets without keys, delivered one complete chunk of frames at a time."""

from __future__ import annotations

import logging

import h5py
import hdf5plugin  # noqa: F401  (reads the compressed datasets)
import numpy as np
import pytest

from h5live import ChunkSource
from h5live.testing import FakeClock, SimulatedWriter, frame_values


def source_for(writer: SimulatedWriter, clock: FakeClock, timeout=1.0, finished=True, **kw):
    return ChunkSource(
        {"data": writer.data},
        timeout,
        writer.finished if finished else None,
        clock=clock,
        sleep=clock.sleep,
        **kw,
    )


def check(item, writer: SimulatedWriter) -> tuple[int, int]:
    c = writer.config
    expected = np.stack(
        [frame_values(i, c.frame_shape, c.dtype) for i in range(item.index, item.stop)]
    )
    np.testing.assert_array_equal(item["data"], expected)
    assert item.slice_metadata == (slice(item.index, item.stop),)
    return item.index, item.stop


COMPRESSION = [None, "gzip", "blosc", "bitshuffle"]


@pytest.mark.parametrize("compression", COMPRESSION, ids=[str(c) for c in COMPRESSION])
@pytest.mark.parametrize("presized", [False, True], ids=["growing", "presized"])
def test_a_chunk_is_delivered_once_the_writer_has_moved_past_it(
    simulated_writer, fake_clock, compression, presized
):
    writer = simulated_writer(
        scan_shape=(23,),
        frame_shape=(3, 4),
        data_chunks=(5, 3, 4),
        compression=compression,
        presized=presized,
    )
    source = source_for(writer, fake_clock)
    writer.append(7)  # chunk 0 full, chunk 1 begun
    assert check(next(source), writer) == (0, 5)
    writer.append(3)  # chunk 1 full, but nothing shows that its writer is done with it
    assert source.kf.poll() == 4
    writer.append(1)  # chunk 2 begun: chunk 1 is complete
    assert check(next(source), writer) == (5, 10)
    writer.append(12)
    writer.flush_keys()
    writer.finish()
    assert [check(item, writer) for item in source] == [(10, 15), (15, 20), (20, 23)]
    assert source.finished_set
    assert source.max_size == (23 if presized else None)


def test_partly_written_last_chunk_is_withheld_on_timeout_with_a_warning(
    simulated_writer, fake_clock, caplog
):
    writer = simulated_writer(scan_shape=(20,), frame_shape=(2,), data_chunks=(4, 2))
    writer.append(10)
    source = source_for(writer, fake_clock, finished=False)
    with caplog.at_level(logging.WARNING, "h5live"):
        delivered = [check(item, writer) for item in source]
    # chunk 2 (frames 8, 9) is begun: nothing shows that the writer is done with it
    assert delivered == [(0, 4), (4, 8)]
    assert source.timed_out
    assert "frames 8..9" in caplog.text
    assert "finished_dataset" in caplog.text


def test_finished_flag_delivers_the_last_chunk_cut_to_the_length(simulated_writer, fake_clock):
    writer = simulated_writer(scan_shape=(9,), frame_shape=(), data_chunks=(4,))
    source = source_for(writer, fake_clock)
    writer.append(9)
    writer.flush_keys()
    writer.finish()
    assert [check(item, writer) for item in source] == [(0, 4), (4, 8), (8, 9)]


def test_several_datasets_advance_together(tmp_path, fake_clock):
    with h5py.File(tmp_path / "d.h5", "w", libver="latest") as f:
        a = f.create_dataset("a", data=np.arange(12.0).reshape(12, 1), chunks=(3, 1))
        b = f.create_dataset("b", data=np.arange(12), chunks=(3,), maxshape=(None,))
        done = f.create_dataset("done", data=1)
        items = list(
            ChunkSource({"a": a, "b": b}, 1, done, clock=fake_clock, sleep=fake_clock.sleep)
        )
    assert [(i.index, i.stop) for i in items] == [(0, 3), (3, 6), (6, 9), (9, 12)]
    np.testing.assert_array_equal(np.concatenate([i["b"] for i in items]), np.arange(12))
    assert items[0].maxshape == (12,)


@pytest.mark.parametrize(
    ("chunks", "message"),
    [((2, 2, 4), "whole frames"), (None, "whole frames")],
    ids=["chunked-frames", "contiguous"],
)
def test_datasets_that_are_not_chunked_by_whole_frames_are_refused(tmp_path, chunks, message):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        data = f.create_dataset("data", shape=(6, 4, 4), chunks=chunks, dtype="f4")
        with pytest.raises(ValueError, match=message):
            ChunkSource({"data": data})


def test_datasets_with_different_chunk_lengths_are_refused(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        a = f.create_dataset("a", shape=(6,), chunks=(2,), dtype="f4")
        b = f.create_dataset("b", shape=(6,), chunks=(3,), dtype="f4")
        with pytest.raises(ValueError, match=r"different chunk lengths \[2, 3\]"):
            ChunkSource({"a": a, "b": b})


LIVE = {
    "growing": {},
    "growing-blosc": {"compression": "blosc"},
    "presized-zstd": {"presized": True, "compression": "zstd"},
}


@pytest.mark.live
@pytest.mark.parametrize("layout", LIVE.values(), ids=LIVE.keys())
def test_live_chunks_carry_every_value(writer_process, layout):
    process = writer_process(
        scan_shape=(503,),
        frame_shape=(4, 5),
        data_chunks=(10, 4, 5),
        frame_rate_hz=4000,
        hold_at=0,
        **layout,
    )
    with h5py.File(process.path, "r", libver="latest", swmr=True) as f:
        source = ChunkSource({"data": f["/entry/data/data"]}, 10, f["/entry/finished"])
        process.go()
        spans = []
        for item in source:
            for k, index in enumerate(range(item.index, item.stop)):
                np.testing.assert_array_equal(
                    item["data"][k], frame_values(index, (4, 5), "uint16")
                )
            spans.append((item.index, item.stop))
    assert process.wait() == 0
    assert spans == [(s, min(s + 10, 503)) for s in range(0, 503, 10)]


def test_an_aborted_scan_delivers_only_the_chunks_written(simulated_writer, fake_clock):
    # Pre-sized, finished after 7 of 20 frames: chunks 2 and 3 were never written. Without
    # keys the length written is unknown inside chunk 1, which is delivered whole (as swmr_tools).
    writer = simulated_writer(scan_shape=(20,), frame_shape=(), data_chunks=(5,), presized=True)
    writer.append(7)
    writer.flush_keys()
    writer.finish()
    items = list(source_for(writer, fake_clock))
    assert [(i.index, i.stop) for i in items] == [(0, 5), (5, 10)]


def _early_allocated(f, finished_value):
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    data = f.create_dataset("d", shape=(20, 2), chunks=(5, 2), dtype="i4", dcpl=dcpl)
    done = f.create_dataset("done", data=np.full(1, finished_value, "i4"), chunks=(1,))
    f.swmr_mode = True
    data[0:2] = [[1, 1], [2, 2]]
    data.id.flush()
    return data, done


def test_early_allocated_chunks_wait_for_the_finished_flag(tmp_path, fake_clock):
    with h5py.File(tmp_path / "early.h5", "w", libver="latest") as f:
        data, done = _early_allocated(f, finished_value=0)
        with pytest.raises(ValueError, match=r"early allocation.*finished dataset"):
            ChunkSource({"d": data})
        source = ChunkSource({"d": data}, 1, done, clock=fake_clock, sleep=fake_clock.sleep)
        assert source.kf.poll() == -1  # every chunk exists, none is known written
        data[2:20] = np.arange(36).reshape(18, 2)
        done[0] = 1
        f.flush()
        assert [(i.index, i.stop) for i in source] == [(0, 5), (5, 10), (10, 15), (15, 20)]


def test_a_file_opened_without_swmr_is_read_whole_without_waiting(tmp_path, fake_clock):
    with h5py.File(tmp_path / "static.h5", "w") as f:
        f.create_dataset("d", data=np.arange(10), chunks=(4,), maxshape=(None,))
    with h5py.File(tmp_path / "static.h5", "r") as f:
        source = ChunkSource({"d": f["d"]}, 5, clock=fake_clock, sleep=fake_clock.sleep)
        items = list(source)
    assert [(i.index, i.stop) for i in items] == [(0, 4), (4, 8), (8, 10)]
    assert fake_clock() < 5  # not the idle timeout: nothing can be writing this file


def test_the_last_chunk_is_delivered_once_the_writer_has_closed_the_file(tmp_path, fake_clock):
    # No finished flag (as swmr_tools' own test_mock_scan): the writer's close clears the
    # superblock's write flags, which shows it is done with its last chunk.
    path = tmp_path / "closed.h5"
    with h5py.File(path, "w", libver="latest") as f:
        data = f.create_dataset("d", shape=(0, 2), maxshape=(None, 2), chunks=(4, 2), dtype="i4")
        f.swmr_mode = True
        data.resize(10, axis=0)
        data[:] = np.arange(20).reshape(10, 2)
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        source = ChunkSource({"d": f["d"]}, 1, clock=fake_clock, sleep=fake_clock.sleep)
        items = list(source)
    assert [(item.index, item.stop) for item in items] == [(0, 4), (4, 8), (8, 10)]
    np.testing.assert_array_equal(items[-1]["d"], [[16, 17], [18, 19]])
