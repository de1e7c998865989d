"""hdmf's private names that h5live relies on: all of them, in this one module.

Each is used only where hdmf offers no public route, and ``tests/test_hdmf_private.py`` checks
each against the hdmf version named here, so that an hdmf release that moves one fails a test
that says which, instead of a live write.

- ``HDF5IO._HDF5IO__dci_queue`` (hdmf 6.2, set in ``HDF5IO.__init__``): the queue of chunk
  iterators that ``HDF5IO.write_dataset`` fills and ``write_builder`` exhausts before it returns.
  :func:`defer_chunk_iterators` puts a queue there that keeps the live ones aside, so that a
  live IO writes them itself after every object exists and the file is in SWMR mode (no public
  hook runs between "every object exists" and "the iterators are exhausted").
- ``HDF5IO._file`` (hdmf 6.2, a property): the h5py file an IO writes, which a live IO must
  switch to SWMR mode and hand to its write loop (:func:`io_file`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hdmf.backends.hdf5.h5_utils import HDF5IODataChunkIteratorQueue

__all__ = ["HDMF_VERSION_ASSUMED", "DeferringQueue", "defer_chunk_iterators", "io_file"]

#: The hdmf version whose private names this module uses.
HDMF_VERSION_ASSUMED = "6.2"

_QUEUE = "_HDF5IO__dci_queue"


class DeferringQueue(HDF5IODataChunkIteratorQueue):  # type: ignore[misc]
    """HDF5IO's queue of chunk iterators, except those ``defer`` picks: they are kept, with
    their destination datasets, in :attr:`deferred`, for the caller to write."""

    def __init__(self, defer: Callable[[Any], bool]) -> None:
        super().__init__()
        self.defer = defer
        self.deferred: list[tuple[Any, Any]] = []

    def append(self, dataset: Any, data: Any) -> None:
        if self.defer(data):
            self.deferred.append((dataset, data))
            return
        super().append(dataset, data)


def defer_chunk_iterators(io: Any, defer: Callable[[Any], bool]) -> DeferringQueue:
    """Make ``io`` (an hdmf ``HDF5IO``, just made) create the datasets of the chunk iterators
    that ``defer`` picks but leave their chunks unwritten; the queue that keeps them.

    Raises
    ------
    RuntimeError
        This hdmf has no such queue (its private names changed since hdmf
        :data:`HDMF_VERSION_ASSUMED`).
    """
    if not isinstance(getattr(io, _QUEUE, None), HDF5IODataChunkIteratorQueue):
        import hdmf

        raise RuntimeError(
            f"hdmf {hdmf.__version__}'s HDF5IO has no {_QUEUE} queue of chunk iterators (h5live "
            f"assumes hdmf {HDMF_VERSION_ASSUMED}'s private names). Fix: install hdmf "
            f"{HDMF_VERSION_ASSUMED}.x, or report it to h5live with that hdmf version."
        )
    queue = DeferringQueue(defer)
    setattr(io, _QUEUE, queue)
    return queue


def io_file(io: Any) -> Any:
    """The h5py file an hdmf ``HDF5IO`` writes (its ``_file``).

    Raises
    ------
    RuntimeError
        This hdmf has no such property (its private names changed since hdmf
        :data:`HDMF_VERSION_ASSUMED`), or the IO has no open file.
    """
    file = getattr(io, "_file", None)
    if file is None:
        import hdmf

        raise RuntimeError(
            f"hdmf {hdmf.__version__}'s HDF5IO {io!r} gives no open h5py file as _file (h5live "
            f"assumes hdmf {HDMF_VERSION_ASSUMED}'s private names). Fix: install hdmf "
            f"{HDMF_VERSION_ASSUMED}.x, or report it to h5live with that hdmf version."
        )
    return file
