"""DatasetSink: a live dataset's chunks written raw, direct or decoded, whole or in parts."""

from __future__ import annotations

import h5py
import hdf5plugin
import numpy as np
import pytest
from hdmf.data_utils import DataChunk

from h5live import LiveDataChunkIterator
from h5live._iterate.iterator import SourceChunk
from h5live._write.sink import IN_FLIGHT_BYTES, DatasetSink, split_rows
from h5live.testing import frame_values

FRAME = (16, 32)
FRAME_SLICES = (slice(0, 16), slice(0, 32))


@pytest.mark.parametrize(
    ("rows", "edge", "parts"),
    [
        ((0, 16), None, [(0, 16)]),
        ((3, 16), None, [(3, 8), (8, 16)]),
        ((3, 21), None, [(3, 8), (8, 16), (16, 21)]),
        ((3, 6), None, [(3, 6)]),
        ((16, 21), 21, [(16, 21)]),  # ends at the source's extent: a whole (edge) chunk
        ((8, 8), None, []),
    ],
    ids=["whole", "head", "head-whole-tail", "inside-one", "edge", "empty"],
)
def test_split_rows_cuts_where_chunks_start(rows, edge, parts):
    selection = (slice(*rows), slice(0, 4))
    got = split_rows(selection, 8, edge)
    assert [(p[0].start, p[0].stop) for p in got] == parts
    assert all(p[1] == slice(0, 4) for p in got)


def source_file(path, frames, compression):
    data = np.stack([frame_values(i, FRAME, "uint16") for i in range(frames)])
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset(
            "/entry/data/data",
            data=data,
            chunks=(4, *FRAME),
            maxshape=(None, *FRAME),
            **(hdf5plugin.Zstd() if compression else {}),
        )
        f.create_dataset("/entry/keys/key_0", data=np.ones(frames, "i4"), maxshape=(None,))
        f.create_dataset("/entry/finished", data=1)
    return data


class CountingSink(DatasetSink):
    """A sink that counts its writes through h5py assignment (HDF5 merging parts of chunks)."""

    assigned = 0

    def _assign(self, selection, data):
        self.assigned += 1
        return super()._assign(selection, data)


@pytest.mark.parametrize(
    ("stored", "compression", "workers", "how"),
    [
        (True, True, None, "raw"),
        (True, False, None, "direct"),
        (False, True, 0, "decoded: filters differ"),
        (False, True, 2, "parallel (2 workers): filters differ"),
    ],
    ids=["zstd-to-zstd-raw", "zstd-to-plain-direct", "plain-to-zstd-decoded", "plain-to-zstd-pool"],
)
def test_chunks_written_in_parts_and_whole_give_the_source(
    tmp_path, stored, compression, workers, how
):
    data = source_file(tmp_path / "s.h5", 26, stored)
    with (
        h5py.File(tmp_path / "s.h5", "r", libver="latest", swmr=True) as f,
        h5py.File(tmp_path / "d.h5", "w", libver="latest") as out,
    ):
        it = LiveDataChunkIterator(f["/entry/data/data"], chunk_shape=(4, *FRAME))
        made = out.create_dataset(
            "d",
            shape=(0, *FRAME),
            maxshape=(None, *FRAME),
            chunks=(4, *FRAME),
            dtype="uint16",
            **(hdf5plugin.Zstd() if compression else {}),
        )
        sink = CountingSink(made, it.dataset, workers=workers)
        assert sink.how.startswith(how)
        # releases for the latency bound: inside a chunk, across chunks, whole, the edge
        written = []
        for lo, hi in [(0, 3), (3, 5), (5, 13), (13, 16), (16, 24), (24, 26)]:
            it._await((slice(lo, hi), *FRAME_SLICES))
            chunk = SourceChunk(it, (slice(lo, hi), *FRAME_SLICES))
            sink.write(chunk)
            sink.flush()
            assert made.shape[0] == hi  # the extent grows to what is written, no further
            np.testing.assert_array_equal(made[:hi], data[:hi])
            written += sink.take_written()
        sink.close()
        it.close()
    # the pool encodes the parts of chunks again from the source: HDF5 never merges one
    assert (sink.assigned == 0) == how.startswith("parallel")
    # every row written once, in order: what a caller marks
    rows = [(s[0].start, s[0].stop) for s in written]
    assert rows == sorted(rows)
    assert [r for a, b in rows for r in range(a, b)] == list(range(26))
    with h5py.File(tmp_path / "d.h5", "r") as f:
        np.testing.assert_array_equal(f["d"][...], data)


