"""Compressed live outputs written through the pool of encoding threads: copy_live, to_nwb,
LiveNWBHDF5IO, the CLI. The output is what a plain h5py write would store, marked only once on
disk, failed cleanly and resumable when a worker fails, and stopped cleanly by Ctrl-C."""

from __future__ import annotations

import datetime
import json
import re
import signal
import tracemalloc
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (plain h5py reads the plugin filters)
import numpy as np
import pynwb
import pynwb.image
import pytest
from hdmf.backends.hdf5.h5_utils import H5DataIO

from h5live import LiveDataChunkIterator, LiveNWBHDF5IO, copy_live, to_nwb
from h5live._read.filters import filter_options, filter_pipeline
from h5live._write.encode import ChunkEncoder
from h5live.errors import OutputError
from h5live.testing import frame_values
from helpers import assert_valid_nwb, ended, output_status, start_converter, wait_for_frames

DATA = "/entry/data/data"
NWB_DATA = "/acquisition/detector/data"
FRAME = (24, 20)
POOL = re.compile(r"parallel \((\d+) workers\): ")


def expected(n: int, frame: tuple[int, ...] = FRAME) -> np.ndarray:
    return np.stack([frame_values(i, frame, "uint16") for i in range(n)])


def plain_h5py_pipeline(tmp_path: Path, compression: str, chunks: tuple[int, ...]) -> object:
    """The filter pipeline a plain h5py write of these options records."""
    with h5py.File(tmp_path / "reference.h5", "w") as f:
        made = f.create_dataset(
            "d",
            shape=(0, *chunks[1:]),
            maxshape=(None, *chunks[1:]),
            chunks=chunks,
            dtype="uint16",
            **filter_options(compression),
        )
        return filter_pipeline(made)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "lz4", "blosc", "blosc2", "bitshuffle"])
def test_every_codec_through_the_pool_reads_back_as_the_source(
    simulated_writer, tmp_path, compression
):
    writer = simulated_writer(scan_shape=(61,), frame_shape=FRAME)  # 61: a chunk in parts
    writer.run()
    writer.close()
    chunks = (8, *FRAME)
    result = copy_live(
        writer.path, tmp_path / "copy.h5", compression=compression, chunk_shape=chunks, workers=2
    )
    assert POOL.match(result.chunk_copy[DATA]), result.chunk_copy
    assert (result.state, result.frames_complete) == ("complete", 61)
    with h5py.File(tmp_path / "copy.h5", "r") as f:  # plain h5py, hdf5plugin imported
        copy = f[DATA]
        np.testing.assert_array_equal(copy[...], expected(61))
        assert filter_pipeline(copy) == plain_h5py_pipeline(tmp_path, compression, chunks)
        offsets = [
            copy.id.get_chunk_info(k).chunk_offset[0] for k in range(copy.id.get_num_chunks())
        ]
        assert sorted(offsets) == list(range(0, 61, 8))
        for offset in offsets:
            mask, _ = copy.id.read_direct_chunk((offset, 0, 0))
            assert mask == 0  # every filter applied


def test_workers_zero_is_hdf5s_pipeline_and_gives_the_same_data(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(40,), frame_shape=FRAME)
    writer.run()
    writer.close()
    runs = {}
    for workers in (0, 1, 3):
        out = tmp_path / f"copy{workers}.h5"
        runs[workers] = copy_live(
            writer.path, out, compression="gzip", chunk_shape=(8, *FRAME), workers=workers
        )
        with h5py.File(out, "r") as f:
            np.testing.assert_array_equal(f[DATA][...], expected(40))
    assert runs[0].chunk_copy[DATA].startswith("decoded: ")
    assert [POOL.match(runs[n].chunk_copy[DATA]).group(1) for n in (1, 3)] == ["1", "3"]
    with pytest.raises(ValueError, match=r"workers=-2 .*Fix: pass workers=None"):
        copy_live(writer.path, tmp_path / "bad.h5", compression="gzip", workers=-2)
    assert not (tmp_path / "bad.h5").exists()  # refused before the destination is touched


