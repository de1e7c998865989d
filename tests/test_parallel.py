"""ParallelChunkWriter: chunks encoded by a pool of threads, written in order by the caller."""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import tracemalloc
from typing import Any

import h5py
import hdf5plugin
import numpy as np
import pytest

from h5live._read.filters import filter_pipeline
from h5live._write.encode import ChunkEncoder
from h5live._write.parallel import ENCODE_NICENESS, ParallelChunkWriter, default_workers
from h5live.errors import OutputError

SHAPE = (37, 50, 40)  # edge chunks on every axis
CHUNKS = (4, 32, 32)
CODECS: dict[str, dict[str, Any]] = {
    "gzip-1": {"compression": "gzip", "compression_opts": 1},
    "shuffle+gzip+fletcher32": {"compression": "gzip", "shuffle": True, "fletcher32": True},
    "zstd-3": dict(hdf5plugin.Zstd(clevel=3)),
    "lz4": dict(hdf5plugin.LZ4()),
    "blosc": dict(hdf5plugin.Blosc()),
    "blosc2": dict(hdf5plugin.Blosc2()),
    "bitshuffle-lz4": dict(hdf5plugin.Bitshuffle()),
    "bitshuffle-zstd": dict(hdf5plugin.Bitshuffle(cname="zstd")),
}


