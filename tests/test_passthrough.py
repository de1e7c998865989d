"""Raw chunk passthrough: stored chunks of a live source copied without decoding."""

from __future__ import annotations

import re

import h5py
import hdf5plugin
import numpy as np
import pynwb
import pytest

from h5live import copy_live, to_nwb
from h5live._read.filters import filter_pipeline, source_compression
from h5live.testing import frame_values

DATA = "/entry/data/data"
FRAME = (128, 256)  # 64 KiB of uint16: the source's one-frame chunks are kept


def expected(n: int, frame: tuple[int, ...] = FRAME) -> np.ndarray:
    return np.stack([frame_values(i, frame, "uint16") for i in range(n)])


def stored(path: object, name: str = DATA) -> list[tuple[int, bytes]]:
    """(filter mask, bytes) of every stored chunk of a dataset, in order."""
    with h5py.File(path, "r") as f:
        dataset = f[name]
        return [
            dataset.id.read_direct_chunk(dataset.id.get_chunk_info(k).chunk_offset)
            for k in range(dataset.id.get_num_chunks())
        ]


@pytest.mark.live
@pytest.mark.parametrize("compression", ["bitshuffle", "zstd", "gzip"])
def test_compressed_frames_of_a_live_source_are_copied_raw(writer_process, tmp_path, compression):
    process = writer_process(
        scan_shape=(60,), frame_shape=FRAME, frame_rate_hz=300, compression=compression, hold_at=0
    )
    process.go()
    result = copy_live(process.path, tmp_path / "copy.h5", buffer_shape=(8, *FRAME))
    assert process.wait() == 0
    assert (result.frames_complete, result.state) == (60, "complete")
    assert result.chunk_copy == {DATA: "raw"}
    source_chunks = stored(process.path)
    assert stored(tmp_path / "copy.h5") == source_chunks  # the same bytes, chunk by chunk
    assert result.bytes_written == sum(len(data) for _, data in source_chunks)  # compressed
    with h5py.File(tmp_path / "copy.h5", "r") as f, h5py.File(process.path, "r") as s:
        assert f[DATA].chunks == s[DATA].chunks == (1, *FRAME)
        assert filter_pipeline(f[DATA]) == filter_pipeline(s[DATA])
        np.testing.assert_array_equal(f[DATA][...], expected(60))


def test_other_chunks_or_filters_are_decoded_and_say_why(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(24,), frame_shape=FRAME, compression="zstd")
    writer.run()
    writer.close()
    other_chunks = copy_live(writer.path, tmp_path / "a.h5", chunk_shape=(4, *FRAME))
    assert re.match(r"parallel \(\d+ workers\): chunk shapes differ", other_chunks.chunk_copy[DATA])
    one_core = copy_live(writer.path, tmp_path / "d.h5", chunk_shape=(4, *FRAME), workers=0)
    assert one_core.chunk_copy[DATA].startswith("decoded: chunk shapes differ")
    same_chunks = (1, *FRAME)
    other_filters = copy_live(
        writer.path, tmp_path / "b.h5", compression="gzip", chunk_shape=same_chunks
    )
    assert re.match(r"parallel \(\d+ workers\): filters differ", other_filters.chunk_copy[DATA])
    plain = copy_live(writer.path, tmp_path / "c.h5", compression=None, chunk_shape=same_chunks)
    assert plain.chunk_copy[DATA] == "direct"  # decoded, then written past the chunk cache
    for name in ("a.h5", "b.h5", "c.h5", "d.h5"):
        with h5py.File(tmp_path / name, "r") as f:
            np.testing.assert_array_equal(f[DATA][...], expected(24))


@pytest.mark.parametrize(
    ("chunks", "frames"), [((8, *FRAME), 60), ((1, 64, 256), 12), ((4, *FRAME), 12)]
)
def test_unfiltered_copies_write_whole_decoded_chunks_directly(
    simulated_writer, tmp_path, chunks, frames
):
    """Whole chunks of whole frames go in with write_direct_chunk; tiles of frames and the
    partial last chunk row (60 frames in chunks of 8) through h5py as usual."""
    writer = simulated_writer(scan_shape=(frames,), frame_shape=FRAME, compression="lz4")
    writer.run()
    writer.close()
    result = copy_live(writer.path, tmp_path / "copy.h5", compression=None, chunk_shape=chunks)
    assert result.chunk_copy == {DATA: "direct"}
    assert result.bytes_written == frames * FRAME[0] * FRAME[1] * 2
    with h5py.File(tmp_path / "copy.h5", "r") as f:
        assert f[DATA].chunks == chunks
        assert filter_pipeline(f[DATA]) == ()
        np.testing.assert_array_equal(f[DATA][...], expected(frames))


