"""copy_live: an HDF5 copy of a live source, written while the source is, itself followable.

Contract
--------
- Data datasets (those that grow with the scan: their leading dims are the keys' scan dims,
  chunked) are copied through a :class:`~h5live.LiveDataChunkIterator` each: the destination
  dataset is made as hdmf would from the iterator and the ``H5DataIO`` options, with no rows
  (:mod:`h5live._write.destination`), and written by the one live write loop
  (:mod:`h5live._write.loop`). Every data dataset shares one :class:`~h5live.KeyFollower` and the
  same chunk rows, so they advance together.
- Everything else (groups, attributes, static datasets) is copied once at the start, except the
  source's keys and finished flag: the destination has its own
  (:mod:`h5live._write.output`), set only for frames written to every data dataset. The
  destination is in SWMR mode while it is written, so h5live and swmr_tools can follow it.
- It ends when the source stops. ``complete`` (finished flag set) if the source finished and
  every frame was copied; else ``incomplete`` with the stop reason. Ctrl-C marks it
  ``interrupted``, a write error ``failed`` (raising :class:`~h5live.errors.OutputError`); the
  file is closed valid in every case and never holds a key for a frame it does not hold.
- ``resume=True`` continues an output of the same source from its last complete chunk row (a
  converter killed with SIGKILL included: its writer flags are cleared first); rows written
  twice hold the same data. An existing destination is refused without ``resume`` or
  ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import h5py

from h5live._follow.follower import KeyFollower
from h5live._read.filters import SOURCE, Compression
from h5live._source.spec import object_identity, source_path, walk_datasets
from h5live._source.virtual import is_virtual
from h5live._stages import Stage
from h5live._write.conversion import (
    Conversion,
    ConversionResult,
    LiveOptions,
    conversion_filters,
    stages_by_path,
)
from h5live._write.destination import create_live_dataset
from h5live._write.options import ConversionOptions
from h5live._write.output import HDF5_LAYOUT
from h5live.errors import H5LiveError

__all__ = ["copy_live", "data_datasets"]


def data_datasets(file: Any, follower: KeyFollower) -> list[str]:
    """Paths of the datasets that grow with the scan: chunked or virtual, leading dims the
    keys' scan (a scan of one frame: a first axis of 1); also those in other files that
    external links of ``file`` reach (a master file's detector data), by their path in
    ``file``."""
    rank = follower.scan_rank
    bookkeeping = [*follower.key_datasets, follower.finished_dataset]
    skip = {object_identity(d) for d in bookkeeping if isinstance(d, h5py.Dataset)}
    inner = tuple(follower.key_datasets[0].shape[1:rank])
    found: list[str] = []
    for path, dataset in walk_datasets(file):
        grows = dataset.chunks is not None or is_virtual(dataset)
        if rank:
            scan = len(dataset.shape) >= rank and dataset.shape[1:rank] == inner
        else:  # keys of one frame (shape (1,)): a stack of that one frame
            scan = len(dataset.shape) >= 1 and dataset.shape[0] == 1
        if grows and scan and object_identity(dataset) not in skip:
            found.append(path)
    return sorted(found)


def _bookkeeping(file: Any, follower: KeyFollower) -> set[str]:
    """The source's keys and finished flag (their paths in ``file``), and a group holding only
    them: the copy has its own."""
    names = {source_path(k) for k in follower.key_datasets}
    if follower.finished_dataset is not None:
        names.add(source_path(follower.finished_dataset))
    for key in follower.key_datasets:
        parent = source_path(key).rsplit("/", 1)[0]
        group = file.get(parent) if parent else None
        if isinstance(group, h5py.Group) and all(f"{parent}/{m}" in names for m in group):
            names.add(parent)
    return names


def _copy_static(source: Any, destination: Any, skip: set[str]) -> None:
    """Groups with their attributes, and every dataset not in ``skip``, copied once (a virtual
    one as an ordinary dataset of its values: the copy must not depend on other files)."""
    destination.attrs.update(source.attrs)

    def visit(name: str, obj: Any) -> None:
        path = "/" + name
        if path in skip or any(path.startswith(s.rstrip("/") + "/") for s in skip):
            return
        if isinstance(obj, h5py.Group):
            destination.require_group(path).attrs.update(obj.attrs)
        elif isinstance(obj, h5py.Dataset) and path not in destination and is_virtual(obj):
            made = destination.require_group(obj.parent.name).create_dataset(
                path.rsplit("/")[-1], data=obj[()]
            )
            made.attrs.update(obj.attrs)
        elif isinstance(obj, h5py.Dataset) and path not in destination:
            source.copy(obj, destination.require_group(obj.parent.name), name=path.rsplit("/")[-1])

    source.visititems(visit)


def copy_live(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    datasets: Sequence[str] | None = None,
    compression: Compression = SOURCE,
    compression_opts: Any = None,
    shuffle: bool = False,
    stages: Sequence[Stage] | Mapping[str, Sequence[Stage]] | None = None,
    options: ConversionOptions | None = None,
    **keywords: Any,
) -> ConversionResult:
    """Copy a live source into an HDF5 file, incrementally, as a live source itself.

    Parameters
    ----------
    source, destination
        The file being written, and the copy.
    datasets
        Data datasets to copy live (default: every dataset that grows with the scan). Static
        datasets, groups and attributes are always copied.
    compression, compression_opts, shuffle
        The copy's filters: ``"source"`` (the default: each dataset's own filters, and the
        source's chunks where they hold at least 64 KiB, so that stored chunks are copied raw,
        never decoded), ``None``, ``"gzip"`` (with a level), ``"lzf"``, an hdf5plugin filter
        name or object (``"zstd"``, ``hdf5plugin.Blosc(...)``), as for ``H5DataIO``.
    stages
        Processing stages (:class:`h5live.Stage`) applied to each buffer of complete frames
        before it is written: a list for the data dataset with the largest frames (the
        detector's), or a mapping from source dataset paths to lists. The copy holds their
        output (its frame shape and dtype) and is followable like any other.
    options
        How to follow the source and write the copy (:class:`h5live.ConversionOptions`).
    **keywords
        Any field of :class:`h5live.ConversionOptions`, overriding ``options``: ``key_paths``,
        ``finished_path``, ``chunk_mb``, ``chunk_shape``, ``buffer_gb``, ``buffer_shape``
        (default: buffers of 128 MB), ``max_latency_s`` (default 1 s: a complete frame is in
        the copy within about that long), ``timeout``, ``poll_interval_s``,
        ``open_timeout_s``, ``resume``, ``overwrite``, ``display_progress``,
        ``progress_bar_class``, ``progress_bar_options``.

    Returns
    -------
    ConversionResult

    Raises
    ------
    TypeError
        A keyword that is neither a parameter nor a field of ``ConversionOptions``.
    OutputExistsError
        The destination exists (without ``resume`` or ``overwrite``), or cannot be resumed.
    OutputError
        Writing failed (e.g. disk full); the output is marked ``failed`` and can be resumed.
    KeyboardInterrupt
        After marking the output ``interrupted`` (it can be resumed).
    """
    given = ConversionOptions.of(options, keywords, "copy_live")
    with Conversion.of(source, destination, HDF5_LAYOUT, given) as conversion:
        follower, source_file = conversion.follower, conversion.source_file
        paths = list(datasets) if datasets is not None else data_datasets(source_file, follower)
        if not paths:
            raise H5LiveError(
                f"no dataset of {conversion.source_path!r} grows with its scan (keys "
                f"{[source_path(k) for k in follower.key_datasets]}). Fix: pass datasets=[...] "
                "(--data) naming the data."
            )
        sources = conversion.live_datasets(paths)  # before the destination is touched
        paths = [source_path(dataset) for dataset in sources]  # the master's, through links
        live = LiveOptions.of(given)
        live = dataclasses.replace(live, stages=stages_by_path(stages, sources))
        live, filters = conversion_filters(live, compression, compression_opts, shuffle, sources)
        conversion.check_options(sources, live)
        if conversion.open_destination():
            pairs = conversion.resume_iterators(live, sources)
        else:
            iterators = conversion.live_iterators(sources, live)
            skip = {*paths, *_bookkeeping(source_file, follower)}
            skip |= {HDF5_LAYOUT.status, HDF5_LAYOUT.keys}
            _copy_static(source_file, conversion.file, skip)
            pairs = []
            for path, iterator, dataset, settings in zip(
                paths, iterators, sources, filters, strict=True
            ):
                made = create_live_dataset(conversion.file, path, iterator, settings)
                made.attrs.update(dataset.attrs)
                pairs.append((made, iterator))
            conversion.create_output(paths)
        return conversion.write(pairs)
