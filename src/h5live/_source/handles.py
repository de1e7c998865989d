"""One open handle per dataset in a process: the HDF5 2.0 refresh hazard, guarded.

Contract
--------
- With HDF5 2.0, ``refresh()`` on a chunked dataset while a second handle on the *same* dataset
  is open in the process (``f["data"]`` twice, or the file opened twice) makes the handles read
  wrong data silently: every chunk read as the first one (key values of other frames), or
  "can't insert duplicate key" errors. Measured with h5py 3.16, on complete files as on files a
  writer is growing. Contiguous datasets and single-chunk ones were not affected.
- :func:`check_single_handle` runs before every refresh h5live does. It lists the open dataset
  handles of the process (``H5Fget_obj_ids`` through ctypes, about 3 µs for ten) and, when that
  set changed since the last check, looks up which dataset each refers to (about 17 µs each).
  A second handle on a chunked dataset raises :class:`h5live.errors.DuplicateHandleError`
  naming the file, the dataset, the number of handles and the fix, before any wrong data can
  be read.
- Sharing one handle does not help: ``H5Drefresh`` refuses an identifier whose reference count
  is above one ("ID already in use"), so h5live never wraps a handle it did not open.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5f, h5o
from h5py._objects import phil

from h5live.errors import DuplicateHandleError

__all__ = ["check_single_handle"]

# The open dataset handles at the last scan, and how many handles each one's dataset had.
_scanned: bytes | frozenset[int] = b""
_handles_of: dict[int, int] = {}


def _find_native_lister() -> Callable[[], bytes] | None:
    """``H5Fget_obj_ids`` of the HDF5 library h5py loaded, called through ctypes: the open
    dataset identifiers as bytes, in about 3 µs. h5py's own wrapper builds an object per
    identifier (about 5 µs each). None where the library cannot be found (then h5py's is used).
    """
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libhdf5" in line}
        path = next(
            p
            for p in sorted(paths)
            if os.path.basename(p).startswith("libhdf5-")
            or os.path.basename(p).startswith("libhdf5.so")
        )
        library = ctypes.CDLL(path)
    except (OSError, StopIteration, IndexError):
        return None
    count = library.H5Fget_obj_count
    count.restype, count.argtypes = ctypes.c_ssize_t, [ctypes.c_int64, ctypes.c_uint]
    listing = library.H5Fget_obj_ids
    listing.restype = ctypes.c_ssize_t
    listing.argtypes = [ctypes.c_int64, ctypes.c_uint, ctypes.c_size_t, ctypes.c_void_p]

    with h5py.File("h5live-probe", "w", driver="core", backing_store=False):  # the same library?
        if count(h5f.OBJ_ALL, h5f.OBJ_FILE) != h5f.get_obj_count(h5f.OBJ_ALL, h5f.OBJ_FILE):
            return None

    room = np.empty(256, dtype=np.int64)  # most processes have fewer open datasets

    def lister() -> bytes:
        with phil:  # h5py's lock: HDF5 is not thread-safe
            n = listing(h5f.OBJ_ALL, h5f.OBJ_DATASET, room.size, room.ctypes.data)
            if n < room.size:
                return room[: max(n, 0)].tobytes()
            ids = np.empty(count(h5f.OBJ_ALL, h5f.OBJ_DATASET), dtype=np.int64)
            n = listing(h5f.OBJ_ALL, h5f.OBJ_DATASET, ids.size, ids.ctypes.data)
            return ids[: max(n, 0)].tobytes()

    return lister


_native_lister: Callable[[], bytes] | bool | None = False  # False: not looked for yet


def _open_dataset_ids() -> bytes | frozenset[int]:
    """A value that changes whenever the set of open dataset handles in the process does."""
    global _native_lister
    if _native_lister is False:
        _native_lister = _find_native_lister()
    if callable(_native_lister):
        return _native_lister()
    return frozenset(one.id for one in h5f.get_obj_ids(h5f.OBJ_ALL, h5f.OBJ_DATASET))


def _identity(object_id: Any) -> tuple[tuple[int, int], int]:
    info = h5o.get_info(object_id)
    return info.fileno, info.addr


def _handle_counts() -> dict[int, int]:
    """For every open dataset handle in the process, how many handles its dataset has.

    The wrappers ``get_obj_ids`` returns hold references; they die here, so that no frame
    (e.g. a traceback's) keeps a handle open.
    """
    groups: dict[tuple[tuple[int, int], int], list[int]] = {}
    for object_id in h5f.get_obj_ids(h5f.OBJ_ALL, h5f.OBJ_DATASET):
        try:
            identity = _identity(object_id)
        except (ValueError, RuntimeError, KeyError):
            # closed since it was listed, by another thread (a reader beside a conversion):
            # a handle that is gone is no duplicate
            continue
        groups.setdefault(identity, []).append(object_id.id)
    return {hid: len(hids) for hids in groups.values() for hid in hids}


def check_single_handle(dataset: Any) -> None:
    """Raise if another handle on the chunked ``dataset`` is open in this process.

    Contiguous datasets (and chunked ones of a single chunk) were measured unharmed, so
    programs that open those twice keep working.

    Raises
    ------
    DuplicateHandleError
        Two or more handles are open on a chunked dataset: a refresh would corrupt their reads.
    """
    global _scanned, _handles_of
    object_id = getattr(dataset, "id", None)
    if not isinstance(object_id, h5py.h5d.DatasetID):
        return
    # The set of open handles, not their number: closing one and opening a duplicate keeps it.
    open_ids = _open_dataset_ids()
    if open_ids != _scanned:
        _handles_of = _handle_counts()
        _scanned = open_ids
    handles = _handles_of.get(object_id.id, 1)
    if handles > 1 and object_id.get_create_plist().get_layout() == h5d.CHUNKED:
        raise DuplicateHandleError(
            f"{dataset.file.filename!r}: dataset {dataset.name!r} is open {handles} times in "
            "this process. With HDF5 2.0, refreshing a chunked dataset while a second handle "
            "on it is open makes both read wrong chunks, so h5live stops here. "
            "Fix: open each dataset once and pass that object to h5live (share one KeyFollower "
            "between readers of a file, or reuse follower.key_datasets), and close or delete "
            "the other copies. In a worker process started by fork, the parent's open handles "
            "are inherited: start workers with the 'spawn' method."
        )