def source(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(0).poisson(5, shape).astype("uint16")


def chunk_offsets(shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[tuple[int, ...]]:
    grids = np.meshgrid(*(range(0, n, c) for n, c in zip(shape, chunks, strict=True)))
    return sorted(zip(*(g.ravel().tolist() for g in grids), strict=True))


def part(data: np.ndarray, offset: tuple[int, ...], chunks: tuple[int, ...]) -> np.ndarray:
    return data[tuple(slice(o, o + c) for o, c in zip(offset, chunks, strict=True))]


def stored_chunks(dataset: Any) -> dict[tuple[int, ...], tuple[int, bytes]]:
    """Every stored chunk: offset -> (filter mask, bytes)."""
    found = {}
    for k in range(dataset.id.get_num_chunks()):
        offset = tuple(dataset.id.get_chunk_info(k).chunk_offset)
        found[offset] = dataset.id.read_direct_chunk(offset)
    return found


def new_dataset(f: Any, name: str, options: dict[str, Any], **create: Any) -> Any:
    create = {"shape": SHAPE, "dtype": "uint16", "chunks": CHUNKS, **create}
    return f.create_dataset(name, **create, **options)


def write_all(writer: ParallelChunkWriter, data: np.ndarray, chunks: tuple[int, ...]) -> None:
    """Submit every chunk of ``data`` in C order, then wait for them all."""
    for offset in chunk_offsets(data.shape, chunks):
        writer.submit(offset, part(data, offset, chunks))
    writer.flush()


@pytest.mark.parametrize("name", CODECS)
def test_parallel_write_reads_back_as_a_plain_h5py_write(tmp_path, name):
    options, data = CODECS[name], source()
    with h5py.File(tmp_path / "out.h5", "w") as f:
        reference = new_dataset(f, "h5py", options)
        reference[...] = data
        dataset = new_dataset(f, "parallel", options, shape=(0, *SHAPE[1:]), maxshape=SHAPE)
        with ParallelChunkWriter(dataset, workers=2) as writer:
            for offset in chunk_offsets(SHAPE, CHUNKS):
                writer.submit(offset, part(data, offset, CHUNKS))
        assert filter_pipeline(dataset) == filter_pipeline(reference)
        theirs, ours = stored_chunks(reference), stored_chunks(dataset)
        assert ours.keys() == theirs.keys()
        if name != "blosc2":  # its frame headers differ by c-blosc2 version (test_encode)
            assert ours == theirs  # same masks, same bytes
    with h5py.File(tmp_path / "out.h5", "r") as f:  # closed and reopened: what readers see
        assert f["parallel"].shape == SHAPE
        assert np.array_equal(f["parallel"][...], data)


def test_incompressible_chunks_get_the_mask_hdf5_gives_them(tmp_path):
    data = source()
    noisy = [(4, 0, 0), (12, 0, 0), (28, 0, 0)]  # whole chunks (edge ones are mostly padding)
    for offset in noisy:
        region = tuple(slice(o, o + c) for o, c in zip(offset, CHUNKS, strict=True))
        data[region] = np.random.default_rng(1).integers(0, 2**16, data[region].shape)
    options = {"shuffle": True, **hdf5plugin.Blosc()}
    with h5py.File(tmp_path / "out.h5", "w") as f:
        reference = new_dataset(f, "h5py", options)
        reference[...] = data
        dataset = new_dataset(f, "parallel", options)
        with ParallelChunkWriter(dataset, workers=2) as writer:
            for offset in chunk_offsets(SHAPE, CHUNKS):
                writer.submit(offset, part(data, offset, CHUNKS))
        masks = {offset: mask for offset, (mask, _) in stored_chunks(dataset).items()}
        assert {offset for offset, mask in masks.items() if mask} == set(noisy)
        assert set(masks.values()) == {0, 0b10}  # blosc (filter 1) skipped
        assert stored_chunks(dataset) == stored_chunks(reference)
        assert np.array_equal(dataset[...], data)


class Recorder:
    """A dataset whose direct chunk writes are recorded and then done."""

    def __init__(self, dataset: Any, fail_at: int | None = None) -> None:
        self.dataset, self.fail_at = dataset, fail_at
        self.shape, self.name, self.file = dataset.shape, dataset.name, dataset.file
        self.written: list[tuple[int, ...]] = []
        self.id = self

    def extend(self, shape: tuple[int, ...]) -> None:
        self.dataset.id.extend(shape)

    def write_direct_chunk(self, offset: tuple[int, ...], data: Any, mask: int) -> None:
        if len(self.written) == self.fail_at:
            raise OSError("No space left on device (simulated)")
        self.written.append(offset)
        self.dataset.id.write_direct_chunk(offset, data, mask)


class GatedEncoder(ChunkEncoder):
    """An encoder whose encode of chunk ``k`` (its first value) waits for ``gates[k]`` and
    raises on ``fail``."""

    def __init__(self, real: ChunkEncoder, count: int, fail: int | None = None) -> None:
        super().__init__(
            real._stages,
            chunks=real.chunks,
            dtype=real.dtype,
            name=real.name,
            filename=real.filename,
        )
        self.gates = [threading.Event() for _ in range(count)]
        self.fail = fail
        self.running = 0
        self.peak_running = 0
        self._lock = threading.Lock()

    def encode(self, chunk: np.ndarray) -> tuple[int, Any]:
        index = int(chunk.flat[0])
        with self._lock:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
        try:
            self.gates[index].wait()
            if index == self.fail:
                raise ZeroDivisionError(f"encoder bug on chunk {index}")
            return super().encode(chunk)
        finally:
            with self._lock:
                self.running -= 1


def frames_of(count: int) -> np.ndarray:
    """``count`` chunks of 4 frames, every value of chunk ``k`` equal to ``k``."""
    return np.repeat(np.arange(count, dtype="uint16"), 4 * 8 * 8).reshape(4 * count, 8, 8)


def gated(tmp_path: Any, count: int, fail: int | None = None, **options: Any) -> Any:
    f = h5py.File(tmp_path / "gated.h5", "w")
    dataset = f.create_dataset(
        "data", shape=(0, 8, 8), maxshape=(None, 8, 8), dtype="uint16", chunks=(4, 8, 8), **options
    )
    encoder = GatedEncoder(ChunkEncoder.for_dataset(dataset), count, fail)
    return f, Recorder(dataset), encoder


def test_chunks_are_written_in_submission_order_whatever_order_they_encode_in(tmp_path):
    f, dataset, encoder = gated(tmp_path, 4, compression="gzip")
    frames = frames_of(4)
    with f, ParallelChunkWriter(dataset, workers=4, encoder=encoder) as writer:
        for k in range(4):
            assert writer.submit((4 * k, 0, 0), frames[4 * k : 4 * k + 4]) == 0
        for k in (3, 2, 1):  # the last ones finish first
            encoder.gates[k].set()
        concurrent.futures.wait([item.future for item in list(writer._pending)[1:]])
        assert writer.write_ready() == 0  # the first is not done: nothing may be written
        assert dataset.written == []
        encoder.gates[0].set()
        assert writer.flush() == 4
        assert dataset.written == [(0, 0, 0), (4, 0, 0), (8, 0, 0), (12, 0, 0)]
        assert writer.flush() == 0  # idempotent
        assert np.array_equal(dataset.dataset[...], frames)


def test_in_flight_chunks_never_exceed_the_bound(tmp_path):
    f, dataset, encoder = gated(tmp_path, 12)
    frames = frames_of(12)
    with f, ParallelChunkWriter(dataset, workers=2, max_in_flight=3, encoder=encoder) as writer:
        for k in range(3):  # the first chunk holds: the bound is reached and kept
            writer.submit((4 * k, 0, 0), frames[4 * k : 4 * k + 4])
            assert writer.in_flight == k + 1
        assert encoder.peak_running == 2  # two workers, the third chunk waits in the queue
        for k in range(3, 12):
            encoder.gates[k - 3].set()  # submit must write the oldest to make room
            writer.submit((4 * k, 0, 0), frames[4 * k : 4 * k + 4])
            assert writer.in_flight <= 3
        for gate in encoder.gates:
            gate.set()
    assert writer.stats.peak_in_flight == 3
    assert writer.stats.chunks == 12


def test_memory_stays_bounded_over_a_long_run(tmp_path):
    chunk = (8, 64, 64)  # 64 KiB of uint16 per chunk, 300 chunks: 19.7 MB written
    frames = np.random.default_rng(2).poisson(5, (300 * 8, 64, 64)).astype("uint16")
    with h5py.File(tmp_path / "long.h5", "w") as f:
        dataset = f.create_dataset(
            "data",
            shape=(0, 64, 64),
            maxshape=(None, 64, 64),
            dtype="uint16",
            chunks=chunk,
            compression="gzip",
            compression_opts=1,
        )
        tracemalloc.start()
        try:
            with ParallelChunkWriter(dataset, workers=2, max_in_flight=4) as writer:
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                for k in range(300):
                    writer.submit((8 * k, 0, 0), frames[8 * k : 8 * k + 8])
                    assert writer.in_flight <= 4
                peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert np.array_equal(dataset[...], frames)
    # 4 chunks in flight and the one being handed over, with their encoded bytes (<= 640 KiB),
    # and zlib's deflate state in each worker (256 KiB): far below the 19.7 MB written
    assert peak < 1_300_000, peak


def test_a_worker_exception_fails_cleanly_and_nothing_after_it_is_written(tmp_path):
    f, dataset, encoder = gated(tmp_path, 6, fail=2, compression="gzip")
    frames = frames_of(6)
    for gate in encoder.gates:
        gate.set()
    with f:
        writer = ParallelChunkWriter(dataset, workers=2, max_in_flight=6, encoder=encoder)
        with pytest.raises(OutputError) as caught, writer:
            write_all(writer, frames, (4, 8, 8))
        message = str(caught.value)
        assert "encoding the chunk at (8, 0, 0) of '/data' in" in message
        assert "ZeroDivisionError: encoder bug on chunk 2" in message
        assert "Fix: resume" in message
        assert isinstance(caught.value.__cause__, ZeroDivisionError)
        assert dataset.written == [(0, 0, 0), (4, 0, 0)]
        assert dataset.dataset.shape == (8, 8, 8)  # extent: the written chunks only
        assert isinstance(writer.failed, ZeroDivisionError)
        with pytest.raises(OutputError, match=r"failed earlier.*nothing more is written"):
            writer.submit((24, 0, 0), frames[:4])
        assert writer._pool._shutdown
        writer.close()  # idempotent after a failure, raises nothing


def test_a_write_failure_fails_cleanly(tmp_path):
    with h5py.File(tmp_path / "w.h5", "w") as f:
        real = f.create_dataset("data", shape=(40, 8, 8), dtype="uint16", chunks=(4, 8, 8))
        dataset = Recorder(real, fail_at=3)
        frames = frames_of(10)
        writer = ParallelChunkWriter(dataset, workers=2, encoder=ChunkEncoder.for_dataset(real))
        with pytest.raises(OutputError, match=r"writing the chunk at \(12, 0, 0\).*No space"):
            write_all(writer, frames, (4, 8, 8))
        writer.close()
        assert dataset.written == [(0, 0, 0), (4, 0, 0), (8, 0, 0)]


def test_before_write_errors_pass_as_they_are_and_after_write_sees_each_chunk(tmp_path):
    seen: list[tuple[Any, ...]] = []

    def space(nbytes: int) -> None:
        if len(seen) == 2:
            raise OutputError("not enough free space (simulated)")

    with h5py.File(tmp_path / "w.h5", "w") as f:
        dataset = f.create_dataset(
            "chunked", shape=(0, 8, 8), maxshape=(None, 8, 8), dtype="u2", chunks=(4, 8, 8)
        )
        after = lambda offset, shape, nbytes: seen.append((offset, shape, dataset.shape))  # noqa: E731
        writer = ParallelChunkWriter(dataset, workers=1, before_write=space, after_write=after)
        with writer:
            writer.submit((0, 0, 0), frames_of(1))
            writer.submit((4, 0, 0), frames_of(2)[4:7])  # an edge chunk of 3 frames
            writer.flush()
            writer.submit((8, 0, 0), frames_of(1))
            with pytest.raises(OutputError, match="not enough free space") as caught:
                writer.flush()
        assert caught.value.__cause__ is None
    assert seen == [
        ((0, 0, 0), (4, 8, 8), (4, 8, 8)),
        ((4, 0, 0), (3, 8, 8), (7, 8, 8)),  # grown to its data, not to the whole chunk
    ]


def test_abort_drops_chunks_in_flight_without_waiting(tmp_path):
    f, dataset, encoder = gated(tmp_path, 3)
    frames = frames_of(3)
    with f:
        writer = ParallelChunkWriter(dataset, workers=1, max_in_flight=3, encoder=encoder)
        for k in range(3):
            writer.submit((4 * k, 0, 0), frames[4 * k : 4 * k + 4])
        writer.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None)  # Ctrl-C in a with
        assert writer.in_flight == 0
        assert dataset.written == []
        for gate in encoder.gates:  # the running encode ends in its own time, unwritten
            gate.set()
        writer.close()
        assert dataset.written == []


def test_offsets_and_options_are_checked(tmp_path):
    with h5py.File(tmp_path / "w.h5", "w") as f:
        dataset = f.create_dataset("data", shape=(8, 8, 8), dtype="u2", chunks=(4, 8, 8))
        with pytest.raises(ValueError, match=r"workers=0 .*at least 1.*Fix:"):
            ParallelChunkWriter(dataset, workers=0)
        with ParallelChunkWriter(dataset, workers=1) as writer:
            with pytest.raises(ValueError, match=r"offset \(2, 0, 0\) is not the start.*Fix:"):
                writer.submit((2, 0, 0), frames_of(1))
            with pytest.raises(ValueError, match=r"does not fit a chunk"):
                writer.submit((0, 0, 0), frames_of(2))
            assert repr(writer) == (
                "<ParallelChunkWriter '/data' in 'w.h5' workers=1 in_flight=0/2 written=0 open>"
            )
        with pytest.raises(ValueError, match="closed"):
            writer.submit((0, 0, 0), frames_of(1))
        writer.close()


def test_default_workers_are_the_cores_this_process_may_use():
    import os

    assert default_workers() == len(os.sched_getaffinity(0))


class NiceRecorder(ChunkEncoder):
    """An encoder that records the niceness of the thread encoding each chunk."""

    def __init__(self, real: ChunkEncoder) -> None:
        super().__init__(real._stages, chunks=real.chunks, dtype=real.dtype)
        self.niceness: list[int] = []

    def encode(self, chunk: np.ndarray) -> tuple[int, Any]:
        self.niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return super().encode(chunk)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority: Linux")
def test_encoding_threads_yield_the_cpu_to_the_rest_of_the_machine(tmp_path):
    """A writer sharing the machine keeps its speed: the encoders run nicer than the caller."""
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with h5py.File(tmp_path / "nice.h5", "w") as f:
        dataset = new_dataset(f, "d", CODECS["gzip-1"])
        encoder = NiceRecorder(ChunkEncoder.for_dataset(dataset))
        with ParallelChunkWriter(dataset, workers=2, encoder=encoder) as writer:
            write_all(writer, source(), CHUNKS)
    assert encoder.niceness
    assert set(encoder.niceness) == {min(19, caller + ENCODE_NICENESS)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller  # unchanged
