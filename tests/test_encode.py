"""ChunkEncoder: chunks encoded in Python into the bytes HDF5's filter pipeline stores."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import blosc2
import h5py
import hdf5plugin
import numpy as np
import pytest

import h5live._write.encode
from h5live._write.encode import ChunkEncoder, _b2nd_block_shape
from h5live._write.plugin_codecs import PluginUnavailable, library_versions
from h5live.errors import DirectWriteError, H5LiveError

SHAPE = (5, 100, 90)  # edge chunks on every axis for CHUNKS
CHUNKS = (2, 64, 64)
OFFSETS = [(0, 0, 0), (2, 64, 0), (4, 64, 64)]  # interior, edge, corner

# Each pipeline as h5py/hdf5plugin spell it; every one is deterministic except blosc2.
PIPELINES: dict[str, dict[str, Any]] = {
    "gzip-1": {"compression": "gzip", "compression_opts": 1},
    "gzip-9": {"compression": "gzip", "compression_opts": 9},
    "shuffle+gzip": {"compression": "gzip", "shuffle": True},
    "shuffle+gzip+fletcher32": {"compression": "gzip", "shuffle": True, "fletcher32": True},
    "shuffle": {"shuffle": True},
    "fletcher32": {"fletcher32": True},
    "zstd-3": dict(hdf5plugin.Zstd(clevel=3)),
    "zstd-negative": {"compression": 32015, "compression_opts": (2**32 - 5,)},
    "zstd-22": dict(hdf5plugin.Zstd(clevel=22)),
    "shuffle+zstd+fletcher32": {"shuffle": True, "fletcher32": True, **hdf5plugin.Zstd()},
    "lz4": dict(hdf5plugin.LZ4()),
    "lz4-blocks": dict(hdf5plugin.LZ4(nbytes=1000)),
    "blosc-lz4": dict(hdf5plugin.Blosc()),
    "blosc-blosclz": dict(hdf5plugin.Blosc(cname="blosclz", clevel=9)),
    "blosc-zstd-bitshuffle": dict(
        hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.BITSHUFFLE)
    ),
    "blosc-zlib-noshuffle": dict(
        hdf5plugin.Blosc(cname="zlib", clevel=1, shuffle=hdf5plugin.Blosc.NOSHUFFLE)
    ),
    "bitshuffle": dict(hdf5plugin.Bitshuffle(cname="none")),
    "bitshuffle-lz4": dict(hdf5plugin.Bitshuffle()),
    "bitshuffle-lz4-block": dict(hdf5plugin.Bitshuffle(nelems=256)),
    "bitshuffle-zstd": dict(hdf5plugin.Bitshuffle(cname="zstd", clevel=5)),
}
BLOSC2 = {
    "blosc2": dict(hdf5plugin.Blosc2()),
    "blosc2-zstd-bitshuffle": dict(
        hdf5plugin.Blosc2(cname="zstd", clevel=3, filters=hdf5plugin.Blosc2.BITSHUFFLE)
    ),
    "fletcher32+blosc2": {"fletcher32": True, **hdf5plugin.Blosc2()},
}


def poisson(shape: tuple[int, ...] = SHAPE, dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """Detector-like counts."""
    return np.random.default_rng(seed).poisson(5, shape).astype(dtype)


def region(offset: tuple[int, ...], shape: tuple[int, ...] = SHAPE) -> tuple[slice, ...]:
    """The part of the chunk at ``offset`` inside a dataset of ``shape``."""
    return tuple(slice(o, min(o + c, n)) for o, c, n in zip(offset, CHUNKS, shape, strict=True))


def written_by_h5py(tmp_path, options, data, name="data", **create):
    """A file with ``data`` written by plain h5py through HDF5's filter pipeline."""
    f = h5py.File(tmp_path / "h5py.h5", "a")
    dataset = f.create_dataset(name, data=data, chunks=CHUNKS, **options, **create)
    return f, dataset


@pytest.mark.parametrize("options", PIPELINES.values(), ids=PIPELINES.keys())
@pytest.mark.parametrize("offset", OFFSETS, ids=["interior", "edge", "corner"])
def test_encoded_chunk_is_what_hdf5_stores(tmp_path, options, offset):
    data = poisson()
    f, dataset = written_by_h5py(tmp_path, options, data)
    with f:
        encoder = ChunkEncoder.for_dataset(dataset)
        mask, stored = encoder.encode(encoder.prepare(data[region(offset)]))
        assert (mask, stored.tobytes()) == dataset.id.read_direct_chunk(offset)


