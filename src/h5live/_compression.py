"""Compression of h5live's outputs (and of the simulated detector's data), by name or filter.

Contract
--------
- A compression is ``None``, ``"gzip"`` or ``"lzf"`` (built into HDF5), the name of an
  hdf5plugin filter (``"zstd"``, ``"lz4"``, ``"blosc"``, ``"blosc2"``, ``"bitshuffle"``), an
  hdf5plugin filter object or any mapping of h5py dataset options, or an HDF5 filter id.
- :func:`filter_options` gives h5py's ``create_dataset`` options; :func:`h5dataio_options`
  gives hdmf ``H5DataIO``'s, with ``allow_plugin_filters`` set for plugin filters.
- An unknown name raises ``ValueError`` listing the known ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PLUGIN_FILTERS", "filter_options", "h5dataio_options"]

PLUGIN_FILTERS = ("zstd", "lz4", "blosc", "blosc2", "bitshuffle")

Compression = str | int | Mapping[str, Any] | None


def filter_options(compression: Compression) -> dict[str, Any]:
    """h5py ``create_dataset`` options for ``compression``."""
    if compression is None:
        return {}
    if isinstance(compression, Mapping):
        return dict(compression)
    if isinstance(compression, str) and compression.isdigit():  # a filter id from the CLI
        compression = int(compression)
    if isinstance(compression, int):
        return {"compression": compression}
    if compression in ("gzip", "lzf"):
        return {"compression": compression}
    if compression not in PLUGIN_FILTERS:
        raise ValueError(
            f"unknown compression {compression!r}. Fix: use one of gzip, lzf, "
            f"{', '.join(PLUGIN_FILTERS)}, an hdf5plugin filter object or an HDF5 filter id."
        )
    import hdf5plugin

    factories: dict[str, Any] = {
        "zstd": hdf5plugin.Zstd,
        "lz4": hdf5plugin.LZ4,
        "blosc": hdf5plugin.Blosc,
        "blosc2": hdf5plugin.Blosc2,
        "bitshuffle": hdf5plugin.Bitshuffle,
    }
    return dict(factories[compression]())


def h5dataio_options(
    compression: Compression, compression_opts: Any = None, shuffle: bool = False
) -> dict[str, Any]:
    """``H5DataIO`` options for ``compression`` (plus its level or options, and shuffle)."""
    options = filter_options(compression)
    if compression_opts is not None:
        options["compression_opts"] = compression_opts
    if isinstance(options.get("compression"), int):
        options["allow_plugin_filters"] = True
        import hdf5plugin  # noqa: F401  (registers the filters with HDF5)
    if shuffle:
        options["shuffle"] = True
    return options
