"""The compression libraries inside hdf5plugin's filter plugins, called through ctypes.

Contract
--------
- hdf5plugin links each compression library into the HDF5 filter plugin that uses it
  (``libh5zstd.so``: Zstd, ``libh5lz4.so``: LZ4, ``libh5blosc.so``: c-blosc,
  ``libh5bshuf.so``: bitshuffle with LZ4 and Zstd) and the plugins export that library's C
  API. A chunk encoded here goes through *the library HDF5's filter calls*, so its bytes are
  the ones HDF5 stores whatever versions the Python codec packages have (measured with
  hdf5plugin 7.1: python-lz4 1.9.4 compresses a chunk into other bytes than the plugin's LZ4
  1.10.0, bitshuffle 0.5.2's Zstd into other bytes than the plugin's).
- ctypes releases the GIL for the duration of a foreign call: threads encode in parallel.
- Only pure functions of the compression libraries are called, never an HDF5 function nor a
  plugin's filter callback: the HDF5 of h5py's wheels is not thread-safe, and the callbacks
  use HDF5's allocator and error stack.
- Every function takes and returns 1-D C-contiguous ``uint8`` arrays. A compressor that
  cannot fit its output where the filter gives it room returns ``None`` (HDF5 then skips an
  optional filter and sets its bit in the chunk's filter mask).
- :func:`plugin_library` raises :class:`PluginUnavailable` (with the reason) when hdf5plugin
  or a symbol is missing; callers then leave the filter to HDF5.
- These are private names of hdf5plugin's binaries; ``tests/test_encode.py`` names the
  versions assumed.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BitshuffleLibrary",
    "BloscLibrary",
    "Lz4Library",
    "PluginUnavailable",
    "ZstdLibrary",
    "library_versions",
    "plugin_library",
]

Bytes = npt.NDArray[np.uint8]

_SIZE = ctypes.c_size_t
_PTR = ctypes.c_void_p


class PluginUnavailable(Exception):  # an internal signal, turned into DirectWriteError
    """Why a plugin's compression library cannot be called (the message)."""


def _address(array: Bytes) -> int:
    address: int = array.ctypes.data
    return address


@functools.cache
def plugin_library(plugin: str) -> ctypes.CDLL:
    """The shared object of hdf5plugin's filter plugin ``plugin`` (``"zstd"``, ``"lz4"``,
    ``"blosc"``, ``"bshuf"``), loaded once (HDF5 already loaded it: the same handle); only a
    plugin hdf5plugin registered with HDF5, the one HDF5 runs."""
    try:
        import hdf5plugin
    except ImportError as exc:
        raise PluginUnavailable("hdf5plugin is not installed") from exc
    config = getattr(hdf5plugin, "get_config", None)  # hdf5plugin >= 4
    registered = dict(config().registered_filters) if config is not None else {}
    path = registered.get(plugin)
    if path is None:  # HDF5 may run another plugin for this filter: its bytes are unknown
        raise PluginUnavailable(
            f"hdf5plugin {hdf5plugin.version} did not register its {plugin} filter here"
        )
    try:
        return ctypes.CDLL(path)
    except OSError as exc:
        raise PluginUnavailable(f"cannot load {path}: {exc}") from exc