def test_small_source_chunks_keep_their_filters_not_their_shape(simulated_writer, tmp_path):
    writer = simulated_writer(scan_shape=(300,), frame_shape=(4,), compression="zstd")
    writer.run()
    writer.close()
    result = copy_live(writer.path, tmp_path / "copy.h5")
    with h5py.File(tmp_path / "copy.h5", "r") as f, h5py.File(writer.path, "r") as s:
        assert s[DATA].chunks == (1, 4)
        assert f[DATA].chunks[0] > 1  # not 300 chunks of 8 bytes
        assert filter_pipeline(f[DATA]) == filter_pipeline(s[DATA])
        np.testing.assert_array_equal(f[DATA][...], expected(300, (4,)))
    assert re.match(r"parallel \(\d+ workers\): chunk shapes differ", result.chunk_copy[DATA])


@pytest.mark.live
def test_a_stored_chunk_with_an_unkeyed_frame_is_decoded_not_copied(writer_process, tmp_path):
    """Frames past the last complete one are never copied, even inside a stored chunk."""
    process = writer_process(
        scan_shape=(6, 4),
        frame_shape=FRAME,
        data_chunks=(1, 2, *FRAME),
        compression="zstd",
        gaps=(13,),  # frame 13 is written, its key never set: frames 0..12 are complete
        hold_at=0,
    )
    process.go()
    result = copy_live(process.path, tmp_path / "copy.h5", buffer_shape=(1, 4, *FRAME))
    assert process.wait() == 0
    assert result.chunk_copy == {DATA: "raw"}
    assert result.frames_complete == 13
    with h5py.File(tmp_path / "copy.h5", "r") as f, h5py.File(process.path, "r") as s:
        copied = f[DATA][...].reshape(-1, *FRAME)
        assert s[DATA][3, 1].any()  # frame 13 is in the source's chunk of frames 12 and 13
    np.testing.assert_array_equal(copied[:13], expected(13))
    assert not copied[13:].any()  # fill values, not the unkeyed frame 13


def test_source_compression_rebuilds_each_pipeline(tmp_path):
    pipelines = [
        {"compression": "gzip", "compression_opts": 6, "shuffle": True, "fletcher32": True},
        {"compression": "lzf"},
        dict(hdf5plugin.Zstd(clevel=5)),
        dict(hdf5plugin.Blosc(cname="lz4", clevel=3, shuffle=hdf5plugin.Blosc.BITSHUFFLE)),
        dict(hdf5plugin.Bitshuffle(cname="lz4")),
    ]
    with h5py.File(tmp_path / "f.h5", "w") as f:
        for k, options in enumerate(pipelines):
            source = f.create_dataset(f"s{k}", (8, 64), "uint16", chunks=(1, 64), **options)
            rebuilt = dict(source_compression(source))
            rebuilt.pop("allow_plugin_filters", None)  # an H5DataIO option
            copy = f.create_dataset(f"c{k}", (8, 64), "uint16", chunks=(1, 64), **rebuilt)
            assert filter_pipeline(copy) == filter_pipeline(source), options
        odd = f.create_dataset("odd", (8, 64), "uint16", chunks=(1, 64), scaleoffset=0)
        with pytest.raises(
            ValueError, match=r"'/odd' .* cannot be rebuilt.*Fix: pass a compression"
        ):
            source_compression(odd)


@pytest.mark.live
def test_to_nwb_copies_raw_with_the_source_s_compression(writer_process, tmp_path):
    process = writer_process(
        scan_shape=(40,),
        frame_shape=FRAME,
        frame_rate_hz=200,
        compression="zstd",
        timestamps=True,
        hold_at=0,
    )
    process.go()
    nwb = tmp_path / "scan.nwb"
    result = to_nwb(process.path, nwb, compression="source", buffer_shape=(8, *FRAME))
    assert process.wait() == 0
    assert result.state == "complete"
    assert result.chunk_copy["/acquisition/detector/data"] == "raw"
    assert stored(nwb, "/acquisition/detector/data") == stored(process.path)
    assert pynwb.validate(path=str(nwb)) == []
    with pynwb.NWBHDF5IO(str(nwb), "r") as io:
        np.testing.assert_array_equal(io.read().acquisition["detector"].data[:], expected(40))