def test_a_read_or_plain_chunk_is_decoded_and_counted(tmp_path):
    data = source_file(tmp_path / "s.h5", 8, True)
    with h5py.File(tmp_path / "d.h5", "w", libver="latest") as out:
        made = out.create_dataset(
            "d", shape=(0, *FRAME), maxshape=(None, *FRAME), chunks=(4, *FRAME), dtype="uint16"
        )
        sink = DatasetSink(made)  # no source: decoded chunks, written directly
        assert sink.how == "direct"
        written = sink.write(DataChunk(data=data[:6], selection=(slice(0, 6), *FRAME_SLICES)))
        assert written == data[:6].nbytes == sink.bytes_written
        np.testing.assert_array_equal(made[...], data[:6])
        assert "DatasetSink" in repr(sink)


@pytest.mark.parametrize("workers", [1, 3])
def test_the_pool_writes_tiles_and_edge_chunks_in_order_and_only_then_counts_them(
    tmp_path, workers
):
    """Chunks smaller than a frame (edge chunks where the frame does not divide): each chunk
    goes to the pool; a selection counts as written once its last chunk is on disk."""
    frames = 24
    data = np.stack([frame_values(i, FRAME, "uint16") for i in range(frames)])
    with h5py.File(tmp_path / "d.h5", "w", libver="latest") as out:
        made = out.create_dataset(
            "d",
            shape=(0, *FRAME),
            maxshape=(None, *FRAME),
            chunks=(4, 8, 12),
            dtype="uint16",
            compression="gzip",
            shuffle=True,
        )
        sink = DatasetSink(made, workers=workers)
        assert sink.how.startswith(f"parallel ({workers} workers)")
        taken = []
        for lo in range(0, frames, 8):
            sink.write(
                DataChunk(data=data[lo : lo + 8], selection=(slice(lo, lo + 8), *FRAME_SLICES))
            )
            taken += sink.take_written()
            assert made.shape[0] <= lo + 8  # never beyond what was handed over
        sink.close()
        taken += sink.take_written()
        assert [(s[0].start, s[0].stop) for s in taken] == [(0, 8), (8, 16), (16, 24)]
        assert sink.bytes_written == made.id.get_storage_size()
    with h5py.File(tmp_path / "d.h5", "r") as f:
        np.testing.assert_array_equal(f["d"][...], data)
        assert f["d"].compression == "gzip"
        assert f["d"].shuffle


@pytest.mark.parametrize("workers", [-1, 1.5, "2", True])
def test_bad_workers_are_refused_naming_the_value_and_the_fix(tmp_path, workers):
    with h5py.File(tmp_path / "d.h5", "w", libver="latest") as out:
        made = out.create_dataset("d", shape=(0, 4), maxshape=(None, 4), chunks=(2, 4), dtype="u2")
        with pytest.raises(ValueError, match=r"workers=.*'/d'.*Fix: pass workers=None"):
            DatasetSink(made, workers=workers)


def test_the_pools_memory_is_bounded_however_many_cores(tmp_path):
    """Chunks in flight: two per worker, but no more than IN_FLIGHT_BYTES of them (a 64-core
    machine with 10 MB chunks would otherwise hold 128 of them), and at least two."""
    with h5py.File(tmp_path / "d.h5", "w", libver="latest") as out:
        # chunks of 10 MiB, 2 KiB and 512 MiB
        made = [
            out.create_dataset(
                f"d{k}",
                shape=(0, *chunk[1:]),
                maxshape=(None, *chunk[1:]),
                chunks=chunk,
                dtype="uint16",
                compression="gzip",
            )
            for k, chunk in enumerate([(1, 2560, 2048), (16, 64), (1, 16384, 16384)])
        ]
        sinks = [DatasetSink(d, workers=64) for d in made]
        try:
            assert [s._pool.max_in_flight for s in sinks] == [IN_FLIGHT_BYTES // (10 << 20), 128, 2]
        finally:
            for sink in sinks:
                sink.close()