def _bind(library: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> Any:
    try:
        function = getattr(library, name)
    except AttributeError as exc:
        raise PluginUnavailable(f"{library._name} does not export {name}") from exc
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


class ZstdLibrary:
    """Zstd as hdf5plugin's Zstd filter (32015) calls it: ``ZSTD_compress`` at a level."""

    def __init__(self) -> None:
        lib = plugin_library("zstd")
        self._bound = _bind(lib, "ZSTD_compressBound", _SIZE, _SIZE)
        self._compress = _bind(lib, "ZSTD_compress", _SIZE, _PTR, _SIZE, _PTR, _SIZE, ctypes.c_int)
        self._is_error = _bind(lib, "ZSTD_isError", ctypes.c_uint, _SIZE)
        self.min_level = int(_bind(lib, "ZSTD_minCLevel", ctypes.c_int)())
        self.max_level = int(_bind(lib, "ZSTD_maxCLevel", ctypes.c_int)())
        self.version = _number_version(_bind(lib, "ZSTD_versionNumber", ctypes.c_uint)())

    def compress(self, data: Bytes, level: int) -> Bytes:
        out = np.empty(self._bound(data.size), dtype=np.uint8)
        size = self._compress(_address(out), out.size, _address(data), data.size, level)
        if self._is_error(size):
            raise RuntimeError(f"ZSTD_compress failed (code {size})")
        return out[:size]


class Lz4Library:
    """LZ4 as hdf5plugin's LZ4 filter (32004) calls it on each block: ``LZ4_compress_default``
    into room for ``LZ4_compressBound`` bytes."""

    def __init__(self) -> None:
        lib = plugin_library("lz4")
        self._bound = _bind(lib, "LZ4_compressBound", ctypes.c_int, ctypes.c_int)
        self._compress = _bind(
            lib, "LZ4_compress_default", ctypes.c_int, _PTR, _PTR, ctypes.c_int, ctypes.c_int
        )
        self.version = _number_version(_bind(lib, "LZ4_versionNumber", ctypes.c_int)())

    def bound(self, size: int) -> int:
        return int(self._bound(size))

    def compress_into(self, data: Bytes, start: int, size: int, out: Bytes, at: int) -> int:
        """Compress ``data[start:start + size]`` into ``out[at:]`` (room for the bound);
        the compressed size, 0 on failure."""
        room = self._bound(size)
        if at + room > out.size:
            raise ValueError(f"LZ4 output needs {room} bytes at {at}, buffer has {out.size}")
        return int(self._compress(_address(data) + start, _address(out) + at, size, room))


class BloscLibrary:
    """c-blosc as hdf5plugin's Blosc filter (32001) calls it: the filter compresses with the
    global ``blosc_compress`` into room for exactly the chunk's size; ``blosc_compress_ctx``
    with one internal thread and the automatic block size gives the same bytes without
    touching c-blosc's global state (the equality is tested)."""

    def __init__(self) -> None:
        lib = plugin_library("blosc")
        self._compress = _bind(
            lib,
            "blosc_compress_ctx",
            ctypes.c_int,
            ctypes.c_int,  # clevel
            ctypes.c_int,  # doshuffle
            _SIZE,  # typesize
            _SIZE,  # nbytes
            _PTR,  # src
            _PTR,  # dest
            _SIZE,  # destsize
            ctypes.c_char_p,  # compressor
            _SIZE,  # blocksize
            ctypes.c_int,  # numinternalthreads
        )
        self._compname = _bind(
            lib,
            "blosc_compcode_to_compname",
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p),
        )
        version = _bind(lib, "blosc_get_version_string", ctypes.c_char_p)()
        self.version = version.decode() if version else "?"

    def compressor_name(self, code: int) -> bytes | None:
        """The name of compressor ``code`` in this build, or None if it lacks it."""
        name = ctypes.c_char_p()
        if self._compname(code, ctypes.byref(name)) < 0 or not name.value:
            return None
        return name.value

    def compress(
        self, data: Bytes, clevel: int, shuffle: int, typesize: int, compressor: bytes
    ) -> Bytes | None:
        """Compress into room for ``data.size`` bytes, as the filter does; None when the
        result does not fit (the filter then fails and HDF5 skips it)."""
        out = np.empty(max(data.size, 1), dtype=np.uint8)
        size = self._compress(
            clevel,
            shuffle,
            typesize,
            data.size,
            _address(data),
            _address(out),
            data.size,
            compressor,
            0,
            1,
        )
        # The filter fails on anything but a positive size (HDF5 then skips it): so do we.
        return out[:size] if size > 0 else None


class BitshuffleLibrary:
    """bitshuffle as hdf5plugin's bitshuffle filter (32008) calls it."""

    def __init__(self) -> None:
        lib = plugin_library("bshuf")
        three = (_PTR, _PTR, _SIZE, _SIZE, _SIZE)  # in, out, elements, element size, block
        self._lz4_bound = _bind(lib, "bshuf_compress_lz4_bound", _SIZE, _SIZE, _SIZE, _SIZE)
        self._lz4 = _bind(lib, "bshuf_compress_lz4", ctypes.c_int64, *three)
        self._zstd_bound = _bind(lib, "bshuf_compress_zstd_bound", _SIZE, _SIZE, _SIZE, _SIZE)
        self._zstd = _bind(lib, "bshuf_compress_zstd", ctypes.c_int64, *three, ctypes.c_int)
        self._shuffle = _bind(lib, "bshuf_bitshuffle", ctypes.c_int64, *three)
        self._default_block = _bind(lib, "bshuf_default_block_size", _SIZE, _SIZE)

    def default_block_size(self, elem_size: int) -> int:
        """The block size (elements) the filter uses when its option is 0."""
        return int(self._default_block(elem_size))

    def bitshuffle(self, data: Bytes, elem_size: int, block_size: int) -> Bytes:
        out = np.empty_like(data)
        done = self._shuffle(
            _address(data), _address(out), data.size // elem_size, elem_size, block_size
        )
        if done < 0:
            raise RuntimeError(f"bshuf_bitshuffle failed (code {done})")
        return out

    def compress(
        self, data: Bytes, elem_size: int, block_size: int, codec: str, level: int, at: int
    ) -> tuple[Bytes, int]:
        """Bit-shuffle and compress ``data`` (``codec`` "lz4" or "zstd") into a new array at
        offset ``at`` (room for a header); the array and the end of the compressed bytes."""
        count = data.size // elem_size
        if codec == "lz4":
            out = np.empty(at + self._lz4_bound(count, elem_size, block_size), dtype=np.uint8)
            size = self._lz4(_address(data), _address(out) + at, count, elem_size, block_size)
        else:
            out = np.empty(at + self._zstd_bound(count, elem_size, block_size), dtype=np.uint8)
            size = self._zstd(
                _address(data), _address(out) + at, count, elem_size, block_size, level
            )
        if size < 0:
            raise RuntimeError(f"bshuf_compress_{codec} failed (code {size})")
        return out, at + int(size)


def _number_version(number: int) -> str:
    """``major * 10000 + minor * 100 + release`` (LZ4's and Zstd's convention) as text."""
    return f"{number // 10000}.{number // 100 % 100}.{number % 100}"


def library_versions() -> dict[str, str]:
    """Versions of the compression libraries in hdf5plugin's plugins (for the record)."""
    versions: dict[str, str] = {}
    for name, factory in (("zstd", ZstdLibrary), ("lz4", Lz4Library), ("blosc", BloscLibrary)):
        try:
            versions[name] = factory().version
        except PluginUnavailable as exc:
            versions[name] = f"unavailable ({exc})"
    return versions
