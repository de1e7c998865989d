"""Whole chunks read with read_direct_chunk and decoded in Python equal h5py's reads."""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np
import pytest

from h5live._read import codecs as _codecs
from h5live._read import direct as _direct
from h5live._read.direct import DirectChunkReader, direct_chunk_reader, fletcher32
from h5live.errors import DirectChunkError, H5LiveError
from h5live.testing import frame_values, wait_for_progress

LOGGER = "h5live._read.direct"

CODECS = {
    "none": {},
    "blosc-lz4-shuffle": hdf5plugin.Blosc(cname="lz4", shuffle=hdf5plugin.Blosc.SHUFFLE),
    "blosc-zstd-bitshuffle": hdf5plugin.Blosc(cname="zstd", shuffle=hdf5plugin.Blosc.BITSHUFFLE),
    "blosc-blosclz-noshuffle": hdf5plugin.Blosc(
        cname="blosclz", shuffle=hdf5plugin.Blosc.NOSHUFFLE
    ),
    "blosc2-lz4-shuffle": hdf5plugin.Blosc2(cname="lz4", filters=hdf5plugin.Blosc2.SHUFFLE),
    "blosc2-zstd-bitshuffle": hdf5plugin.Blosc2(cname="zstd", filters=hdf5plugin.Blosc2.BITSHUFFLE),
    "bitshuffle": hdf5plugin.Bitshuffle(cname="none"),
    "bitshuffle-lz4": hdf5plugin.Bitshuffle(cname="lz4"),
    "bitshuffle-zstd": hdf5plugin.Bitshuffle(cname="zstd"),
    "lz4": hdf5plugin.LZ4(),
    "lz4-small-blocks": hdf5plugin.LZ4(nbytes=40),
    "zstd": hdf5plugin.Zstd(),
    "deflate": {"compression": "gzip"},
    "shuffle+deflate": {"compression": "gzip", "shuffle": True},
    "fletcher32": {"fletcher32": True},
    "shuffle+deflate+fletcher32": {"compression": "gzip", "shuffle": True, "fletcher32": True},
    "shuffle+zstd": {"shuffle": True, **hdf5plugin.Zstd()},
}
DTYPES = ["uint8", "uint16", "int32", "float32", "float64"]


@pytest.fixture
def h5file(tmp_path: Path) -> Iterator[Any]:
    with h5py.File(tmp_path / "chunks.h5", "w", libver="latest") as f:
        yield f


