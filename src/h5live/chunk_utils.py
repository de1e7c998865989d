"""Write input chunks of a flat frame stack into a chunked scan grid, one output chunk per write.

A detector writes a flat stack of frames whose HDF5 chunks hold ``n_points_chunk`` frames each.
A processing program receives those input chunks in order (for example from a chunk source)
and writes them into an output dataset of shape ``scan_shape + frame_shape``, in raster order or
in snake order (a row runs backwards whenever the sum of the coordinates before it is odd, as
:func:`h5live.utils.get_position_snake_row` defines). The output is chunked along the fast axis
(see :func:`get_output_chunk_shape`): chunks are ``min(n_points_chunk, row length)`` points wide,
aligned to the start of each row, so the last chunk of a row may be narrower.

:func:`get_slice_structure` lists, for the input chunk starting at flat index ``index``, the
output chunks to write with it: every output chunk whose last frame arrives with that input
chunk (the rest of it is in the previous input chunk), except one kind, which comes one input
chunk later, as in swmr_tools: the narrow end chunk of a row that runs backwards (its first
frames in flat order) when all its frames came in one input chunk; it is then written with the
next input chunk, from ``last_data`` (the ``"last"`` type). So :func:`write_data`, given the
current and the previous input chunk, writes each output chunk exactly once, with one write
covering exactly that chunk, in the same call as swmr_tools' last write of it.

The names, signatures and classes are those of ``swmr_tools.chunk_utils`` (0.9), so programs
that call ``get_slice_structure`` and ``write_data`` work unchanged. Differences (bug fixes):

- Snake scans, a reversed row starting at an input chunk start, row length not a multiple of
  ``n_points_chunk`` (e.g. ``scan_shape=(4, 4)``, ``n_points_chunk=3``, ``index=12``):
  swmr_tools reads the narrow end-of-row chunk of width ``k`` with ``slice(k, 0, -1)``, frames
  ``k..1`` instead of ``k-1..0``, writes them, and overwrites them with the right frames on the
  next input chunk: a reader sees wrong data meanwhile. Here it is written once, right, with
  that next input chunk.
- Snake scans with ``n_points_chunk`` longer than a row: swmr_tools writes reversed rows at
  ``slice(0, 2 * row_length - 1)``, past the end of the axis (numpy and h5py clip it). Here
  every write covers exactly one output chunk.
- Rows a whole number of chunks long: swmr_tools adds an empty write (e.g. ``slice(2, 2)``).
- Bad arguments raise :class:`ValueError` with a message naming the value and the fix (a bad
  ``ChunkSliceCollection`` type included, where swmr_tools raises ``RuntimeError``).

Writes into ``output`` use positive-step slices only (h5py cannot write with negative steps);
reversed rows are reversed on the numpy side, through negative-step *input* slices.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from h5live.utils import get_position, get_position_snake_row

__all__ = [
    "ChunkSliceCollection",
    "SliceInOut",
    "SliceSize",
    "get_output_chunk_shape",
    "get_slice_structure",
    "write_data",
]

SliceType = Literal["current", "last", "combined"]
_T = TypeVar("_T")


@dataclass
class SliceInOut:
    """Frames ``input`` of an input chunk go to ``output`` (of the grid row or the buffer)."""

    input: slice
    output: slice


@dataclass
class SliceSize:
    """An intermediate buffer of ``size`` frames, written to ``slice`` of the grid row."""

    slice: builtins.slice
    size: int


class ChunkSliceCollection:
    """The write of one output chunk.

    ``type`` says where its frames come from: ``"current"`` (``current.input`` of the current
    input chunk, written at ``current.output``), ``"last"`` (the same with ``last`` and the
    previous input chunk) or ``"combined"`` (a buffer of ``intermediate.size`` frames filled
    from both, written at ``intermediate.slice``). ``position`` is the scan position of the
    chunk's first point; :func:`write_data` uses its leading coordinates to pick the row.
    """

    types = ("current", "last", "combined")

    def __init__(self, type: SliceType, position: Sequence[int]) -> None:
        if type not in ChunkSliceCollection.types:
            raise ValueError(
                f"slice collection type {type!r} is not one of {ChunkSliceCollection.types}. "
                "Fix: use 'current', 'last' or 'combined'."
            )
        self.type: SliceType = type
        self.position: tuple[int, ...] = tuple(int(p) for p in position)
        self.current: SliceInOut | None = None
        self.last: SliceInOut | None = None
        self.intermediate: SliceSize | None = None

    def __repr__(self) -> str:
        out = f"Type {self.type}, position {self.position}"
        if self.last:
            out += f" Last input: {self.last.input} Output: {self.last.output}"
        if self.current:
            out += f" Current input: {self.current.input} Output: {self.current.output}"
        if self.intermediate:
            out += f" Intermed: {self.intermediate.slice} size: {self.intermediate.size}"
        return out


def get_output_chunk_shape(
    n_points_chunk: int, scan_shape: Sequence[int], frame_shape: Sequence[int] = ()
) -> tuple[int, ...]:
    """The chunk shape of an output grid that :func:`write_data` fills one chunk per write.

    Parameters
    ----------
    n_points_chunk
        Frames per input chunk.
    scan_shape
        Shape of the scan grid.
    frame_shape
        Shape of one frame.

    Returns
    -------
    tuple of int
        1 on the slow scan axes, ``min(n_points_chunk, scan_shape[-1])`` on the fast one, and
        the whole frame.

    Raises
    ------
    ValueError
        ``n_points_chunk`` or ``scan_shape`` is not positive.

    Examples
    --------
    >>> get_output_chunk_shape(100, (30, 456), (8, 8))
    (1, 100, 8, 8)
    >>> get_output_chunk_shape(100, (30, 40))
    (1, 40)
    """
    shape = _check_shape(n_points_chunk, scan_shape)
    width = min(int(n_points_chunk), shape[-1])
    return (1,) * (len(shape) - 1) + (width,) + tuple(int(n) for n in frame_shape)


def get_slice_structure(
    index: int, n_points_chunk: int, scan_shape: Sequence[int], snake: bool
) -> list[ChunkSliceCollection]:
    """The output chunks to write once the input chunk starting at flat ``index`` has arrived.

    Parameters
    ----------
    index
        Flat index of the first frame of the input chunk (a multiple of ``n_points_chunk``).
    n_points_chunk
        Frames per input chunk (the last chunk of the scan may hold fewer).
    scan_shape
        Shape of the scan grid.
    snake
        Whether the scan is a snake (rows run backwards when the coordinates before them sum
        to an odd number) rather than a raster.

    Returns
    -------
    list of ChunkSliceCollection
        One entry per output chunk to write now (see the module docstring), in the order
        their last frames arrived. Pass it to :func:`write_data`.

    Raises
    ------
    ValueError
        ``index`` is outside the scan or not the start of an input chunk, or
        ``n_points_chunk`` or ``scan_shape`` is not positive.

    Examples
    --------
    >>> get_slice_structure(0, 100, [123, 456], False)
    [Type current, position (0, 0) Current input: slice(0, 100, 1) Output: slice(0, 100, 1)]
    >>> [c.type for c in get_slice_structure(6, 6, (4, 5), False)]  # row 1: frames 5 to 9
    ['combined']
    """
    shape = _check_shape(n_points_chunk, scan_shape)
    size = math.prod(shape)
    n_points_chunk = int(n_points_chunk)
    start = int(index)
    if not 0 <= start < size or start % n_points_chunk:
        raise ValueError(
            f"index {index!r} is not the start of an input chunk of {n_points_chunk} frames in "
            f"a scan of shape {shape} ({size} frames). Fix: pass a multiple of n_points_chunk "
            "below the scan size."
        )
    stop = min(start + n_points_chunk, size)
    structure: list[ChunkSliceCollection] = []
    if start:  # narrow row ends held back from the previous input chunk (see the module doc)
        previous = start - n_points_chunk
        for chunk in _output_chunks(previous, start, shape, n_points_chunk, snake):
            if chunk.held_back(previous, start, n_points_chunk):
                collection = ChunkSliceCollection("last", chunk.position)
                offset = chunk.first_frame - previous
                collection.last = SliceInOut(
                    _input_slice(offset, offset + chunk.width, True), chunk.output
                )
                structure.append(collection)
    for chunk in _output_chunks(start, stop, shape, n_points_chunk, snake):
        complete = start <= chunk.last_frame < stop
        if complete and not chunk.held_back(start, stop, n_points_chunk):
            structure.append(
                _build_collection(
                    chunk.position,
                    chunk.output,
                    chunk.first_frame - start,
                    n_points_chunk,
                    chunk.reverse,
                )
            )
    return structure


@dataclass(frozen=True)
class _OutputChunk:
    """One output chunk of a grid row: where it goes and which frames (flat order) fill it."""

    position: tuple[int, ...]  # scan position of its first point (lowest fast coordinate)
    output: slice  # along the fast axis
    reverse: bool  # the row runs backwards
    row_length: int
    first_frame: int
    last_frame: int

    @property
    def width(self) -> int:
        return int(self.output.stop - self.output.start)

    def held_back(self, lo: int, hi: int, n_points_chunk: int) -> bool:
        """Whether this chunk, if all its frames are in the input chunk ``[lo, hi)``, is written
        with the next input chunk instead: the narrow end of a reversed row (as swmr_tools)."""
        narrow = self.row_length % min(n_points_chunk, self.row_length) != 0
        at_end = self.output.stop == self.row_length
        return self.reverse and narrow and at_end and lo <= self.first_frame <= self.last_frame < hi


def _output_chunks(
    lo: int, hi: int, shape: tuple[int, ...], n_points_chunk: int, snake: bool
) -> Iterator[_OutputChunk]:
    """The output chunks holding frames ``[lo, hi)``, row by row, each row's in flat order."""
    row_length = shape[-1]
    width = min(n_points_chunk, row_length)
    for row in range(lo // row_length, (hi - 1) // row_length + 1):
        row_start = row * row_length
        if snake:
            position, reverse = get_position_snake_row(row_start, shape, len(shape))
        else:
            position, reverse = get_position(row_start, shape, len(shape)), False
        # Output coordinates, along this row, of frames lo..hi-1.
        first = max(lo, row_start) - row_start
        end = min(hi, row_start + row_length) - row_start
        if reverse:
            first, end = row_length - end, row_length - first
        chunks = range(first // width, (end - 1) // width + 1)
        for chunk in reversed(chunks) if reverse else chunks:
            out_start = chunk * width
            out_stop = min(out_start + width, row_length)
            if reverse:  # the chunk's frames in flat order: from its high end down
                frames = (row_start + row_length - out_stop, row_start + row_length - out_start)
            else:
                frames = (row_start + out_start, row_start + out_stop)
            yield _OutputChunk(
                (*position[:-1], out_start),
                slice(out_start, out_stop, 1),
                reverse,
                row_length,
                frames[0],
                frames[1] - 1,
            )


def write_data(
    slice_structure: Iterable[ChunkSliceCollection],
    data: npt.ArrayLike,
    last_data: npt.ArrayLike | None,
    output: Any,
) -> None:
    """Perform the writes of :func:`get_slice_structure` into ``output``.

    Parameters
    ----------
    slice_structure
        What :func:`get_slice_structure` returned for the input chunk ``data``.
    data
        The current input chunk, of shape ``(n_points_chunk, *frame_shape)`` (shorter for the
        last chunk of the scan).
    last_data
        The previous input chunk, or None for the first one.
    output
        The grid, of shape ``scan_shape + frame_shape``: an h5py dataset or a numpy array.
        Every write uses positive-step slices and covers one output chunk.

    Raises
    ------
    ValueError
        ``last_data`` is needed but None, or ``data``, ``last_data`` or ``output`` do not have
        the shape the slice structure expects.

    Examples
    --------
    >>> import numpy as np
    >>> stack = np.arange(8)
    >>> grid = np.zeros((2, 4), dtype=stack.dtype)
    >>> last = None
    >>> for index in range(0, 8, 3):
    ...     chunk = stack[index : index + 3]
    ...     write_data(get_slice_structure(index, 3, (2, 4), True), chunk, last, grid)
    ...     last = chunk
    >>> grid
    array([[0, 1, 2, 3],
           [7, 6, 5, 4]])
    """
    current = np.asarray(data)
    previous = None if last_data is None else np.asarray(last_data)
    output_shape = tuple(int(n) for n in output.shape)
    for collection in slice_structure:
        frames, out_slice = _gather(collection, current, previous)
        scan_rank = len(collection.position)
        if len(output_shape) != scan_rank + frames.ndim - 1:
            raise ValueError(
                f"output of shape {output_shape} does not hold a scan of rank {scan_rank} of "
                f"frames of shape {frames.shape[1:]}. Fix: create it with shape "
                "scan_shape + frame_shape."
            )
        fast_length = output_shape[scan_rank - 1]
        if len(range(*out_slice.indices(fast_length))) != len(frames):
            raise ValueError(
                f"{len(frames)} frames gathered for {collection!r} do not fill {out_slice} of "
                f"an axis of {fast_length}. Fix: pass the input chunk that get_slice_structure "
                "was called for as data, and the one before it as last_data."
            )
        region = (
            *(slice(p, p + 1, 1) for p in collection.position[:-1]),
            out_slice,
            *(slice(0, n, 1) for n in output_shape[scan_rank:]),
        )
        output[region] = frames.reshape((1,) * (scan_rank - 1) + frames.shape)


def _check_shape(n_points_chunk: int, scan_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(n) for n in scan_shape)
    if not shape or min(shape) < 1:
        raise ValueError(
            f"scan_shape {scan_shape!r} is not a shape of at least one point. "
            "Fix: pass the scan's dims, each at least 1, e.g. (10, 20)."
        )
    if int(n_points_chunk) < 1:
        raise ValueError(
            f"n_points_chunk {n_points_chunk!r} is not positive. "
            "Fix: pass the number of frames per input chunk (dataset.chunks[0])."
        )
    return shape


def _input_slice(first: int, stop: int, reverse: bool) -> slice:
    """Frames ``first:stop`` of an input chunk, last one first when ``reverse``."""
    if not reverse:
        return slice(first, stop, 1)
    return slice(stop - 1, first - 1 if first > 0 else None, -1)


def _build_collection(
    position: tuple[int, ...], output: slice, offset: int, n_points_chunk: int, reverse: bool
) -> ChunkSliceCollection:
    """The write of the output chunk at ``output`` of a row.

    ``offset`` is the position of the chunk's first frame (in flat order) in the current input
    chunk; when negative, the first ``-offset`` frames are at the end of the previous one.
    """
    width = output.stop - output.start
    if offset >= 0:
        collection = ChunkSliceCollection("current", position)
        collection.current = SliceInOut(_input_slice(offset, offset + width, reverse), output)
        return collection
    n_last = -offset
    last_input = _input_slice(n_points_chunk - n_last, n_points_chunk, reverse)
    current_input = _input_slice(0, width - n_last, reverse)
    if reverse:  # the buffer runs backwards in flat order: current frames first
        last_output, current_output = slice(width - n_last, width, 1), slice(0, width - n_last, 1)
    else:
        last_output, current_output = slice(0, n_last, 1), slice(n_last, width, 1)
    collection = ChunkSliceCollection("combined", position)
    collection.last = SliceInOut(last_input, last_output)
    collection.current = SliceInOut(current_input, current_output)
    collection.intermediate = SliceSize(output, width)
    return collection


def _gather(
    collection: ChunkSliceCollection,
    current: npt.NDArray[Any],
    previous: npt.NDArray[Any] | None,
) -> tuple[npt.NDArray[Any], slice]:
    """The frames to write for ``collection``, and the output slice of the fast axis."""
    if collection.type == "current":
        pair = _required(collection.current, "current", collection)
        return current[pair.input], pair.output
    previous = _required(previous, "last_data", collection)
    if collection.type == "last":
        pair = _required(collection.last, "last", collection)
        return previous[pair.input], pair.output
    last = _required(collection.last, "last", collection)
    now = _required(collection.current, "current", collection)
    intermediate = _required(collection.intermediate, "intermediate", collection)
    buffer = np.zeros((intermediate.size, *current.shape[1:]), dtype=current.dtype)
    buffer[last.output] = previous[last.input]
    buffer[now.output] = current[now.input]
    return buffer, intermediate.slice


def _required(value: _T | None, name: str, collection: ChunkSliceCollection) -> _T:
    if value is None:
        raise ValueError(
            f"{name} is None but {collection!r} needs it. Fix: pass the previous input chunk "
            "as last_data, and use slice structures from get_slice_structure."
        )
    return value
