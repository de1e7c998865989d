"""Raw chunk passthrough: a live source's stored chunks copied into its copy, never decoded.

Contract
--------
- :func:`passthrough_refusal` says why chunks of one dataset cannot be copied raw into another
  (chunk shape, dtype, filters), or ``None`` when they can.
- :class:`RawChunkCopy` copies the chunks of a selection with ``read_direct_chunk`` /
  ``write_direct_chunk``, keeping each chunk's filter mask. It copies only selections made of
  whole chunks (an edge chunk ends at the source's extent); anything else (the partial tail of
  a stopped scan, part of a grid row) goes through the decoding path instead. The destination
  is grown to the selection first, and ``before_write`` sees the bytes before they are written
  (the conversions check the free space with it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from h5live._compression import filter_pipeline

__all__ = ["RawChunkCopy", "passthrough_refusal"]

Selection = tuple[slice, ...]


def passthrough_refusal(source: Any, destination: Any) -> str | None:
    """Why the stored chunks of ``source`` cannot be copied as they are into
    ``destination``; ``None`` when they can."""
    if source.chunks is None or destination.chunks is None:
        return "a dataset is not chunked"
    if tuple(source.chunks) != tuple(destination.chunks):
        return f"chunk shapes differ ({source.chunks} in the source, {destination.chunks} here)"
    if source.dtype != destination.dtype:
        return f"dtypes differ ({source.dtype} in the source, {destination.dtype} here)"
    if source.shape[1:] != destination.shape[1:]:
        return f"frame shapes differ ({source.shape[1:]}, {destination.shape[1:]})"
    ours, theirs = filter_pipeline(destination), filter_pipeline(source)
    if ours != theirs:
        return f"filters differ ({theirs} in the source, {ours} here)"
    return None


class RawChunkCopy:
    """Copies whole stored chunks of ``source`` into ``destination`` (same chunks, filters
    and dtype: check with :func:`passthrough_refusal` first)."""

    def __init__(
        self,
        source: Any,
        destination: Any,
        before_write: Callable[[int], None] | None = None,
    ) -> None:
        self.source = source
        self.destination = destination
        self.before_write = before_write
        self.chunks = tuple(int(n) for n in source.chunks)
        self.chunks_copied = 0
        self.bytes_copied = 0

    def aligned(self, selection: Selection) -> bool:
        """Whether ``selection`` is made of whole chunks (an edge chunk ending at the
        source's extent, which the caller has refreshed)."""
        extent = self.source.shape
        for s, c, n in zip(selection, self.chunks, extent, strict=True):
            if s.start % c or (s.stop % c and s.stop != n):
                return False
        return True

    def copy(self, selection: Selection) -> int | None:
        """Copy the chunks of an aligned ``selection``; the bytes copied, or ``None`` if a
        chunk is not stored (the caller then reads and writes the frames)."""
        starts = [range(s.start, s.stop, c) for s, c in zip(selection, self.chunks, strict=True)]
        stored = []
        read = self.source.id.read_direct_chunk
        for offset in itertools.product(*starts):
            try:
                stored.append((offset, *read(offset)))
            # not allocated (h5py raises MemoryError for its size of 0 bytes), or unreadable:
            # the decoding path gives fill values, or the error with its explanation
            except (KeyError, OSError, RuntimeError, ValueError, MemoryError):
                return None
        nbytes = sum(len(data) for _, _, data in stored)
        if self.before_write is not None:
            self.before_write(nbytes)
        self.destination.id.extend(tuple(_bounds(selection, self.destination.shape)))
        write = self.destination.id.write_direct_chunk
        for offset, mask, data in stored:
            write(offset, data, mask)
        self.chunks_copied += len(stored)
        self.bytes_copied += nbytes
        return nbytes


def _bounds(selection: Selection, shape: Sequence[int]) -> list[int]:
    """The extent a dataset needs to hold ``selection`` (never smaller than ``shape``)."""
    return [max(int(s.stop), int(n)) for s, n in zip(selection, shape, strict=True)]