def sample(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """Compressible but irregular values: detector-like counts, or noisy floats."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(100.0, 15.0, size=shape).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return rng.random(shape) < 0.3
    return rng.poisson(20, size=shape).astype(dtype)


def chunk_offsets(dataset: Any) -> list[tuple[int, ...]]:
    counts = [-(-n // c) for n, c in zip(dataset.shape, dataset.chunks, strict=True)]
    return [
        tuple(i * c for i, c in zip(index, dataset.chunks, strict=True))
        for index in np.ndindex(*counts)
    ]


def assert_chunks_equal_h5py(dataset: Any, reader: DirectChunkReader) -> None:
    """Every chunk, edge chunks included, decodes to h5py's read, bit for bit."""
    for offset in chunk_offsets(dataset):
        box = tuple(
            slice(o, min(o + c, n))
            for o, c, n in zip(offset, dataset.chunks, dataset.shape, strict=True)
        )
        chunk = reader.read(offset)
        assert chunk is not None, offset
        assert chunk.shape == dataset.chunks
        valid = chunk[tuple(slice(0, s.stop - s.start) for s in box)]
        expected = np.ascontiguousarray(dataset[box])
        assert np.array_equal(
            np.ascontiguousarray(valid).view(np.uint8), expected.view(np.uint8)
        ), offset


# ------------------------------------------------------------------ decoding equals h5py


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
def test_chunks_equal_h5py_reads(h5file, codec, dtype):
    # 13 x 7 frames: 91 elements, not a multiple of 8 (bitshuffle blocks); 5 frames in
    # chunks of 2: the last chunk is an edge chunk.
    data = sample((5, 13, 7), dtype)
    dataset = h5file.create_dataset("data", data=data, chunks=(2, 13, 7), **codec)
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    assert reader.chunk_shape == (2, 13, 7)
    assert reader.dtype == np.dtype(dtype)
    assert_chunks_equal_h5py(dataset, reader)


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
def test_edge_chunks_in_every_dim_equal_h5py_reads(h5file, codec):
    data = sample((3, 20, 30), "uint16", seed=1)
    dataset = h5file.create_dataset("data", data=data, chunks=(2, 8, 16), **codec)
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    assert_chunks_equal_h5py(dataset, reader)


@pytest.mark.parametrize("dtype", [">u2", ">f8", "bool", "int8", "complex64"])
def test_other_dtypes_equal_h5py_reads(h5file, dtype):
    data = sample((4, 9, 5), "float64" if "f" in dtype else "uint8").astype(dtype)
    dataset = h5file.create_dataset("data", data=data, chunks=(1, 9, 5), **hdf5plugin.Zstd())
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    assert reader.dtype == dataset.dtype
    assert_chunks_equal_h5py(dataset, reader)


BLOSC2_LAYOUTS = {
    # B2ND arrays with blocks smaller than the chunk, padded where they do not divide it
    "3d-padded-blocks": ((2, 700, 333), (1, 700, 333), "float64"),
    "3d-multiblock": ((3, 512, 1000), (2, 512, 1000), "uint16"),
    "4d-multiblock": ((3, 32, 64, 64), (2, 32, 64, 64), "float32"),
    # a 1-D dataset is a plain super-chunk, in several blocks
    "1d-plain-superchunk": ((300_001,), (200_000,), "uint16"),
}


@pytest.mark.parametrize(
    ("shape", "chunks", "dtype"), BLOSC2_LAYOUTS.values(), ids=BLOSC2_LAYOUTS.keys()
)
def test_blosc2_block_layouts_equal_h5py_reads(h5file, shape, chunks, dtype):
    data = sample(shape, dtype, seed=2)
    options = hdf5plugin.Blosc2(cname="zstd", clevel=1, filters=hdf5plugin.Blosc2.SHUFFLE)
    dataset = h5file.create_dataset("data", data=data, chunks=chunks, **options)
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    assert_chunks_equal_h5py(dataset, reader)


def test_blosc2_frame_without_data_chunk_is_decoded(h5file, monkeypatch):
    # An all-zero chunk is stored as a special value: the frame holds no data chunk at all.
    data = np.zeros((2, 64, 64), np.uint16)
    data[1] = sample((64, 64), "uint16")
    dataset = h5file.create_dataset("data", data=data, chunks=(1, 64, 64), **hdf5plugin.Blosc2())
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    stage = reader._stages[0]
    decode_frame = stage._decode_frame
    frame_parses = []

    def counted(view: memoryview) -> Any:
        frame_parses.append(len(view))
        return decode_frame(view)

    monkeypatch.setattr(stage, "_decode_frame", counted)
    assert_chunks_equal_h5py(dataset, reader)
    assert len(frame_parses) == 1  # the zero chunk only; the other took the fast path


@pytest.mark.parametrize("package", ["blosc2", "blosc"], ids=["via-blosc2", "via-python-blosc"])
def test_blosc_decodes_with_either_package(h5file, monkeypatch, package):
    other = {"blosc2": "blosc", "blosc": "blosc2"}[package]
    real = _codecs._import_optional
    monkeypatch.setattr(
        _codecs, "_import_optional", lambda name: None if name == other else real(name)
    )
    data = sample((3, 40, 30), "int32")
    dataset = h5file.create_dataset("data", data=data, chunks=(2, 40, 30), **hdf5plugin.Blosc())
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    assert_chunks_equal_h5py(dataset, reader)


@pytest.mark.parametrize("frame_shape", [(8, 8), (128, 128)], ids=["small", "read-into-out"])
def test_unfiltered_chunks_equal_h5py_reads(h5file, frame_shape):
    # chunks from 32 KiB are read by HDF5 straight into ``out``; smaller ones are copied
    data = sample((3, *frame_shape), "uint16")
    dataset = h5file.create_dataset("data", data=data, chunks=(1, *frame_shape))
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    assert reader._raw_into == (data[0].nbytes >= _direct._READ_INTO_MIN_NBYTES)
    assert_chunks_equal_h5py(dataset, reader)


def test_read_into_fills_the_callers_array(h5file):
    data = sample((4, 16, 24), "uint16")
    dataset = h5file.create_dataset("data", data=data, chunks=(1, 16, 24), **hdf5plugin.Zstd())
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    frames = np.zeros((4, 1, 16, 24), np.uint16)
    assert reader.read_into([2, 0, 0], frames[2])  # any sequence of ints
    np.testing.assert_array_equal(frames[2, 0], data[2])
    assert not frames[[0, 1, 3]].any()


def test_concurrent_reads_from_threads(h5file):
    data = sample((40, 32, 32), "uint16")
    dataset = h5file.create_dataset("data", data=data, chunks=(1, 32, 32), **hdf5plugin.Zstd())
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    out = np.zeros_like(data)
    errors: list[BaseException] = []

    def work(start: int) -> None:
        try:
            for i in range(start, 40, 4):
                reader.read_into((i, 0, 0), out[i : i + 1])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    np.testing.assert_array_equal(out, data)


# ------------------------------------------------------------------ filter_mask


def shuffled(data: np.ndarray) -> bytes:
    """HDF5's byte shuffle of a whole chunk."""
    size = data.dtype.itemsize
    return data.reshape(-1).view(np.uint8).reshape(-1, size).T.tobytes()


MASKED = {
    # (filters, filter_mask, how the chunk is stored given the frame)
    "zstd-skipped": ({**hdf5plugin.Zstd()}, 0b1, lambda a: a.tobytes()),
    "blosc-skipped": ({**hdf5plugin.Blosc()}, 0b1, lambda a: a.tobytes()),
    "shuffle-skipped": (
        {"shuffle": True, "compression": "gzip"},
        0b01,
        lambda a: zlib.compress(a.tobytes()),
    ),
    "deflate-skipped": ({"shuffle": True, "compression": "gzip"}, 0b10, shuffled),
    "both-skipped": ({"shuffle": True, "compression": "gzip"}, 0b11, lambda a: a.tobytes()),
}


@pytest.mark.parametrize(("filters", "mask", "encode"), MASKED.values(), ids=MASKED.keys())
def test_filter_mask_skips_filters_for_that_chunk(tmp_path, filters, mask, encode):
    path = tmp_path / "masked.h5"
    frame = sample((1, 16, 24), "uint16", seed=9)
    with h5py.File(path, "w", libver="latest") as f:
        data = sample((3, 16, 24), "uint16")
        dataset = f.create_dataset("data", data=data, chunks=(1, 16, 24), **filters)
        dataset.id.write_direct_chunk((1, 0, 0), encode(frame), filter_mask=mask)
    # Read as a SWMR reader would, from another handle: in the handle that wrote it, HDF5 2.0
    # reports the chunk's filter_mask as 0 until the file is reopened.
    with h5py.File(path, "r") as f:
        dataset = f["data"]
        assert dataset.id.read_direct_chunk((1, 0, 0))[0] == mask
        reader = direct_chunk_reader(dataset, require=True)
        assert reader is not None
        np.testing.assert_array_equal(reader.read((1, 0, 0)), frame)
        assert_chunks_equal_h5py(dataset, reader)  # h5py agrees; other chunks are filtered


# ------------------------------------------------------------------ unallocated, bad calls


@pytest.mark.parametrize(
    ("filters", "frame_shape"),
    [({}, (8, 8)), ({}, (128, 128)), (hdf5plugin.Zstd(), (8, 8))],
    ids=["none-small", "none-read-into-out", "zstd"],
)
def test_unallocated_chunk_reads_false_and_leaves_out_alone(h5file, filters, frame_shape):
    dataset = h5file.create_dataset(
        "data",
        shape=(4, *frame_shape),
        maxshape=(None, *frame_shape),
        dtype="uint16",
        chunks=(1, *frame_shape),
        fillvalue=7,
        **filters,
    )
    dataset[0] = 1
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    out = np.full((1, *frame_shape), 3, np.uint16)
    assert reader.read_into((2, 0, 0), out) is False
    assert (out == 3).all()
    assert reader.read((3, 0, 0)) is None
    assert (reader.read((0, 0, 0)) == 1).all()


def test_offset_off_a_chunk_boundary_raises(h5file):
    dataset = h5file.create_dataset("data", data=sample((2, 8, 8), "uint16"), chunks=(1, 8, 8))
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    with pytest.raises(
        DirectChunkError, match=r"read_direct_chunk\(\(0, 3, 0\)\).*'/data'.*chunks"
    ):
        reader.read((0, 3, 0))


BAD_OUT = {
    "wrong-shape": np.empty((1, 8, 9), np.uint16),
    "wrong-dtype": np.empty((1, 8, 8), np.int16),
    "not-contiguous": np.empty((1, 8, 16), np.uint16)[:, :, ::2],
    "read-only": np.frombuffer(bytes(128), np.uint16).reshape(1, 8, 8),
}


@pytest.mark.parametrize("out", BAD_OUT.values(), ids=BAD_OUT.keys())
def test_read_into_rejects_a_bad_out(h5file, out):
    dataset = h5file.create_dataset("data", data=sample((2, 8, 8), "uint16"), chunks=(1, 8, 8))
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    with pytest.raises(DirectChunkError, match=r"'/data'.*Fix: pass a writeable C-contiguous"):
        reader.read_into((0, 0, 0), out)


# ------------------------------------------------------------------ corrupt chunks


def rewritten(path: Path, data: np.ndarray, filters: dict, change: Any) -> h5py.File:
    """A file whose chunk 1 was replaced by ``change(stored bytes)``, reopened to read.

    Reopened as a SWMR reader would be: in the handle that wrote a chunk directly, HDF5 2.0
    still reports the old chunk's size and filter mask.
    """
    with h5py.File(path, "w", libver="latest") as f:
        chunks = (1, *data.shape[1:])
        dataset = f.create_dataset("data", data=data, chunks=chunks, **filters)
        offset = (1,) + (0,) * (data.ndim - 1)
        dataset.id.write_direct_chunk(offset, change(dataset.id.read_direct_chunk(offset)[1]))
    return h5py.File(path, "r")


def swap_checksum_halves(raw: bytes) -> bytes:
    return raw[:-4] + bytes([raw[-3], raw[-4], raw[-1], raw[-2]])


def flip_a_byte(raw: bytes) -> bytes:
    return raw[:3] + bytes([raw[3] ^ 0xFF]) + raw[4:]


def test_fletcher32_mismatch_raises_as_hdf5_does(tmp_path):
    data = sample((2, 8, 8), "uint16")
    with rewritten(tmp_path / "bad.h5", data, {"fletcher32": True}, flip_a_byte) as f:
        dataset = f["data"]
        with pytest.raises(OSError, match="filter returned failure"):
            dataset[1]
        reader = direct_chunk_reader(dataset, require=True)
        assert reader is not None
        with pytest.raises(DirectChunkError, match=r"chunk at \(1, 0, 0\).*fletcher32.*checksum"):
            reader.read((1, 0, 0))
        np.testing.assert_array_equal(reader.read((0, 0, 0)), data[:1])


def test_fletcher32_checksum_stored_by_old_hdf5_is_accepted(tmp_path):
    # HDF5 < 1.6.3 stored the checksum with the bytes of each 16-bit half swapped.
    data = sample((2, 8, 8), "uint16")
    with rewritten(tmp_path / "old.h5", data, {"fletcher32": True}, swap_checksum_halves) as f:
        dataset = f["data"]
        reader = direct_chunk_reader(dataset, require=True)
        assert reader is not None
        np.testing.assert_array_equal(dataset[...], data)  # HDF5 accepts it
        np.testing.assert_array_equal(reader.read((1, 0, 0)), data[1:])


CORRUPT = {
    "zstd-garbage": (hdf5plugin.Zstd(), lambda raw: b"\x28\xb5\x2f\xfd" + bytes(20)),
    "blosc-says-more-bytes": (
        hdf5plugin.Blosc(),
        lambda raw: raw[:4] + (10**6).to_bytes(4, "little") + raw[8:],
    ),
    "blosc2-truncated": (hdf5plugin.Blosc2(), lambda raw: raw[:30]),
    "lz4-truncated": (hdf5plugin.LZ4(), lambda raw: raw[: len(raw) // 2]),
    "bitshuffle-lz4-truncated": (hdf5plugin.Bitshuffle(), lambda raw: raw[:20]),
    "deflate-garbage": ({"compression": "gzip"}, lambda raw: b"not zlib at all"),
}


@pytest.mark.parametrize(("filters", "corrupt"), CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_chunk_raises_instead_of_writing_out_of_bounds(tmp_path, filters, corrupt):
    data = sample((2, 16, 24), "uint16")
    with rewritten(tmp_path / "bad.h5", data, filters, corrupt) as f:
        reader = direct_chunk_reader(f["data"], require=True)
        assert reader is not None
        with pytest.raises(DirectChunkError, match=r"cannot decode the chunk at \(1, 0, 0\).*Fix:"):
            reader.read((1, 0, 0))
        np.testing.assert_array_equal(reader.read((0, 0, 0)), data[:1])


# ------------------------------------------------------------------ fletcher32 itself


def reference_fletcher32(data: bytes) -> int:
    """H5_checksum_fletcher32, line by line."""
    sum1 = sum2 = 0
    words, i = len(data) // 2, 0
    while words:
        run = min(words, 360)
        words -= run
        for _ in range(run):
            sum1 += (data[i] << 8) | data[i + 1]
            i += 2
            sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    if len(data) % 2:
        sum1 += data[i] << 8
        sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
    sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    return (sum2 << 16) | sum1


FLETCHER_INPUTS = {
    "one-byte": b"\x07",
    "odd-length": bytes(range(1, 200, 2)),
    "zeros": bytes(64),
    "all-ff": b"\xff" * 2001,
    "random": np.random.default_rng(3).integers(0, 256, 5001, dtype=np.uint8).tobytes(),
}


@pytest.mark.parametrize("block", [7, 1 << 18], ids=["tiny-blocks", "default-blocks"])
@pytest.mark.parametrize("data", FLETCHER_INPUTS.values(), ids=FLETCHER_INPUTS.keys())
def test_fletcher32_equals_hdf5s_algorithm(monkeypatch, data, block):
    monkeypatch.setattr(_codecs, "_FLETCHER_BLOCK", block)
    monkeypatch.setattr(_codecs, "_FLETCHER_WEIGHTS", np.arange(block, 0, -1, dtype=np.float64))
    assert fletcher32(data) == reference_fletcher32(data)


# ------------------------------------------------------------------ when to read directly


def records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_codecs_slower_in_python_are_not_read_directly_by_default(h5file, caplog):
    dataset = h5file.create_dataset(
        "data", data=sample((2, 8, 8), "uint16"), chunks=(1, 8, 8), fletcher32=True
    )
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert direct_chunk_reader(dataset) is None
    [message] = records(caplog)
    assert "direct chunk reads off for '/data'" in message
    assert "fletcher32 measured slower decoded in Python than by HDF5" in message
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    assert reader.codec == "fletcher32"


def test_default_depends_on_the_chunk_size(h5file, monkeypatch, caplog):
    monkeypatch.setattr(_direct, "DIRECT_BY_DEFAULT", {"zstd": 4096})
    small = h5file.create_dataset(
        "small", data=sample((2, 8, 8), "uint16"), chunks=(1, 8, 8), **hdf5plugin.Zstd()
    )
    big = h5file.create_dataset(
        "big", data=sample((2, 64, 64), "uint16"), chunks=(1, 64, 64), **hdf5plugin.Zstd()
    )
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert direct_chunk_reader(small) is None
        assert direct_chunk_reader(big) is not None
    off, on = records(caplog)
    assert "'/small'" in off
    assert "only for chunks of 4096 bytes or more, not 128-byte chunks" in off
    assert on == "direct chunk reads on for '/big' in " + repr(h5file.filename) + ": zstd"


def test_pipelines_not_in_the_table_are_not_read_directly_by_default(h5file, monkeypatch):
    monkeypatch.setattr(_direct, "DIRECT_BY_DEFAULT", {"zstd": 0, "shuffle": 0})
    dataset = h5file.create_dataset(
        "data",
        data=sample((2, 8, 8), "uint16"),
        chunks=(1, 8, 8),
        shuffle=True,
        **hdf5plugin.Zstd(),
    )
    assert direct_chunk_reader(dataset) is None
    reader = direct_chunk_reader(dataset, require=True)
    assert reader is not None
    assert reader.codec == "shuffle+zstd"


DEFAULTS = {
    # (filters, frame shape, read directly by default)
    "none-2KiB": ({}, (32, 32), True),
    "blosc-2KiB": (hdf5plugin.Blosc(), (32, 32), True),
    "blosc2-2KiB": (hdf5plugin.Blosc2(), (32, 32), True),
    "deflate-2KiB": ({"compression": "gzip"}, (32, 32), True),
    "bitshuffle-lz4-128KiB": (hdf5plugin.Bitshuffle(), (256, 256), False),
    "bitshuffle-lz4-512KiB": (hdf5plugin.Bitshuffle(), (512, 512), True),
    "lz4-512KiB": (hdf5plugin.LZ4(), (512, 512), False),
}


@pytest.mark.parametrize(("filters", "frame", "direct"), DEFAULTS.values(), ids=DEFAULTS.keys())
def test_default_table_decides_by_codec_and_chunk_size(h5file, filters, frame, direct):
    data = sample((1, *frame), "uint16")
    dataset = h5file.create_dataset("data", data=data, chunks=(1, *frame), **filters)
    assert (direct_chunk_reader(dataset) is not None) == direct
    assert direct_chunk_reader(dataset, require=True) is not None


def test_default_table_names_only_known_codecs():
    known = set(_codecs._FILTER_NAMES.values()) | {"none", "bitshuffle-lz4", "bitshuffle-zstd"}
    for codec, threshold in _direct.DIRECT_BY_DEFAULT.items():
        assert set(codec.split("+")) <= known, codec
        assert threshold is None or threshold >= 0, codec


# ------------------------------------------------------------------ cannot read directly


def test_unsupported_filter_raises_when_required(h5file, caplog):
    dataset = h5file.create_dataset(
        "data", data=np.arange(64, dtype=np.int32).reshape(1, 8, 8), chunks=(1, 8, 8), scaleoffset=0
    )
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert direct_chunk_reader(dataset) is None
    [message] = records(caplog)
    assert "filter 6 (scaleoffset) has no Python decoder" in message
    with pytest.raises(DirectChunkError) as info:
        direct_chunk_reader(dataset, require=True)
    text = str(info.value)
    assert "'/data'" in text
    assert h5file.filename in text
    assert "filter 6 (scaleoffset)" in text
    assert "use_direct_chunk=True" in text
    assert isinstance(info.value, (H5LiveError, ValueError))


@pytest.mark.parametrize(
    ("filters", "module", "pip_name"),
    [
        (hdf5plugin.Zstd(), "zstandard", "zstandard"),
        (hdf5plugin.LZ4(), "lz4.block", "lz4"),
        (hdf5plugin.Bitshuffle(), "bitshuffle", "bitshuffle"),
        (hdf5plugin.Blosc2(), "blosc2", "blosc2"),
    ],
    ids=["zstd", "lz4", "bitshuffle", "blosc2"],
)
def test_missing_package_is_named_with_its_install_command(
    h5file, monkeypatch, caplog, filters, module, pip_name
):
    real = _codecs._import_optional
    monkeypatch.setattr(
        _codecs, "_import_optional", lambda name: None if name == module else real(name)
    )
    dataset = h5file.create_dataset(
        "data", data=sample((1, 8, 8), "uint16"), chunks=(1, 8, 8), **filters
    )
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert direct_chunk_reader(dataset) is None
    [message] = records(caplog)
    assert f"needs the Python package {pip_name!r}, which is not installed" in message
    with pytest.raises(DirectChunkError, match=rf"'/data'.*filter \d+ .*`pip install {pip_name}`"):
        direct_chunk_reader(dataset, require=True)


def test_blosc_without_either_package_asks_for_blosc2(h5file, monkeypatch):
    real = _codecs._import_optional
    monkeypatch.setattr(
        _codecs,
        "_import_optional",
        lambda name: None if name in ("blosc", "blosc2") else real(name),
    )
    dataset = h5file.create_dataset(
        "data", data=sample((1, 8, 8), "uint16"), chunks=(1, 8, 8), **hdf5plugin.Blosc()
    )
    with pytest.raises(DirectChunkError, match=r"filter 32001 \(blosc\).*`pip install blosc2`"):
        direct_chunk_reader(dataset, require=True)


def test_numpy_array_has_no_chunks_to_read_directly(caplog):
    array = np.zeros((2, 3))
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert direct_chunk_reader(array) is None
    [message] = records(caplog)
    assert "ndarray is not an h5py dataset" in message
    with pytest.raises(
        DirectChunkError, match=r"ndarray is not an h5py dataset.*Fix: pass an h5py"
    ):
        direct_chunk_reader(array, require=True)


def test_contiguous_dataset_is_not_read_directly(h5file):
    dataset = h5file.create_dataset("data", data=sample((2, 8, 8), "uint16"))
    assert direct_chunk_reader(dataset) is None
    with pytest.raises(DirectChunkError, match=r"'/data'.*not chunked"):
        direct_chunk_reader(dataset, require=True)


def test_dtype_converted_by_h5py_is_not_read_directly(h5file):
    dataset = h5file.create_dataset("data", shape=(2, 4), dtype=h5py.string_dtype(), chunks=(1, 4))
    assert direct_chunk_reader(dataset) is None
    with pytest.raises(DirectChunkError, match=r"'/data'.*converts its stored type"):
        direct_chunk_reader(dataset, require=True)


def test_repr_names_file_dataset_and_codec(h5file):
    dataset = h5file.create_dataset(
        "data", data=sample((2, 8, 8), "uint16"), chunks=(1, 8, 8), **hdf5plugin.Bitshuffle()
    )
    reader = direct_chunk_reader(dataset, require=True)
    assert repr(reader) == (
        "<DirectChunkReader 'chunks.h5' '/data' codec='bitshuffle-lz4' chunk_shape=(1, 8, 8) "
        "dtype=uint16>"
    )


# ------------------------------------------------------------------ a live SWMR file


@pytest.mark.live
def test_swmr_reader_decodes_chunks_a_writer_process_writes(writer_process):
    process = writer_process(
        scan_shape=(60,), frame_shape=(16, 24), compression="zstd", frame_rate_hz=2000, hold_at=0
    )
    with h5py.File(process.path, "r", libver="latest", swmr=True) as f:
        dataset = f["/entry/data/data"]
        reader = direct_chunk_reader(dataset, require=True)
        assert reader is not None
        process.go()
        seen = 0

        def decode_new_frames() -> int:
            nonlocal seen
            dataset.refresh()
            while seen < dataset.shape[0]:
                frame = reader.read((seen, 0, 0))
                if frame is None:  # the dataset grew; the chunk is not written yet
                    break
                np.testing.assert_array_equal(frame[0], frame_values(seen, (16, 24), "uint16"))
                seen += 1
            return seen

        wait_for_progress(decode_new_frames, 60, what="frames decoded live", poll_s=0.001)
    assert process.wait() == 0
    assert seen == 60


def test_bitshuffle_decodes_on_one_openmp_thread(tmp_path):
    """bitshuffle's own OpenMP threads made decoding 10x slower on 2 cores (see _codecs)."""
    import bitshuffle

    from h5live._read.codecs import _vendored_gomp

    gomp = _vendored_gomp(bitshuffle)
    assert gomp is not None  # the wheel bundles its libgomp
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f.create_dataset(
            "d",
            data=np.arange(4 * 4096, dtype="uint16").reshape(4, 4096),
            chunks=(1, 4096),
            **hdf5plugin.Bitshuffle(),
        )
    seen = []

    def read() -> None:
        with h5py.File(tmp_path / "b.h5", "r") as f:
            reader = direct_chunk_reader(f["d"], require=True)
            out = np.empty((1, 4096), dtype="uint16")
            assert reader.read_into((2, 0), out)
            np.testing.assert_array_equal(out[0], np.arange(2 * 4096, 3 * 4096))
        seen.append(gomp.omp_get_max_threads())

    worker = threading.Thread(target=read)  # a thread of its own: the setting is per thread
    worker.start()
    worker.join()
    assert seen == [1]
