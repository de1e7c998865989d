"""Reading complete frames: FrameReader (one dataset) and the SliceDict that DataSource yields.

Contract
--------
- Frame ``i`` of a dataset is the entry at flat C-order index ``i`` over its first
  ``scan_rank`` dims; it keeps its singleton scan dims (``(1, 1, h, w)`` in a grid scan), and
  ``slice_metadata`` is one ``slice(p, p + 1)`` per scan dim, as in swmr_tools.
- A SWMR reader must refresh a dataset before trusting its shape *or its content*: without a
  refresh, h5py reads a pre-sized dataset's new frames as fill values (measured: 2989 of 3000
  frames). A FrameReader therefore refreshes before reading any frame past those it was told were
  complete at its last refresh: callers that know the frontier refresh once per frontier move
  (:meth:`FrameReader.refresh`); standalone reads refresh every time, and stay correct.
- A run of frames that is one hyperslab of the scan grid (a box) is read with one read per
  dataset (:meth:`FrameReader.read_frames`); :meth:`FrameReader.boxes` splits any flat range
  into such runs (at most ``2 * scan_rank - 1``).
- With ``use_direct_chunk``, a frame that is exactly one chunk is read with
  ``read_direct_chunk`` and decoded in Python where that is faster than HDF5's filter pipeline
  (see ``h5live._read.direct``); the result equals h5py's read bit for bit.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from h5live._follow.keys import dataset_label, flat_boxes, refresh_dataset
from h5live._read.direct import DirectChunkReader, direct_chunk_reader
from h5live._source.spec import check_virtual_sources
from h5live._source.virtual import VirtualRows, is_virtual
from h5live.errors import DirectChunkError, FrameIndexError, FrameReadError

__all__ = ["DirectMode", "FrameReader", "SliceDict", "box_runs", "box_size", "read_selection"]

logger = logging.getLogger(__name__)

DirectMode = bool | Literal["require"]
Frames = tuple[npt.NDArray[Any], tuple[slice, ...]]


def box_size(box: Sequence[slice], shape: Sequence[int]) -> int:
    """Number of scan points in a box of :func:`h5live._follow.keys.flat_boxes` over ``shape``."""
    return math.prod(len(range(*s.indices(n))) for s, n in zip(box, shape, strict=False))


def read_selection(
    dataset: Any,
    selection: Any,
    start: int,
    stop: int,
    out: npt.NDArray[Any] | None = None,
    rows: VirtualRows | None = None,
) -> npt.NDArray[Any]:
    """``dataset[selection]`` (frames ``start .. stop - 1``), with read failures explained.

    ``out``: an array of the selection's shape and the dataset's dtype to read into (no new
    allocation); returned filled. ``rows``: a virtual dataset's mapping rows, to read it one
    mapping at a time (see ``h5live._source.virtual.VirtualRows``).

    Raises
    ------
    FrameReadError
        h5py could not read them, most often because a filter plugin is not loaded.
    """
    try:
        first = selection[0] if isinstance(selection, tuple) and selection else None
        if rows is not None and isinstance(first, slice) and first.stop is not None:
            pieces = rows.split(first.start or 0, first.stop)
            if len(pieces) > 1:
                return _read_pieces(dataset, selection, pieces, out)
        if out is not None and hasattr(dataset, "read_direct"):
            dataset.read_direct(out, source_sel=selection)
            return out
        return np.asarray(dataset[selection])
    except (OSError, RuntimeError) as exc:
        filename, name = dataset_label(dataset)
        raise FrameReadError(
            f"cannot read frames {start}..{stop - 1} of dataset {name!r} in {filename!r}: "
            f"{exc}. Fix: if it is compressed with a plugin filter (Blosc, LZ4, Zstd, "
            "bitshuffle...), `import hdf5plugin` first; otherwise check that the writer is "
            "healthy."
        ) from exc


def _read_pieces(
    dataset: Any,
    selection: tuple[Any, ...],
    pieces: Sequence[tuple[int, int]],
    out: npt.NDArray[Any] | None,
) -> npt.NDArray[Any]:
    """``dataset[selection]`` read as one read per ``(lo, hi)`` piece of its first axis."""
    rest, base = selection[1:], pieces[0][0]
    if out is None:
        wheres = [(slice(lo, hi), *rest) for lo, hi in pieces]
        parts = [np.asarray(dataset[where]) for where in wheres]
        return np.concatenate(parts, axis=0)
    for lo, hi in pieces:
        where = (slice(lo, hi), *rest)
        dataset.read_direct(out, source_sel=where, dest_sel=np.s_[lo - base : hi - base])
    return out


def box_runs(start: int, stop: int, scan_shape: Sequence[int]) -> list[tuple[int, int]]:
    """Split flat range ``[start, stop)`` into runs that are each one box of ``scan_shape``.

    At most ``2 * len(scan_shape) - 1`` runs; a stack (or a 1-row range) is one run.

    Raises
    ------
    ValueError
        An inner scan dim is 0 (the grid's shape is not known yet).
    """
    if stop <= start:
        return []
    if len(scan_shape) <= 1:
        return [(start, stop)]
    if not all(scan_shape[1:]):
        raise ValueError(
            f"cannot split frames {start}..{stop - 1} into boxes of a scan of shape "
            f"{tuple(scan_shape)}: an inner scan dim is 0. Fix: refresh the dataset first; the "
            "writer must fix the inner scan dims before the first frame is complete."
        )
    runs: list[tuple[int, int]] = []
    for box in flat_boxes(start, stop, scan_shape):
        end = start + box_size(box, scan_shape)
        runs.append((start, end))
        start = end
    return runs


class SliceDict(dict[str, Any]):
    """A dict of frames by dataset path, with where they sit in the scan.

    Attributes
    ----------
    slice_metadata : tuple of slice
        One slice per scan dim: where the frames sit in the scan (pass to ``append_data``).
    maxshape : tuple or list
        The scan's maximum shape (``None`` on growing axes), as the keys give it.
    index : int
        Flat index of the first frame.
    stop : int
        Flat index one past the last frame (``index + 1`` for a single frame).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slice_metadata: tuple[slice, ...] | None = None
        self.maxshape: tuple[int | None, ...] | list[int | None] | None = None
        self.index: int | None = None
        self.stop: int | None = None


class FrameReader:
    """Read frames of one dataset by flat index, refreshing it as a SWMR reader must.

    A drop-in for ``swmr_tools.FrameReader`` that never sleeps, never reads stale fill values
    from a pre-sized dataset, reads runs of frames in one go and decodes whole-frame chunks
    without HDF5's filter pipeline where that is faster.

    Parameters
    ----------
    dataset
        An h5py dataset, or a numpy array (anything with ``shape`` and ``__getitem__``).
    scan_rank
        Number of leading dims that index frames (1 for a stack, 2 for a grid scan);
        ``KeyFollower.scan_rank`` gives it.
    use_direct_chunk
        ``True``: read a frame that is exactly one chunk with ``read_direct_chunk`` and decode
        it in Python where that is faster, else read through h5py (logged at DEBUG).
        ``"require"``: always decode in Python, and raise if the layout or filter does not
        allow it. ``False``: always read through h5py.

    Raises
    ------
    ValueError
        ``scan_rank`` outside ``0 .. dataset.ndim``.
    DirectChunkError
        ``use_direct_chunk="require"`` and frames are not single chunks, or the filter cannot be
        decoded in Python.

    Examples
    --------
    >>> reader = FrameReader(np.arange(24).reshape(2, 3, 4), scan_rank=2)
    >>> frame, where = reader.read_frame(4)
    >>> frame.shape, where
    ((1, 1, 4), (slice(1, 2, None), slice(1, 2, None)))
    """

    def __init__(self, dataset: Any, scan_rank: int, use_direct_chunk: DirectMode = False) -> None:
        self.dataset = dataset
        self.filename, self.name = dataset_label(dataset)
        shape = tuple(int(n) for n in dataset.shape)
        if not 0 <= scan_rank <= len(shape):
            raise ValueError(
                f"scan_rank {scan_rank!r} does not fit dataset {self.name!r} in "
                f"{self.filename!r} of shape {shape}. Fix: pass the number of leading dims "
                "that index frames (KeyFollower.scan_rank)."
            )
        if use_direct_chunk not in (True, False, "require"):
            raise ValueError(
                f"use_direct_chunk must be True, False or 'require', got {use_direct_chunk!r}."
            )
        self.scan_rank = scan_rank
        self.use_direct_chunk = use_direct_chunk
        self.frame_shape = shape[scan_rank:]
        self._shape = shape
        self._fresh_upto = -1  # frames up to this flat index were complete at the last refresh
        self._direct = self._plan_direct(use_direct_chunk)
        if is_virtual(dataset):  # its missing sources would read as fill values
            check_virtual_sources(dataset, self.name, "data", self.filename)
        self._rows = VirtualRows.of(dataset)  # a VDS is read one mapping at a time

    def _plan_direct(self, mode: DirectMode) -> DirectChunkReader | None:
        if mode is False:
            return None
        require = mode == "require"
        single = (1,) * self.scan_rank + self.frame_shape
        chunks = getattr(self.dataset, "chunks", None)
        if chunks is None or tuple(chunks) != single:
            reason = (
                f"dataset {self.name!r} in {self.filename!r} has chunks {chunks} but a frame "
                f"has shape {single}, so a frame is not exactly one chunk"
            )
            if require:
                raise DirectChunkError(
                    f"use_direct_chunk='require': {reason}. Fix: use_direct_chunk=True to fall "
                    "back to h5py reads, or have the writer chunk by frame."
                )
            logger.debug("direct chunk reads off: %s", reason)
            return None
        return direct_chunk_reader(self.dataset, require=require)

    @property
    def direct(self) -> bool:
        """Whether frames are read with ``read_direct_chunk`` and decoded in Python."""
        return self._direct is not None

    @property
    def virtual_rows(self) -> VirtualRows | None:
        """Where a virtual dataset's mappings start and end along its first axis (None for
        another dataset): reads are split there."""
        return self._rows

    @property
    def shape(self) -> tuple[int, ...]:
        """The dataset shape seen at the last refresh."""
        return self._shape

    def refresh(self, complete_upto: int = -1) -> None:
        """Refresh the dataset; frames up to ``complete_upto`` are then read without another.

        Parameters
        ----------
        complete_upto
            The frontier the caller knows (frames complete before this refresh).
        """
        refresh_dataset(self.dataset)
        self._shape = tuple(int(n) for n in self.dataset.shape)
        self._fresh_upto = max(self._fresh_upto, complete_upto)

    def _prepare(self, last: int, force_refresh: bool) -> None:
        """Refresh unless frame ``last`` was complete at the last refresh; check it is inside.

        Only :meth:`refresh` with the caller's frontier marks frames as seen complete: a read
        of a frame that the writer had not finished must not stop later reads from refreshing.
        """
        if force_refresh or last > self._fresh_upto:
            self.refresh()
        if last >= math.prod(self._shape[: self.scan_rank]):
            self.refresh()  # the caller says it is complete: maybe our shape is older
            scan = self._shape[: self.scan_rank]
            if last >= math.prod(scan):
                raise FrameIndexError(
                    f"frame {last} is outside dataset {self.name!r} in {self.filename!r}, whose "
                    f"scan shape is {scan} after a refresh. Fix: read only frames the keys mark "
                    "complete; the writer must flush the data before setting a key."
                )

    def _slices(self, start: int, stop: int) -> tuple[slice, ...]:
        scan = self._shape[: self.scan_rank]
        if stop == start + 1:  # one frame: its position, without the box machinery
            position = []
            for n in reversed(scan):
                start, p = divmod(start, n)
                position.append(slice(p, p + 1))
            return tuple(reversed(position))
        boxes = flat_boxes(start, stop, scan) if self.scan_rank else [()]
        if len(boxes) != 1:
            raise ValueError(
                f"frames {start}..{stop - 1} of {self.name!r} span {len(boxes)} boxes of the "
                f"scan grid {scan}, so they are not one hyperslab. Fix: read each range of "
                "FrameReader.boxes(start, stop) separately."
            )
        return tuple(slice(*s.indices(n)[:2]) for s, n in zip(boxes[0], scan, strict=True))

    def boxes(self, start: int, stop: int) -> list[tuple[int, int]]:
        """Split flat range ``[start, stop)`` into runs that are each one box of the scan grid.

        Uses the shape of the last refresh; see :func:`box_runs`.
        """
        return box_runs(start, stop, self._shape[: self.scan_rank])

    def read_frame(self, index: int, force_refresh: bool = False) -> Frames:
        """Read frame ``index``.

        Parameters
        ----------
        index
            Flat frame index (from a KeyFollower).
        force_refresh
            Refresh the dataset even if the frame should already be visible.

        Returns
        -------
        frame : numpy.ndarray
            Shape ``(1,) * scan_rank + frame_shape``.
        slice_metadata : tuple of slice
            ``slice(p, p + 1)`` per scan dim.

        Raises
        ------
        FrameIndexError
            The frame is outside the dataset even after a refresh.
        """
        return self.read_frames(index, index + 1, force_refresh=force_refresh)

    def read_frames(
        self,
        start: int,
        stop: int,
        force_refresh: bool = False,
        out: npt.NDArray[Any] | None = None,
    ) -> Frames:
        """Read frames ``start .. stop - 1`` with one read (they must form one box).

        ``out``: a C-contiguous array of the result's shape and the dataset's dtype to read
        into instead of a new one (it is returned).

        Returns
        -------
        frames : numpy.ndarray
            Shape ``box shape + frame_shape``: for a stack ``(stop - start, *frame_shape)``.
        slice_metadata : tuple of slice
            The box, one slice per scan dim.

        Raises
        ------
        ValueError
            The range is empty or is not one box (see :meth:`boxes`).
        FrameIndexError
            Part of the range is outside the dataset even after a refresh.
        """
        if not 0 <= start < stop:
            raise ValueError(
                f"frame range {start!r}..{stop!r} of {self.name!r} is empty or negative. "
                "Fix: pass 0 <= start < stop."
            )
        self._prepare(stop - 1, force_refresh)
        slices = self._slices(start, stop)
        if out is not None:
            self._check_out(out, tuple(s.stop - s.start for s in slices) + self.frame_shape)
        if self._direct is not None:
            return self._read_direct(self._direct, start, stop, slices, out), slices
        selection = (*slices, Ellipsis)
        return read_selection(self.dataset, selection, start, stop, out, self._rows), slices

    def _check_out(self, out: npt.NDArray[Any], shape: tuple[int, ...]) -> None:
        dtype = np.dtype(self.dataset.dtype)
        if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
            raise ValueError(
                f"out has shape {out.shape} and dtype {out.dtype} (C-contiguous: "
                f"{out.flags.c_contiguous}), but frames of {self.name!r} in {self.filename!r} "
                f"read here need a C-contiguous array of shape {shape} and dtype {dtype}. Fix: "
                "pass such an array, or out=None."
            )

    def _read_direct(
        self,
        direct: DirectChunkReader,
        start: int,
        stop: int,
        slices: tuple[slice, ...],
        out: npt.NDArray[Any] | None,
    ) -> npt.NDArray[Any]:
        tail = (0,) * len(self.frame_shape)
        if stop == start + 1 and out is None:  # one frame, one chunk
            frame = np.empty(direct.chunk_shape, dtype=direct.dtype)
            if direct.read_into(tuple(s.start for s in slices) + tail, frame):
                return frame
        box = tuple(s.stop - s.start for s in slices)
        if out is None:
            out = np.empty(box + self.frame_shape, dtype=direct.dtype)
        flat = out.reshape((stop - start, *direct.chunk_shape))
        for k, position in enumerate(np.ndindex(*box)):
            offset = tuple(s.start + p for s, p in zip(slices, position, strict=True)) + tail
            if not direct.read_into(offset, flat[k]):  # not allocated: h5py gives the fill
                where = (*(slice(o, o + 1) for o in offset[: self.scan_rank]), Ellipsis)
                flat[k] = read_selection(self.dataset, where, start + k, start + k + 1)
        return out

    def __repr__(self) -> str:
        direct = f" direct={self._direct.codec!r}" if self._direct is not None else ""
        return (
            f"<FrameReader {os.path.basename(self.filename)!r} {self.name!r} "
            f"scan_rank={self.scan_rank} frame_shape={self.frame_shape}{direct}>"
        )