@pytest.mark.parametrize("options", BLOSC2.values(), ids=BLOSC2.keys())
def test_blosc2_chunk_decodes_to_the_data(tmp_path, options):
    # python-blosc2's c-blosc2 (3.6 here) writes a frame header a few bytes unlike the
    # plugin's (3.3): the bytes differ, HDF5 decodes them to the same chunk.
    data = poisson()
    f, dataset = written_by_h5py(tmp_path, options, data)
    with f:
        encoder = ChunkEncoder.for_dataset(dataset)
        copy = f.create_dataset("copy", shape=SHAPE, dtype=data.dtype, chunks=CHUNKS, **options)
        for offset in OFFSETS:
            mask, stored = encoder.encode(encoder.prepare(data[region(offset)]))
            assert mask == dataset.id.read_direct_chunk(offset)[0] == 0
            copy.id.write_direct_chunk(offset, stored, mask)
            assert np.array_equal(copy[region(offset)], data[region(offset)])


@pytest.mark.parametrize("chunks", [(2, 64, 64), (1, 512, 512), (8, 512, 512), (3, 5, 7)])
def test_blosc2_block_shape_is_the_filters(tmp_path, chunks):
    data = poisson((chunks[0], chunks[1], chunks[2]))
    with h5py.File(tmp_path / "b.h5", "w") as f:
        dataset = f.create_dataset("d", data=data, chunks=chunks, **hdf5plugin.Blosc2())
        frame = blosc2.ndarray_from_cframe(dataset.id.read_direct_chunk((0, 0, 0))[1])
        encoder = ChunkEncoder.for_dataset(dataset)
        stage = encoder._stages[0]
        assert _b2nd_block_shape(stage.blocksize, 2, chunks) == tuple(frame.blocks)


@pytest.mark.parametrize(
    ("options", "mask"),
    [
        (dict(hdf5plugin.Blosc()), 0b1),
        ({"shuffle": True, **hdf5plugin.Blosc()}, 0b10),
        ({"fletcher32": True, **hdf5plugin.Blosc()}, 0b1),
    ],
    ids=["blosc", "shuffle+blosc", "blosc+fletcher32"],
)
def test_a_failing_optional_filter_is_skipped_with_its_mask_bit(tmp_path, options, mask):
    noise = np.random.default_rng(3).integers(0, 2**16, SHAPE, dtype="uint16")
    f, dataset = written_by_h5py(tmp_path, options, noise)
    with f:
        encoder = ChunkEncoder.for_dataset(dataset)
        encoded_mask, stored = encoder.encode(encoder.prepare(noise[region((0, 0, 0))]))
        assert encoded_mask == mask
        assert dataset.id.read_direct_chunk((0, 0, 0)) == (mask, stored.tobytes())


@pytest.mark.parametrize("dtype", ["int8", "float32", ">i4", "<f8", "complex64", "bool"], ids=str)
def test_other_dtypes_are_encoded_as_hdf5_stores_them(tmp_path, dtype):
    data = poisson(dtype="int32").astype(dtype)
    options = {"compression": "gzip", "shuffle": True, "fletcher32": True}
    f, dataset = written_by_h5py(tmp_path, options, data)
    with f:
        encoder = ChunkEncoder.for_dataset(dataset)
        for offset in OFFSETS:
            mask, stored = encoder.encode(encoder.prepare(data[region(offset)]))
            assert (mask, stored.tobytes()) == dataset.id.read_direct_chunk(offset)


def test_edge_chunks_are_padded_with_the_fill_value(tmp_path):
    data = poisson()
    f, dataset = written_by_h5py(tmp_path, {"compression": "gzip"}, data, fillvalue=7)
    with f:
        encoder = ChunkEncoder.for_dataset(dataset)
        chunk = encoder.prepare(data[region((4, 64, 64))])
        assert chunk.shape == CHUNKS
        assert (chunk[1:] == 7).all()
        assert (chunk[:, 36:] == 7).all()
        assert encoder.encode(chunk)[1].tobytes() == dataset.id.read_direct_chunk((4, 64, 64))[1]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"compression": "lzf"}, "32000 (lzf)"),
        ({"scaleoffset": 0}, "6 (scaleoffset)"),
        (dict(hdf5plugin.BZip2()), "307 (bzip2)"),
        ({"compression": 32004, "compression_opts": (0, 9)}, "32004 (lz4)"),
    ],
    ids=["lzf", "scaleoffset", "bzip2", "lz4-encoder-option"],
)
def test_unsupported_filter_is_refused_naming_dataset_filter_and_fix(tmp_path, options, named):
    f, dataset = written_by_h5py(tmp_path, options, poisson())
    with f, pytest.raises(DirectWriteError) as caught:
        ChunkEncoder.for_dataset(dataset)
    message = str(caught.value)
    assert "'/data'" in message
    assert "h5py.h5" in message
    assert f"filter {named}" in message
    assert "Fix:" in message
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, H5LiveError)


