"""Compression of h5live's outputs (and of the simulated detector's data), by name or filter.

Contract
--------
- A compression is ``None``, ``"gzip"`` or ``"lzf"`` (built into HDF5), the name of an
  hdf5plugin filter (``"zstd"``, ``"lz4"``, ``"blosc"``, ``"blosc2"``, ``"bitshuffle"``), an
  hdf5plugin filter object or any mapping of h5py dataset options, or an HDF5 filter id.
- :func:`filter_options` gives h5py's ``create_dataset`` options; :func:`h5dataio_options`
  gives hdmf ``H5DataIO``'s, with ``allow_plugin_filters`` set for plugin filters.
- An unknown name raises ``ValueError`` listing the known ones.
- ``"source"`` (:data:`SOURCE`) is each source dataset's own filters, rebuilt by
  :func:`source_compression` (shuffle, deflate, lzf, fletcher32 and plugin filters by id with
  their ``cd_values``); with the source's chunks too, its stored chunks are copied raw.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "PLUGIN_FILTERS",
    "SOURCE",
    "filter_options",
    "filter_pipeline",
    "h5dataio_options",
    "source_compression",
]

PLUGIN_FILTERS = ("zstd", "lz4", "blosc", "blosc2", "bitshuffle")

#: The compression that keeps each source dataset's own filters.
SOURCE = "source"

_SHUFFLE, _DEFLATE, _FLETCHER32, _SZIP, _NBIT, _SCALEOFFSET, _LZF = 2, 1, 3, 4, 5, 6, 32000
_BITSHUFFLE = 32008

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
            f"unknown compression {compression!r}. Fix: use one of source, gzip, lzf, "
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


def filter_pipeline(dataset: Any) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """``(filter id, cd_values)`` of each filter of ``dataset``, in pipeline order (flags left
    out: they say whether a filter may be skipped, not how a chunk is encoded)."""
    plist = dataset.id.get_create_plist()
    pipeline = []
    for k in range(plist.get_nfilters()):
        code, _flags, values, _name = plist.get_filter(k)
        pipeline.append((int(code), tuple(int(v) for v in values)))
    return tuple(pipeline)


def source_compression(dataset: Any) -> dict[str, Any]:
    """``H5DataIO`` options that give a new dataset the filters of ``dataset``.

    Raises
    ------
    ValueError
        A filter h5py cannot set from ``H5DataIO`` options (szip, n-bit, scale-offset, two
        compressors, shuffle after compression), named with the fix.
    """
    options: dict[str, Any] = {}
    pipeline = list(filter_pipeline(dataset))
    if pipeline and pipeline[0][0] == _SHUFFLE:
        options["shuffle"] = True
        pipeline.pop(0)
    if pipeline and pipeline[-1][0] == _FLETCHER32:
        options["fletcher32"] = True
        pipeline.pop()
    unsettable = (_SHUFFLE, _SZIP, _NBIT, _SCALEOFFSET)
    if len(pipeline) > 1 or any(code in unsettable for code, _ in pipeline):
        names = ", ".join(str(code) for code, _ in filter_pipeline(dataset))
        raise ValueError(
            f"the filters of {dataset.name!r} in {dataset.file.filename!r} (HDF5 filter ids "
            f"{names}) cannot be rebuilt from H5DataIO options. Fix: pass a compression "
            "(e.g. 'gzip' or 'zstd') for the copy."
        )
    if pipeline:
        code, values = pipeline[0]
        if code == _DEFLATE:
            options.update(compression="gzip", compression_opts=values[0] if values else 4)
        elif code == _LZF:
            options["compression"] = "lzf"
        else:
            import hdf5plugin  # noqa: F401  (registers the plugin filters with HDF5)

            options.update(compression=code, allow_plugin_filters=True)
            if code == _BITSHUFFLE:  # stored: its version and item size, then the user's
                values = values[3:]
            if values:
                options["compression_opts"] = values
    return options
