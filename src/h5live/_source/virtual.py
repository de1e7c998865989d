"""Virtual datasets (VDS) of a master file: where their frames live, and whether they are there.

Contract
--------
- A VDS (layout ``H5D_VIRTUAL``) has no storage of its own: its ``chunks`` is None and its
  storage size 0, as for an unallocated contiguous dataset, but it is not one. HDF5 reads it
  from its *source datasets*, usually in other files that other processes write in SWMR mode
  (Odin's frame processors, interleaved in blocks).
- h5py caches a VDS's shape like any dataset's, and ``refresh()`` on the VDS reloads its source
  datasets. Refresh the keys, then the VDS, then read: with that order every frame read right
  while the writers ran (measured: without the data refresh a pre-sized VDS read 198 of 200
  frames as fill values although their keys were set). :class:`h5live.FrameReader` refreshes
  the data before reading frames past those complete at its last refresh, so a VDS needs
  nothing more there.
- HDF5 reads a source it cannot open (file not created yet, a wrong dataset name) as fill
  values, silently, and tries it again on later reads. :func:`missing_sources` says which
  sources cannot be opened now; :class:`h5live.SourceSpec` waits for them within its open
  timeout and then raises :class:`~h5live.errors.SourceNotReadyError` naming them, so that no
  fill value is read as a frame.
- Source file names resolve as HDF5 resolves them: an absolute path as it is, else relative to
  each folder of ``HDF5_VDS_PREFIX`` (``${ORIGIN}`` is the master's folder), then the master's
  folder, then the working directory; ``"."`` is the master itself. A name with a printf-style
  ``%b`` block number cannot be listed and is not checked.
- Stored chunks live in the source files: reading or copying raw chunks does not apply to a
  VDS, whose frames are read through HDF5 (decoded), split at the rows where its mappings
  start and end (:class:`VirtualRows`): HDF5 reads a selection across mappings very slowly.
  :func:`first_source` opens the first source dataset on its own, for its filters and chunk
  shape; :func:`load_source_filters` registers hdf5plugin's filters when the sources need a
  plugin filter.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import h5py

__all__ = [
    "VirtualRows",
    "first_source",
    "is_virtual",
    "load_source_filters",
    "missing_sources",
    "source_file_path",
    "virtual_sources",
]


def is_virtual(dataset: Any) -> bool:
    """Whether ``dataset`` is an h5py virtual dataset (False for arrays and other objects)."""
    try:
        return bool(dataset.id.get_create_plist().get_layout() == h5py.h5d.VIRTUAL)
    except AttributeError:
        return False


def virtual_sources(dataset: Any) -> list[tuple[str, str]]:
    """The distinct ``(file name, dataset path)`` of a VDS's source datasets, in mapping order,
    as stored (file names may be relative)."""
    seen: dict[tuple[str, str], None] = {}
    for mapping in dataset.virtual_sources():
        seen.setdefault((str(mapping.file_name), str(mapping.dset_name)), None)
    return list(seen)


def _search_folders(master: str) -> list[str]:
    """Where HDF5 looks for a relative source file name of a VDS in ``master``."""
    origin = os.path.dirname(os.path.abspath(master))
    prefixes = os.environ.get("HDF5_VDS_PREFIX", "")
    folders = [p.replace("${ORIGIN}", origin) for p in prefixes.split(os.pathsep) if p]
    return [*folders, origin, os.getcwd()]


def source_file_path(master: str, name: str) -> str | None:
    """The file that source file name ``name`` of a VDS in ``master`` refers to, or None if
    there is none (yet)."""
    if name == ".":
        return master
    if os.path.isabs(name):
        base = os.path.basename(name)
        candidates = [name, *(os.path.join(f, base) for f in _search_folders(master))]
    else:
        candidates = [os.path.join(folder, name) for folder in _search_folders(master)]
    return next((path for path in candidates if os.path.isfile(path)), None)


def _problem(master: str, name: str, path: str) -> str | None:
    """Why source ``path`` in file ``name`` cannot be read now; None if it can."""
    if "%" in name or "%" in path:
        return None  # printf-style names: HDF5 makes one source per block, not listable here
    found = source_file_path(master, name)
    if found is None:
        looked = ", ".join(dict.fromkeys(_search_folders(master)))
        return f"{name!r} does not exist (looked in {looked})"
    if found == master:
        return None  # a VDS over datasets of its own file: nothing to wait for
    try:
        with h5py.File(found, "r", libver="latest", swmr=True) as source:
            if source.get(path, getlink=True) is None:
                return f"{found!r} has no dataset {path!r}"
    except OSError as exc:
        return f"{found!r} cannot be opened for SWMR reading yet ({exc})"
    return None


def missing_sources(dataset: Any) -> list[str]:
    """Why each source of the VDS ``dataset`` that cannot be read now cannot, one line each
    (empty: every source can be read, or ``dataset`` is not virtual)."""
    if not is_virtual(dataset):
        return []
    master = dataset.file.filename
    problems = (_problem(master, name, path) for name, path in virtual_sources(dataset))
    return [problem for problem in problems if problem is not None]


class VirtualRows:
    """Where the mappings of a VDS start and end along its first axis, to split reads there.

    HDF5 reads a selection that spans several mappings (blocks of frames from several files)
    through its slow path for irregular selections: 64 interleaved frames of 256x256 uint16
    took 150 ms in one read, 1 ms read block by block (measured, HDF5 2.0). A read split at
    these rows lies inside one mapping per piece.
    """

    def __init__(self, mappings: Sequence[tuple[int, int, int, int]]) -> None:
        #: (start, stride, count, block) along the first axis; count or block may be unlimited
        self.mappings = list(mappings)

    @classmethod
    def of(cls, dataset: Any) -> VirtualRows | None:
        """The rows of a VDS whose mappings are regular hyperslabs; None for another dataset,
        or a VDS whose mappings cannot be split at rows (it is read whole)."""
        if not is_virtual(dataset):
            return None
        plist = dataset.id.get_create_plist()
        mappings = []
        for k in range(plist.get_virtual_count()):
            space = plist.get_virtual_vspace(k)
            if space.get_select_type() != h5py.h5s.SEL_HYPERSLABS:
                return None
            if not space.is_regular_hyperslab():
                return None
            start, stride, count, block = space.get_regular_hyperslab()
            mappings.append((int(start[0]), int(stride[0]), int(count[0]), int(block[0])))
        return cls(mappings) if len(mappings) > 1 else None

    def split(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """``[lo, hi)`` cut at every row where a mapping starts or ends."""
        cuts = {lo, hi}
        unlimited = h5py.h5s.UNLIMITED
        for start, stride, count, block in self.mappings:
            step = max(stride, 1)
            first = max(0, (lo - start - (0 if block == unlimited else block)) // step)
            last = max(first, (hi - start) // step + 1)
            if count != unlimited:
                last = min(last, count)
            for k in range(first, last):
                begin = start + k * step
                ends = (begin,) if block == unlimited else (begin, begin + block)
                cuts.update(row for row in ends if lo < row < hi)
        rows = sorted(cuts)
        return list(itertools.pairwise(rows))

    def __repr__(self) -> str:
        return f"<VirtualRows mappings={len(self.mappings)}>"


#: Filters HDF5 and h5py register themselves: deflate, shuffle, fletcher32, szip, n-bit,
#: scale-offset, and lzf. Any other is a plugin filter.
_REGISTERED_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})


def load_source_filters(dataset: Any) -> None:
    """Register hdf5plugin's filters if the first source of the VDS ``dataset`` needs a plugin
    filter (bitshuffle, Blosc, LZ4, Zstd...): HDF5 decodes a VDS's frames itself, where h5live
    would decode a plain dataset's chunks in Python. Without hdf5plugin installed, reading
    fails later with a message saying so."""
    with first_source(dataset) as source:
        if source is None:
            return
        plist = source.id.get_create_plist()
        codes = {plist.get_filter(k)[0] for k in range(plist.get_nfilters())}
    if codes - _REGISTERED_FILTERS:
        with contextlib.suppress(ImportError):
            import hdf5plugin  # noqa: F401  (registers the plugin filters with HDF5)


@contextlib.contextmanager
def first_source(dataset: Any) -> Iterator[Any | None]:
    """The first source dataset of the VDS ``dataset``, open on its own in SWMR mode (closed
    on exit); None if it cannot be opened. Close it before the VDS is refreshed again: with
    HDF5 2.0 two open handles on one dataset make refreshes read wrong data."""
    sources = virtual_sources(dataset)
    found = source_file_path(dataset.file.filename, sources[0][0]) if sources else None
    if found is None or found == dataset.file.filename:
        yield None
        return
    try:
        file = h5py.File(found, "r", libver="latest", swmr=True)
    except OSError:
        yield None
        return
    with file:
        source = file.get(sources[0][1])
        yield source if isinstance(source, h5py.Dataset) else None
