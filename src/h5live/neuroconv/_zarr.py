"""LiveNWBZarrIO: hdmf-zarr's NWBZarrIO, with live sources written right, serial and parallel.

Why a subclass (hdmf-zarr 0.13)
-------------------------------
- ``ZarrIO.__setup_chunked_dataset__`` creates the Zarr array of an iterator at
  ``recommended_data_shape()``. A live iterator reports the rows complete at that moment (so
  that an HDF5 destination never shows rows not written yet as frames), also for a pre-sized
  source or one with ``final_scan_shape``.
- The serial writer grows the array before each chunk it writes: live sources work.
- The parallel writer (``number_of_jobs > 1``, ``ZarrIODataChunkIteratorQueue.exhaust_queue``)
  walks each iterator's ``buffer_selection_generator`` in this process, then worker processes
  write ``iterator._get_data(selection)`` into the array, which nothing resizes: the first
  selection past the rows complete at creation fails (``expected array with shape (14, 64,
  64), got (488, 64, 64)``) and the array keeps 14 rows. No public setting of hdmf-zarr gives
  the array another shape (``ZarrDataIO`` has no ``shape``) or resizes it before the workers
  write, and the iterator cannot know its array.

What it changes
---------------
- ``__setup_chunked_dataset__`` (the hook hdmf-zarr calls on the IO for each iterator's array)
  wraps the selections of a :class:`h5live.LiveDataChunkIterator`: each selection is handed out
  only once the array holds it (grown along the first axis here, in this process, before any
  worker writes), so the array ends at exactly the rows handed out, and never holds a row no
  selection covers.
- Selections are whole chunk rows of the array: releases that end inside a chunk row (the
  latency bound lets a partly filled chunk out early) are merged with what follows until a
  chunk boundary, or the end. Two workers never write parts of one Zarr chunk at once (a
  Zarr chunk write rewrites the whole chunk), and the serial path writes each chunk once.
- Everything else is NWBZarrIO's. Use ``multiprocessing_context="spawn"`` for parallel writes:
  a forked worker inherits this process's handles on the sources and h5live refuses it
  (:class:`h5live.errors.DuplicateHandleError`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hdmf_zarr.nwb import NWBZarrIO

from h5live._iterate.iterator import LiveDataChunkIterator

__all__ = ["ASSUMED_HDMF_ZARR", "LiveNWBZarrIO", "grown_selections"]

#: The hdmf-zarr release whose dataset-creation hook this module overrides.
ASSUMED_HDMF_ZARR = "0.13.0"

Selection = tuple[slice, ...]


def _grow(array: Any, selection: Selection) -> Selection:
    """Resize ``array`` so that it holds ``selection``; the selection."""
    shape = tuple(int(n) for n in array.shape)
    needed = tuple(max(n, int(s.stop)) for n, s in zip(shape, selection, strict=False))
    if needed != shape[: len(needed)]:
        array.resize(*needed, *shape[len(needed) :])
    return selection


def grown_selections(selections: Iterator[Selection], array: Any) -> Iterator[Selection]:
    """``selections`` in whole chunk rows of ``array``, each yielded once ``array`` holds it.

    Consecutive selections of the same frame tile (same slices past the first axis) are
    merged until they end on a chunk boundary of ``array``'s first axis; what is pending when
    ``selections`` ends is yielded then.
    """
    rows_per_chunk = int(array.chunks[0]) if array.chunks else 1
    pending: dict[tuple[tuple[int, int], ...], tuple[slice, Selection]] = {}
    for selection in selections:
        tile = tuple((int(s.start), int(s.stop)) for s in selection[1:])
        rows = selection[0]
        held = pending.pop(tile, None)
        if held is not None:
            if held[0].stop == rows.start:
                rows = slice(held[0].start, rows.stop)
            else:  # not contiguous (not made by a LiveDataChunkIterator): keep both
                yield _grow(array, (held[0], *held[1][1:]))
        if rows.stop % rows_per_chunk == 0:
            yield _grow(array, (rows, *selection[1:]))
        else:
            pending[tile] = (rows, selection)
    for rows, selection in pending.values():
        yield _grow(array, (rows, *selection[1:]))


class LiveNWBZarrIO(NWBZarrIO):  # type: ignore[misc]
    """NWBZarrIO that writes :class:`h5live.LiveDataChunkIterator` data of live sources (of
    unknown length, pre-sized, or with ``final_scan_shape``) completely, also with
    ``number_of_jobs > 1``.

    A drop-in for ``hdmf_zarr.NWBZarrIO``: the same arguments, the same files. Parallel writes
    (``number_of_jobs=N``) wait for the sources to finish before the workers start (hdmf-zarr
    hands the workers every selection at once); serial writes follow the writers.

    Examples
    --------
    >>> with LiveNWBZarrIO("session.nwb.zarr", mode="w") as io:  # doctest: +SKIP
    ...     io.write(nwbfile, number_of_jobs=2, multiprocessing_context="spawn")
    """

    @classmethod
    def __setup_chunked_dataset__(
        cls, parent: Any, name: str, data: Any, options: dict[str, Any] | None = None
    ) -> Any:
        array = super().__setup_chunked_dataset__(parent, name, data, options)
        if isinstance(data, LiveDataChunkIterator):
            data.buffer_selection_generator = grown_selections(
                data.buffer_selection_generator, array
            )
        return array
