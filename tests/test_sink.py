"""DatasetSink: a live dataset's chunks written raw, direct or decoded, whole or in parts."""

from __future__ import annotations

import h5py
import hdf5plugin
import numpy as np
import pytest
from hdmf.data_utils import DataChunk

from h5live import LiveDataChunkIterator
from h5live._iterate.iterator import SourceChunk
from h5live._write.sink import DatasetSink, split_rows
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


@pytest.mark.parametrize(
    ("stored", "compression", "how"),
    [(True, True, "raw"), (True, False, "direct"), (False, True, "decoded: filters differ")],
    ids=["zstd-to-zstd-raw", "zstd-to-plain-direct", "plain-to-zstd-decoded"],
)
def test_chunks_written_in_parts_and_whole_give_the_source(tmp_path, stored, compression, how):
    data = source_file(tmp_path / "s.h5", 22, stored)
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
        sink = DatasetSink.for_iterator(made, it)
        assert sink.how.startswith(how)
        # releases for the latency bound: inside a chunk, across chunks, whole, the edge
        for lo, hi in [(0, 3), (3, 5), (5, 13), (13, 16), (16, 22)]:
            it._await((slice(lo, hi), *FRAME_SLICES))
            chunk = SourceChunk(it, (slice(lo, hi), *FRAME_SLICES))
            sink.write(chunk)
            assert made.shape[0] == hi  # the extent grows to what is written, no further
            np.testing.assert_array_equal(made[:hi], data[:hi])
        it.close()
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