def test_to_nwb_and_its_live_io_encode_through_the_pool(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(50,), frame_shape=FRAME)
    writer.run()
    writer.close()
    result = to_nwb(
        writer.path,
        tmp_path / "out.nwb",
        rate=100.0,
        compression="gzip",
        compression_opts=1,
        workers=2,
    )
    assert POOL.match(result.chunk_copy[NWB_DATA]).group(1) == "2", result.chunk_copy
    one_core = to_nwb(writer.path, tmp_path / "hdf5.nwb", rate=100.0, compression="gzip", workers=0)
    assert one_core.chunk_copy[NWB_DATA].startswith("decoded: ")
    # the same through the IO class any pynwb script (and neuroconv) writes with
    frames = LiveDataChunkIterator(writer.path, DATA, chunk_shape=(8, *FRAME), timeout=5)
    nwbfile = pynwb.NWBFile("d", "i", datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    series = pynwb.image.ImageSeries(
        name="detector", data=H5DataIO(frames, compression="gzip"), unit="n", rate=100.0
    )
    nwbfile.add_acquisition(series)
    with LiveNWBHDF5IO(tmp_path / "io.nwb", "w", workers=1) as io:
        io.write(nwbfile)
        assert POOL.match(io.live_write.chunk_copy[NWB_DATA]).group(1) == "1"
    frames.close()
    for name in ("out.nwb", "hdf5.nwb", "io.nwb"):
        with h5py.File(tmp_path / name, "r") as f:
            np.testing.assert_array_equal(f[NWB_DATA][...], expected(50))
            assert f[NWB_DATA].compression == "gzip"
    assert_valid_nwb(tmp_path / "out.nwb")
    assert pynwb.validate(path=str(tmp_path / "io.nwb")) == []


def test_memory_stays_bounded_over_a_long_compressed_copy(simulated_writer, tmp_path):
    """32 MB of frames through the pool: at most a buffer and a few chunks in memory at once."""
    frame = (128, 64)
    writer = simulated_writer(scan_shape=(2000,), frame_shape=frame)
    writer.run()
    writer.close()
    tracemalloc.start()
    try:
        result = copy_live(
            writer.path,
            tmp_path / "copy.h5",
            compression="gzip",
            chunk_shape=(8, *frame),  # 128 KiB
            buffer_shape=(64, *frame),  # 1 MiB
            workers=2,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert POOL.match(result.chunk_copy[DATA])
    assert result.frames_complete == 2000
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB for 32 MiB of frames"
    with h5py.File(tmp_path / "copy.h5", "r") as f:
        np.testing.assert_array_equal(f[DATA][-8:], expected(2000, frame)[-8:])


def failing_encode(frames: np.ndarray) -> object:
    """ChunkEncoder.encode, failing (in its worker thread) on the chunk holding ``frames``."""
    encode = ChunkEncoder.encode

    def encode_or_fail(encoder: ChunkEncoder, chunk: np.ndarray) -> object:
        if np.array_equal(chunk, frames):
            raise MemoryError("injected: the encoder ran out of memory")
        return encode(encoder, chunk)

    return encode_or_fail


def test_a_worker_failure_marks_the_output_failed_and_resume_completes_it(
    simulated_writer, tmp_path, monkeypatch
):
    writer = simulated_writer(scan_shape=(80,), frame_shape=FRAME)
    writer.run()
    writer.close()
    copy = tmp_path / "copy.h5"
    options = {"compression": "zstd", "chunk_shape": (4, *FRAME), "buffer_shape": (8, *FRAME)}
    monkeypatch.setattr(ChunkEncoder, "encode", failing_encode(expected(28)[24:]))
    with pytest.raises(OutputError, match=r"encoding the chunk at \(24, 0, 0\).*resume") as raised:
        copy_live(writer.path, copy, workers=2, **options)
    assert "MemoryError" in str(raised.value)
    left = output_status(copy)
    assert left["state"] == "failed"
    assert left["keys"] == left["frames"] == left["data"] == 24  # the chunks before it
    with h5py.File(copy, "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(24))
    monkeypatch.undo()
    result = copy_live(writer.path, copy, resume=True, workers=2, **options)
    assert (result.state, result.frames_complete, result.resumed_from) == ("complete", 80, 24)
    with h5py.File(copy, "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(80))


@pytest.mark.live
def test_chunks_in_the_pool_are_written_before_the_writer_is_waited_for(
    writer_process, spawn, tmp_path
):
    """Whole buffers only (no latency releases): the writer holds at frame 32, and the frames
    before it (the last of them handed to the pool) are on disk and marked while it holds."""
    process = writer_process(scan_shape=(64,), frame_shape=FRAME, frame_rate_hz=500, hold_at=32)
    copy = tmp_path / "copy.h5"
    shapes = ("--chunk-shape", "4", *map(str, FRAME), "--buffer-shape", "16", *map(str, FRAME))
    options = ("--compression", "gzip", "--workers", "1", "--max-latency", "none", *shapes)
    converter = start_converter(spawn, "copy", process.path, copy, *options, "--timeout", "60")
    wait_for_frames(copy, 32, converter)  # stalls (and fails) if the pool kept them
    held = output_status(copy)
    assert held["state"] == "writing"  # not written at the idle timeout's end
    assert held["keys"] == held["frames"] == held["data"] == 32
    process.go()
    code, _, err = ended(converter)
    assert code == 0, err
    assert process.wait() == 0
    with h5py.File(copy, "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(64))


@pytest.mark.live
def test_ctrl_c_stops_a_compressed_copy_and_it_resumes(writer_process, spawn, tmp_path):
    process = writer_process(
        scan_shape=(400,), frame_shape=FRAME, frame_rate_hz=400, hold_at=(0, 200)
    )
    copy = tmp_path / "copy.h5"
    options = ("--compression", "zstd", "--workers", "2", "--chunk-shape", "8", *map(str, FRAME))
    converter = start_converter(spawn, "copy", process.path, copy, *options)
    process.go()  # the writer pauses again before frame 200
    wait_for_frames(copy, 40, converter)
    converter.send_signal(signal.SIGINT)
    code, _, err = ended(converter)
    assert code == 130, err
    left = output_status(copy)
    assert left["state"] == "interrupted"
    assert left["keys"] == left["frames"] == left["data"] <= 200
    process.go()
    resumed = start_converter(spawn, "copy", process.path, copy, *options, "--resume")
    code, out, err = ended(resumed)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["chunk_copy"][DATA].startswith("parallel (2 workers)")
    assert process.wait() == 0
    assert output_status(copy)["state"] == "complete"
    with h5py.File(copy, "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(400))
        assert f[DATA].id.get_create_plist().get_filter(0)[0] == 32015
