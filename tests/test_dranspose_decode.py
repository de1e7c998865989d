"""Worker-side decoding: bslz4 with and without the 12-byte HDF5 header, and STINS parsing."""

from __future__ import annotations

import json
import threading

import bitshuffle
import h5py
import hdf5plugin
import numpy as np
import pytest
from dranspose.event import StreamData

from h5live.dranspose import decode_bslz4, default_block_size, parse_stins
from h5live.testing import frame_values

FRAMES = [
    ("uint16", (64, 48)),
    ("uint32", (33, 17)),  # a tail of elements that is not a whole block
    ("int8", (5000,)),
    ("float64", (3, 7, 9)),
]


def hdf5_chunk(tmp_path, frame: np.ndarray) -> bytes:
    """The frame as HDF5's bitshuffle filter stores it: 12-byte header, then the blocks."""
    with h5py.File(tmp_path / "chunk.h5", "w") as f:
        dataset = f.create_dataset(
            "x", data=frame[None], chunks=(1, *frame.shape), **hdf5plugin.Bitshuffle()
        )
        _, chunk = dataset.id.read_direct_chunk((0,) * (frame.ndim + 1))
    return bytes(chunk)


@pytest.mark.parametrize(("dtype", "shape"), FRAMES, ids=[f"{d}-{s}" for d, s in FRAMES])
def test_both_bslz4_layouts_decode_to_the_frame(tmp_path, dtype, shape):
    frame = frame_values(3, shape, dtype)
    with_header = hdf5_chunk(tmp_path, frame)
    without = bitshuffle.compress_lz4(frame).tobytes()  # Dectris streams send this layout
    assert with_header[12:] == without
    for data in (with_header, without, memoryview(with_header), bytearray(without)):
        decoded = decode_bslz4(data, shape, dtype)
        assert decoded.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(decoded, frame)


def test_data_without_header_and_a_block_size_of_its_own():
    frame = frame_values(1, (40, 40), "uint16")
    data = bitshuffle.compress_lz4(frame, 256).tobytes()
    np.testing.assert_array_equal(decode_bslz4(data, (40, 40), "uint16", block_size=256), frame)
    assert default_block_size(2) == 4096  # bitshuffle's own choice for 2-byte elements
    assert default_block_size(8) == 1024
    assert default_block_size(128) == 128


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 5, b"garbage that is not bitshuffle-lz4 at all....."],
    ids=["empty", "short", "garbage"],
)
def test_bytes_that_are_not_a_frame_raise_value_error(data):
    with pytest.raises(ValueError, match="cannot decode"):
        decode_bslz4(data, (8, 8), "uint16")


def test_a_frame_of_another_shape_is_refused_not_read_out_of_bounds():
    data = bitshuffle.compress_lz4(frame_values(0, (64, 64), "uint16")).tobytes()
    with pytest.raises(ValueError, match="cannot decode"):
        decode_bslz4(data, (128, 128), "uint16")  # bitshuffle alone would read past the end


def stins_image(frame: np.ndarray, compression: str, payload: bytes) -> StreamData:
    header = {
        "htype": "image",
        "msg_number": 1,
        "frame": 0,
        "shape": list(frame.shape),
        "type": str(frame.dtype),
        "compression": compression,
    }
    return StreamData(typ="STINS", frames=[json.dumps(header).encode(), payload])


def test_parse_stins_decodes_none_and_both_bslz4_layouts(tmp_path):
    frame = frame_values(2, (16, 8), "uint16")
    streams = [
        stins_image(frame, "none", frame.tobytes()),
        stins_image(frame, "bslz4", hdf5_chunk(tmp_path, frame)),
        stins_image(frame, "bslz4", bitshuffle.compress_lz4(frame).tobytes()),
    ]
    for data in streams:
        packet = parse_stins(data)
        np.testing.assert_array_equal(packet.data, frame)
    end = StreamData(typ="STINS", frames=[b'{"htype": "series_end", "msg_number": 2}'])
    assert parse_stins(end).htype == "series_end"
    with pytest.raises(ValueError, match="compression 'zstd'"):
        parse_stins(stins_image(frame, "zstd", b""))


def test_bitshuffle_decodes_on_one_thread():
    """bitshuffle's own OpenMP threads are limited to one in the decoding thread (they made a
    frame 30x slower to decode on a loaded machine; see h5live._read.codecs)."""
    from h5live._read.codecs import _vendored_gomp

    gomp = _vendored_gomp(bitshuffle)
    frame = frame_values(0, (32, 32), "uint16")
    result: list[int] = []

    def decode_and_look() -> None:
        decode_bslz4(bitshuffle.compress_lz4(frame).tobytes(), (32, 32), "uint16")
        result.append(gomp.omp_get_max_threads())

    thread = threading.Thread(target=decode_and_look)  # a fresh thread, as a worker's
    thread.start()
    thread.join()
    assert result == [1]