def test_unchunked_dataset_and_strings_are_refused(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        contiguous = f.create_dataset("contiguous", data=np.zeros(10))
        text = f.create_dataset("text", shape=(4,), dtype=h5py.string_dtype(), chunks=(2,))
        with pytest.raises(DirectWriteError, match=r"'/contiguous'.*not chunked.*Fix:"):
            ChunkEncoder.for_dataset(contiguous)
        with pytest.raises(DirectWriteError, match=r"'/text'.*converts its dtype.*Fix:"):
            ChunkEncoder.for_dataset(text)


def test_blosc_environment_overrides_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("BLOSC_CLEVEL", "9")
    f, dataset = written_by_h5py(tmp_path, dict(hdf5plugin.Blosc()), poisson())
    with f, pytest.raises(DirectWriteError, match=r"BLOSC_CLEVEL.*Fix: unset BLOSC_CLEVEL"):
        ChunkEncoder.for_dataset(dataset)


def test_a_plugin_library_out_of_reach_is_refused(tmp_path, monkeypatch):
    def unavailable(kind: Any) -> Any:
        raise PluginUnavailable("hdf5plugin did not register its zstd filter here")

    monkeypatch.setattr(h5live._write.encode, "_library", unavailable)
    f, dataset = written_by_h5py(tmp_path, PIPELINES["zstd-3"], poisson())
    with f, pytest.raises(DirectWriteError, match=r"filter 32015 \(zstd\).*unavailable.*Fix:"):
        ChunkEncoder.for_dataset(dataset)


def test_prepare_refuses_data_that_does_not_fit_a_chunk(tmp_path):
    f, dataset = written_by_h5py(tmp_path, {"compression": "gzip"}, poisson())
    with f:
        encoder = ChunkEncoder.for_dataset(dataset)
        with pytest.raises(ValueError, match=r"shape \(3, 64, 64\) does not fit.*'/data'"):
            encoder.prepare(np.zeros((3, 64, 64), "uint16"))
        with pytest.raises(ValueError, match=r"float64 does not convert to uint16.*Fix:"):
            encoder.prepare(np.zeros(CHUNKS))
        whole = np.zeros(CHUNKS, "uint16")
        assert encoder.prepare(whole, copy=False) is whole
        assert encoder.prepare(whole) is not whole


def test_repr_names_dataset_file_chunks_and_filters(tmp_path):
    f, dataset = written_by_h5py(tmp_path, PIPELINES["shuffle+zstd+fletcher32"], poisson())
    with f:
        text = repr(ChunkEncoder.for_dataset(dataset))
    assert text == (
        "<ChunkEncoder '/data' in 'h5py.h5' chunks=(2, 64, 64) uint16 shuffle+zstd(3)+fletcher32>"
    )


def test_plugin_libraries_are_the_versions_assumed():
    # h5live._write.plugin_codecs calls the compression libraries linked into hdf5plugin's plugins
    # through symbols they export; written against hdf5plugin 7.1.
    assert hdf5plugin.version.startswith("7."), hdf5plugin.version
    assert library_versions() == {"zstd": "1.5.7", "lz4": "1.10.0", "blosc": "1.21.6"}


# ------------------------------------------------------------------ the GIL


def _spin(until: Any) -> int:
    """Turns of a Python loop until ``until()``, offering the GIL every 1000 turns."""
    count = 0
    while not until():
        count += 1
        if count % 1000 == 0:
            time.sleep(0)
    return count


def _share_of_encode_while_main_runs(encoder: ChunkEncoder, chunk: np.ndarray) -> float:
    """How much of an encode in another thread the main thread spends running Python, with
    the switch interval so long that a thread holding the GIL keeps it: about 0 when the
    encode holds the GIL, about 1 when it releases it (on a free core)."""
    done = threading.Event()
    spent: list[float] = []

    def work() -> None:
        try:
            begin = time.perf_counter()
            encoder.encode(chunk)
            spent.append(time.perf_counter() - begin)
        finally:
            done.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        begin = time.perf_counter()
        turns = _spin(lambda: time.perf_counter() - begin > 0.05)
        rate = turns / (time.perf_counter() - begin)  # alone
        thread = threading.Thread(target=work)
        thread.start()
        turns = _spin(done.is_set)
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    return turns / (rate * spent[0])


@pytest.mark.parametrize(
    "name", ["gzip-1", "shuffle+zstd+fletcher32", "lz4", "blosc-zlib-noshuffle", "bitshuffle-zstd"]
)
def test_encoding_releases_the_gil(tmp_path, name):
    # The premise of encoding in threads: zlib, the plugins' libraries (through ctypes) and
    # numpy's copies let the main thread run while they work.
    options = PIPELINES[name]
    shape = (64, 512, 512)  # 32 MiB: an encode of tens of milliseconds at least
    with h5py.File(tmp_path / "g.h5", "w") as f:
        dataset = f.create_dataset("d", shape=shape, dtype="uint16", chunks=shape, **options)
        encoder = ChunkEncoder.for_dataset(dataset)
    chunk = encoder.prepare(poisson(shape))
    assert _share_of_encode_while_main_runs(encoder, chunk) > 0.3
