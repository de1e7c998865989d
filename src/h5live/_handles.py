"""One open handle per dataset in a process: the HDF5 2.0 refresh hazard, guarded.

Contract
--------
- With HDF5 2.0, ``refresh()`` on a chunked dataset while a second handle on the *same* dataset
  is open in the process (``f["data"]`` twice, or the file opened twice) makes the handles read
  wrong data silently: every chunk read as the first one (key values of other frames), or
  "can't insert duplicate key" errors. Measured with h5py 3.16, on complete files as on files a
  writer is growing. Contiguous datasets and single-chunk ones were not affected.
- :func:`check_single_handle` runs before every refresh h5live does. It costs one call to
  ``H5Fget_obj_count`` (about 1.4 µs) while the number of open datasets in the process is
  unchanged, and a scan of the open datasets (about 17 µs each) when it changed. A second
  handle on a chunked dataset raises :class:`h5live.errors.DuplicateHandleError` naming the
  file, the dataset, the number of handles and the fix, before any wrong data can be read.
- Sharing one handle does not help: ``H5Drefresh`` refuses an identifier whose reference count
  is above one ("ID already in use"), so h5live never wraps a handle it did not open.
"""

from __future__ import annotations

from typing import Any

import h5py
from h5py import h5d, h5f, h5o

from h5live.errors import DuplicateHandleError

__all__ = ["check_single_handle"]

# Open datasets in the process at the last scan, and how many handles each handle's dataset had.
_scan_count = -1
_handles_of: dict[int, int] = {}


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
        groups.setdefault(_identity(object_id), []).append(object_id.id)
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
    global _scan_count, _handles_of
    object_id = getattr(dataset, "id", None)
    if not isinstance(object_id, h5py.h5d.DatasetID):
        return
    count = h5f.get_obj_count(h5f.OBJ_ALL, h5f.OBJ_DATASET)
    if count != _scan_count or object_id.id not in _handles_of:
        _handles_of = _handle_counts()
        _scan_count = count
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
