"""The pure release schedule and shape choice of LiveDataChunkIterator."""

from __future__ import annotations

import pytest

from h5live._iterate.schedule import (
    complete_scan_rows,
    next_release_cost,
    prefix_boxes,
    release_budget,
)
from h5live._iterate.shapes import LIVE_CHUNK_FRAMES, chunk_buffer_shape, frame_chunk_shape


@pytest.mark.parametrize(
    ("frontier", "rows"),
    [(-1, 0), (9, 0), (11, 1), (15, 2), (19, 3), (99, 3)],
    ids=["none", "inside-the-first", "the-first", "two", "three", "all-but-the-last"],
)
def test_complete_scan_rows_of_a_grid_block_are_whole_rows_less_than_the_block(frontier, rows):
    block = (slice(2, 6), slice(0, 4))  # rows 2..5 of rows of 4 points: row 2 is frames 8..11
    assert complete_scan_rows(block, (10, 4), frontier) == rows


def test_prefix_boxes_give_whole_rows_then_the_part_of_the_next():
    assert prefix_boxes((slice(0, 3), slice(0, 4)), (3, 4), 6) == [
        (slice(0, 1), slice(0, 4)),
        (slice(1, 2), slice(0, 2)),
    ]


def test_the_release_budget_leaves_room_for_the_write_but_never_less_than_half():
    assert release_budget(1.0, 0.0) == 1.0
    assert release_budget(1.0, 0.3) == pytest.approx(0.7)
    assert release_budget(1.0, 5.0) == 0.5
    assert next_release_cost(0.0, 0.4) == 0.4
    assert next_release_cost(0.4, 0.1) == pytest.approx(0.36)  # remembered, decaying


def test_default_chunks_are_whole_frames_capped_while_the_length_is_unknown():
    live = frame_chunk_shape(
        10.0,
        scan_shape=(1,),
        frame_shape=(16, 16),
        itemsize=2,
        final_rows=None,
        hdmf_if_larger=False,
    )
    assert live == (LIVE_CHUNK_FRAMES, 16, 16)
    known = frame_chunk_shape(
        10.0,
        scan_shape=(100,),
        frame_shape=(16, 16),
        itemsize=2,
        final_rows=100,
        hdmf_if_larger=False,
    )
    assert known == (100, 16, 16)
    grid = frame_chunk_shape(
        0.01,
        scan_shape=(5, 60),
        frame_shape=(16, 16),
        itemsize=2,
        final_rows=None,
        hdmf_if_larger=False,
    )
    assert grid == (1, 19, 16, 16)  # 19 frames of 512 bytes in 10 kB, along the fast axis


def test_default_buffers_are_whole_chunks_within_buffer_gb():
    shape = chunk_buffer_shape(
        (8, 512, 512), 0.128, maxshape=(1000, 512, 512), itemsize=2, final=True
    )
    assert shape == (240, 512, 512)  # 244 frames fit, cut to whole chunks of 8
