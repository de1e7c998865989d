"""h5live.chunk_utils: input chunks of a flat stack fill a chunked scan grid, one write per
output chunk, each written as soon as its last frame has arrived; same grids as swmr_tools 0.9
where swmr_tools is right, and its bugs shown next to ours."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from swmr_tools import chunk_utils as swmr_chunk_utils
from swmr_tools import utils as swmr_utils

from h5live import chunk_utils
from h5live.chunk_utils import (
    ChunkSliceCollection,
    SliceInOut,
    SliceSize,
    get_output_chunk_shape,
    get_slice_structure,
    write_data,
)
from h5live.utils import get_position_snake

FRAME_SHAPE = (2,)


def make_stack(size: int) -> np.ndarray:
    """Frame ``f`` of the flat stack holds ``(2 f, 2 f + 1)``."""
    return np.arange(size * 2, dtype=np.int64).reshape((size, *FRAME_SHAPE))


def expected_grid(scan_shape: tuple[int, ...], snake: bool) -> np.ndarray:
    """Each frame of the stack at its scan position (raster, or snake per utils)."""
    stack = make_stack(math.prod(scan_shape))
    if not snake:
        return stack.reshape(scan_shape + FRAME_SHAPE)
    grid = np.full(scan_shape + FRAME_SHAPE, -1, dtype=np.int64)
    for index, frame in enumerate(stack):
        grid[get_position_snake(index, scan_shape, len(scan_shape))] = frame
    return grid


def flat_index_grid(scan_shape: tuple[int, ...], snake: bool) -> np.ndarray:
    """The flat index of the frame at each scan position."""
    return expected_grid(scan_shape, snake)[..., 0] // 2


def output_chunk_last_frames(
    scan_shape: tuple[int, ...], n_points_chunk: int, snake: bool
) -> dict[tuple[int, ...], int]:
    """Output chunk key (row coordinates, chunk number) -> flat index of its last frame."""
    return {
        key: last
        for key, (_, last, _) in output_chunk_frames(scan_shape, n_points_chunk, snake).items()
    }


def output_chunk_frames(
    scan_shape: tuple[int, ...], n_points_chunk: int, snake: bool
) -> dict[tuple[int, ...], tuple[int, int, bool]]:
    """Output chunk key -> (first frame, last frame, whether it is the narrow end of a row that
    runs backwards)."""
    width = min(n_points_chunk, scan_shape[-1])
    flat = flat_index_grid(scan_shape, snake)
    frames: dict[tuple[int, ...], tuple[int, int, bool]] = {}
    for row in np.ndindex(scan_shape[:-1]):
        backwards = scan_shape[-1] > 1 and flat[row][0] > flat[row][-1]
        for chunk in range(math.ceil(scan_shape[-1] / width)):
            part = flat[row][chunk * width : (chunk + 1) * width]
            narrow_end = len(part) < width
            frames[(*row, chunk)] = (int(part.min()), int(part.max()), backwards and narrow_end)
    return frames


def written_after(
    scan_shape: tuple[int, ...], n_points_chunk: int, snake: bool, stop: int
) -> set[tuple[int, ...]]:
    """The output chunks written once the input chunk ending at ``stop`` is: those complete,
    but the narrow end of a backwards row whose frames all came in that input chunk, which is
    written with the next one (from ``last_data``, as swmr_tools 0.9's test_write expects)."""
    start = (stop - 1) // n_points_chunk * n_points_chunk
    return {
        key
        for key, (first, last, held) in output_chunk_frames(
            scan_shape, n_points_chunk, snake
        ).items()
        if last < stop and not (held and first >= start)
    }


class RecordingOutput:
    """A numpy grid that checks every write: a tuple of positive-step slices, in bounds,
    covering exactly one output chunk (whole frames), and no chunk written twice."""

    def __init__(self, scan_shape: tuple[int, ...], n_points_chunk: int) -> None:
        self.array = np.full(scan_shape + FRAME_SHAPE, -1, dtype=np.int64)
        self.shape = self.array.shape
        self.scan_rank = len(scan_shape)
        self.width = min(n_points_chunk, scan_shape[-1])
        self.written: list[tuple[int, ...]] = []

    def __setitem__(self, key: Any, value: Any) -> None:
        assert isinstance(key, tuple)
        assert len(key) == self.array.ndim
        for s, n in zip(key, self.shape, strict=True):
            assert isinstance(s, slice)
            assert s.step in (None, 1), f"step of {s}"
            assert 0 <= s.start < s.stop <= n, f"{s} on an axis of {n}"
        *slow, fast = key[: self.scan_rank]
        assert all(s.stop == s.start + 1 for s in slow), key
        assert fast.start % self.width == 0, f"{fast} not aligned to chunks of {self.width}"
        assert fast.stop == min(fast.start + self.width, self.shape[self.scan_rank - 1]), key
        assert key[self.scan_rank :] == tuple(slice(0, n, 1) for n in self.shape[self.scan_rank :])
        chunk = (*(s.start for s in slow), fast.start // self.width)
        assert chunk not in self.written, f"output chunk {chunk} written twice"
        self.written.append(chunk)
        self.array[key] = value


class ListOutput:
    """A numpy grid that lists the writes, for swmr_tools (whose writes do not all pass
    :class:`RecordingOutput`)."""

    def __init__(self, scan_shape: tuple[int, ...]) -> None:
        self.array = np.full(scan_shape + FRAME_SHAPE, -1, dtype=np.int64)
        self.shape = self.array.shape
        self.writes: list[tuple[Any, ...]] = []
        self.snapshots: list[np.ndarray] = []  # the grid after each write

    def __setitem__(self, key: tuple[Any, ...], value: Any) -> None:
        self.writes.append(key)
        self.array[key] = value
        self.snapshots.append(self.array.copy())

    def regions(self) -> list[tuple[tuple[int, int], ...]]:
        """The non-empty written regions as (start, stop) per scan axis, clipped to the grid."""
        regions = []
        for key in self.writes:
            bounds = tuple(s.indices(n)[:2] for s, n in zip(key, self.shape, strict=False))
            if all(stop > start for start, stop in bounds):
                regions.append(bounds[: len(self.shape) - len(FRAME_SHAPE)])
        return regions


def run_scan(
    scan_shape: Sequence[int],
    n_points_chunk: int,
    snake: bool,
    output: Any,
    module: Any = chunk_utils,
    after_chunk: Callable[[int], None] | None = None,
) -> None:
    """Feed the input chunks in order, as a chunk source would; ``after_chunk(stop)``."""
    size = math.prod(scan_shape)
    stack = make_stack(size)
    last_data = None
    for index in range(0, size, n_points_chunk):
        data = stack[index : index + n_points_chunk]
        structure = module.get_slice_structure(index, n_points_chunk, list(scan_shape), snake)
        module.write_data(structure, data, last_data, output)
        last_data = data
        if after_chunk is not None:
            after_chunk(index + len(data))


def check_scan(scan_shape: tuple[int, ...], n_points_chunk: int, snake: bool) -> None:
    """The grid is right, and after each input chunk exactly the chunks of
    :func:`written_after` are written, each once."""
    output = RecordingOutput(scan_shape, n_points_chunk)
    last_frames = output_chunk_last_frames(scan_shape, n_points_chunk, snake)

    def check_written(stop: int) -> None:
        assert set(output.written) == written_after(scan_shape, n_points_chunk, snake, stop)

    run_scan(scan_shape, n_points_chunk, snake, output, after_chunk=check_written)
    np.testing.assert_array_equal(output.array, expected_grid(scan_shape, snake))
    assert len(output.written) == len(last_frames)


def case_id(case: tuple[tuple[int, ...], int, bool]) -> str:
    scan_shape, n_points_chunk, snake = case
    pattern = "snake" if snake else "raster"
    return f"{'x'.join(map(str, scan_shape))}-n{n_points_chunk}-{pattern}"


SCAN_SHAPES = [
    (1,),
    (7,),
    (1, 1),
    (1, 7),
    (4, 1),
    (4, 4),
    (4, 5),
    (5, 3),
    (3, 8),
    (6, 6),
    (2, 3, 4),
    (3, 2, 5),
    (2, 2, 1),
    (2, 3, 2, 3),
]
CHUNK_LENGTHS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 17, 40]
CASES = [
    (shape, n, snake) for shape in SCAN_SHAPES for n in CHUNK_LENGTHS for snake in (False, True)
]


@pytest.mark.parametrize("case", CASES, ids=[case_id(case) for case in CASES])
def test_grid_filled_one_write_per_output_chunk(case):
    check_scan(*case)


@settings(max_examples=100, deadline=None)
@given(
    slow_shape=st.lists(st.integers(1, 4), max_size=2),
    row_length=st.integers(1, 12),
    n_points_chunk=st.integers(1, 30),
    snake=st.booleans(),
)
def test_any_scan_and_chunk_length_fills_the_grid(slow_shape, row_length, n_points_chunk, snake):
    check_scan((*slow_shape, row_length), n_points_chunk, snake)


H5PY_CASES = [((4, 5), 3, False), ((4, 5), 3, True), ((5, 3), 7, True), ((2, 3, 4), 5, True)]


@pytest.mark.parametrize("case", H5PY_CASES, ids=[case_id(case) for case in H5PY_CASES])
def test_h5py_dataset_gets_whole_chunks_only(tmp_path, case):
    scan_shape, n_points_chunk, snake = case
    last_frames = output_chunk_last_frames(scan_shape, n_points_chunk, snake)
    with h5py.File(tmp_path / "out.h5", "w") as f:
        dataset = f.create_dataset(
            "data",
            shape=scan_shape + FRAME_SHAPE,
            dtype=np.int64,
            chunks=get_output_chunk_shape(n_points_chunk, scan_shape, FRAME_SHAPE),
        )

        def check_chunks(stop: int) -> None:  # a partial write would allocate one more chunk
            written = written_after(scan_shape, n_points_chunk, snake, stop)
            assert dataset.id.get_num_chunks() == len(written)

        run_scan(scan_shape, n_points_chunk, snake, dataset, after_chunk=check_chunks)
        assert dataset.id.get_num_chunks() == len(last_frames)
        np.testing.assert_array_equal(dataset[()], expected_grid(scan_shape, snake))


# Cases where swmr_tools 0.9 is right: the same grid, from the same output chunk writes.
SWMR_TOOLS_RIGHT = [
    ((4, 5), 3, False),
    ((3, 8), 4, False),
    ((5, 3), 7, False),
    ((2, 3, 4), 5, False),
    ((4, 5), 2, True),
    ((3, 7), 3, True),
    ((6, 6), 4, True),
    ((5, 3), 7, True),
    ((2, 3, 4), 5, True),
]


@pytest.mark.parametrize("case", SWMR_TOOLS_RIGHT, ids=[case_id(c) for c in SWMR_TOOLS_RIGHT])
def test_same_grid_and_writes_as_swmr_tools(case):
    scan_shape, n_points_chunk, snake = case
    theirs, ours = ListOutput(scan_shape), ListOutput(scan_shape)
    run_scan(scan_shape, n_points_chunk, snake, theirs, module=swmr_chunk_utils)
    run_scan(scan_shape, n_points_chunk, snake, ours)
    np.testing.assert_array_equal(theirs.array, expected_grid(scan_shape, snake))
    np.testing.assert_array_equal(ours.array, theirs.array)
    assert sorted(ours.regions()) == sorted(theirs.regions())


def write_calls(scan_shape, n_points_chunk, snake, module) -> dict[tuple, int]:
    """Output region -> the input chunk (its first frame) whose call wrote it last."""
    output, calls = ListOutput(scan_shape), []
    run_scan(
        scan_shape,
        n_points_chunk,
        snake,
        output,
        module=module,
        after_chunk=lambda stop: calls.append((stop, len(output.writes))),
    )
    written: dict[tuple, int] = {}
    done = 0
    for stop, count in calls:
        for key in output.writes[done:count]:
            bounds = tuple(s.indices(n)[:2] for s, n in zip(key, output.shape, strict=False))
            if all(b > a for a, b in bounds):
                written[bounds[: len(scan_shape)]] = (stop - 1) // n_points_chunk * n_points_chunk
        done = count
    return written


# swmr_tools 0.9's own snake cases (test_chunk_utils.py) where a narrow row end is held back
HELD_BACK = [
    ((11, 23), 10),
    ((4, 4), 3),
    ((3, 3), 2),
    ((6, 6), 5),
    ((35, 29), 7),
    ((13, 13), 10),
    ((3, 3, 3), 2),
    ((2, 3, 7, 10), 7),
]


@pytest.mark.parametrize(
    ("scan_shape", "n_points_chunk"), HELD_BACK, ids=[f"{s}-n{n}" for s, n in HELD_BACK]
)
def test_each_output_chunk_written_by_the_call_swmr_tools_writes_it_in(scan_shape, n_points_chunk):
    ours = write_calls(scan_shape, n_points_chunk, True, chunk_utils)
    theirs = write_calls(scan_shape, n_points_chunk, True, swmr_chunk_utils)
    assert ours == theirs


def test_swmr_tools_writes_wrong_frames_then_writes_them_again():
    # Row 3 of a 4x4 snake runs backwards and starts input chunk 12..14; its end chunk (one
    # point, frame 12) is read with slice(1, 0, -1): frame 13.
    scan_shape, n_points_chunk = (4, 4), 3
    expected = expected_grid(scan_shape, snake=True)
    theirs = ListOutput(scan_shape)
    run_scan(scan_shape, n_points_chunk, True, theirs, module=swmr_chunk_utils)
    first_write = next(snap for snap in theirs.snapshots if snap[3, 3, 0] != -1)
    assert first_write[3, 3, 0] == 26  # frame 13 where frame 12 (values 24, 25) belongs
    assert sorted(theirs.regions()).count(((3, 4), (3, 4))) == 2
    np.testing.assert_array_equal(theirs.array, expected)  # put right by the second write
    check_scan(scan_shape, n_points_chunk, True)


def test_swmr_tools_writes_past_the_row_end_when_chunks_span_rows():
    theirs = ListOutput((2, 2))
    run_scan((2, 2), 4, True, theirs, module=swmr_chunk_utils)
    assert slice(0, 3, 1) in [key[1] for key in theirs.writes]  # an axis of 2
    ours = RecordingOutput((2, 2), 4)
    run_scan((2, 2), 4, True, ours)
    assert ours.written == [(0, 0), (1, 0)]


def test_swmr_tools_writes_empty_regions_when_rows_are_whole_chunks():
    theirs = ListOutput((1, 2))
    run_scan((1, 2), 2, False, theirs, module=swmr_chunk_utils)
    assert len(theirs.writes) == 2
    assert len(theirs.regions()) == 1  # the other write is slice(2, 2)
    ours = ListOutput((1, 2))
    run_scan((1, 2), 2, False, ours)
    assert ours.writes == [(slice(0, 1, 1), slice(0, 2, 1), slice(0, 2, 1))]


def test_end_of_reversed_row_written_with_the_next_input_chunk_as_swmr_tools():
    # 2x4 snake, chunks of 3: output [1, 3] is frame 4, in input chunk 3..5; as swmr_tools,
    # it is written with the next input chunk, copied from last_data.
    theirs = swmr_chunk_utils.get_slice_structure(6, 3, [2, 4], True)
    assert [(c.type, tuple(map(int, c.position))) for c in theirs] == [
        ("last", (1, 1)),
        ("combined", (1, 1)),
    ]
    assert [(c.type, c.position) for c in get_slice_structure(3, 3, (2, 4), True)] == [
        ("current", (0, 3))
    ]
    held, rest = get_slice_structure(6, 3, (2, 4), True)
    assert (held.type, held.position) == ("last", (1, 3))
    assert held.last == SliceInOut(slice(1, 0, -1), slice(3, 4, 1))
    assert (rest.type, rest.position) == ("combined", (1, 0))


def test_snake_write_of_swmr_tools_test_write():
    # swmr_tools 0.9's own test_write: one call for the input chunk of frames 30..39 of an
    # 11x23 snake, with last_data standing for frames 20..29. Row 1 runs backwards from frame
    # 23 at column 22, so column 22 holds frame 23 (last_data[3] == 4) and column 19 frame 26
    # (last_data[6] == 7); the narrow end [1, 20:23] (frames 23..25) is written by this call.
    shape, scalars = [11, 23], np.arange(1, 11)
    assert [get_position_snake(i, shape, 2) for i in (23, 26)] == [(1, 22), (1, 19)]
    ours, theirs = np.zeros(shape), np.zeros(shape)
    write_data(get_slice_structure(30, 10, shape, True), scalars, scalars, ours)
    structure = swmr_chunk_utils.get_slice_structure(30, 10, shape, True)
    swmr_chunk_utils.write_data(structure, scalars, scalars, theirs)
    assert (ours[1, 22], ours[1, 19]) == (4, 7)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(
    "shape", [(11, 23), (4, 4), (3, 3, 3), (2, 13, 20), (2, 3, 7, 10)], ids=str
)
def test_snake_positions_are_swmr_tools(shape):
    n = math.prod(shape)
    theirs = [
        tuple(map(int, swmr_utils.get_position_snake(i, shape, len(shape)))) for i in range(n)
    ]
    assert [get_position_snake(i, shape, len(shape)) for i in range(n)] == theirs


def test_reversed_slice_reaching_frame_zero_stops_at_none():
    (collection,) = get_slice_structure(3, 3, (2, 3), True)  # row 1 is frames 3, 4, 5
    assert collection.current == SliceInOut(slice(2, None, -1), slice(0, 3, 1))


def test_combined_write_from_both_chunks():
    (collection,) = get_slice_structure(6, 6, (4, 5), False)
    assert collection.type == "combined"
    assert collection.position == (1, 0)
    assert collection.last == SliceInOut(slice(5, 6, 1), slice(0, 1, 1))
    assert collection.current == SliceInOut(slice(0, 4, 1), slice(1, 5, 1))
    assert collection.intermediate == SliceSize(slice(0, 5, 1), 5)


def test_repr_matches_swmr_tools():
    ours = ChunkSliceCollection("combined", (1, 0))
    theirs = swmr_chunk_utils.ChunkSliceCollection("combined", (1, 0))
    for collection, module in ((ours, chunk_utils), (theirs, swmr_chunk_utils)):
        collection.last = module.SliceInOut(slice(5, 6, 1), slice(0, 1, 1))
        collection.current = module.SliceInOut(slice(0, 4, 1), slice(1, 5, 1))
        collection.intermediate = module.SliceSize(slice(0, 5, 1), 5)
    assert repr(ours) == repr(theirs)


def test_numpy_scan_shape_and_index_accepted():
    structure = get_slice_structure(np.int64(6), np.int64(6), np.array([4, 5]), False)
    assert [c.position for c in structure] == [(1, 0)]
    assert all(type(p) is int for p in structure[0].position)


def test_hand_built_last_collection_is_written():
    collection = ChunkSliceCollection("last", (1, 0))
    collection.last = SliceInOut(slice(2, None, -1), slice(0, 3, 1))
    grid = np.zeros((2, 3), dtype=np.int64)
    write_data([collection], np.arange(3, 6), np.arange(3), grid)
    np.testing.assert_array_equal(grid, [[0, 0, 0], [2, 1, 0]])


def test_frames_without_dims():
    grid = np.full((3, 4), -1)
    stack = np.arange(12)
    for index in range(0, 12, 5):
        last = stack[index - 5 : index] if index else None
        write_data(
            get_slice_structure(index, 5, (3, 4), True), stack[index : index + 5], last, grid
        )
    np.testing.assert_array_equal(grid, [[0, 1, 2, 3], [7, 6, 5, 4], [8, 9, 10, 11]])


@pytest.mark.parametrize(
    ("n_points_chunk", "scan_shape", "frame_shape", "chunks"),
    [
        (100, (30, 456), (8, 8), (1, 100, 8, 8)),
        (100, (30, 40), (), (1, 40)),
        (3, (7,), (2,), (3, 2)),
        (4, (2, 3, 4), (), (1, 1, 4)),
    ],
    ids=["chunk-in-row", "row-in-chunk", "one-dim-scan", "chunk-is-row"],
)
def test_output_chunk_shape(n_points_chunk, scan_shape, frame_shape, chunks):
    assert get_output_chunk_shape(n_points_chunk, scan_shape, frame_shape) == chunks


@pytest.mark.parametrize(
    ("index", "n_points_chunk", "scan_shape", "match"),
    [
        (4, 3, (4, 5), r"index 4 is not the start of an input chunk of 3"),
        (21, 3, (4, 5), r"index 21 .* \(20 frames\)"),
        (-3, 3, (4, 5), r"index -3"),
        (0, 0, (4, 5), r"n_points_chunk 0 is not positive"),
        (0, 3, (), r"scan_shape \(\) is not a shape"),
        (0, 3, (4, 0), r"scan_shape \(4, 0\)"),
    ],
    ids=["not-chunk-start", "past-end", "negative", "zero-chunk", "empty-shape", "zero-dim"],
)
def test_bad_arguments(index, n_points_chunk, scan_shape, match):
    with pytest.raises(ValueError, match=match):
        get_slice_structure(index, n_points_chunk, scan_shape, False)


def test_bad_collection_type():
    with pytest.raises(ValueError, match=r"type 'both' is not one of"):
        ChunkSliceCollection("both", (0, 0))  # type: ignore[arg-type]


def test_combined_without_last_data():
    structure = get_slice_structure(6, 6, (4, 5), False)
    with pytest.raises(ValueError, match=r"last_data is None .* Fix: pass the previous"):
        write_data(structure, make_stack(6), None, np.zeros((4, 5, 2)))


def test_data_shorter_than_the_structure_expects():
    structure = get_slice_structure(0, 6, (4, 5), False)
    with pytest.raises(ValueError, match=r"3 frames gathered .* do not fill slice\(0, 5, 1\)"):
        write_data(structure, make_stack(3), None, np.zeros((4, 5, 2)))


def test_output_of_the_wrong_rank():
    structure = get_slice_structure(0, 6, (4, 5), False)
    with pytest.raises(ValueError, match=r"output of shape \(20, 2\) does not hold a scan"):
        write_data(structure, make_stack(6), None, np.zeros((20, 2)))
