"""The release schedule of a live iterator, as pure functions of the scan and the frontier.

Contract
--------
- Buffers are boxes over the scan dims (slices, first axis slowest), cut into hdmf's order of
  tiles over the frame axes (:func:`tiles`, :func:`with_frames`). Frames are numbered in C
  order over the scan (:func:`first_frame`, :func:`last_frame`).
- A buffer is released whole once its last frame is complete. With a latency bound, its
  complete scan rows from the start (:func:`complete_scan_rows`) are released once its oldest
  complete frame has waited the bound less what releases have cost lately
  (:func:`release_budget`, at least half the bound; the cost a decaying maximum:
  :func:`next_release_cost`). When the source has stopped, the complete frames of a buffer are
  released as boxes (:func:`prefix_boxes`), a last scan row possibly in part.
- Nothing here waits, reads or knows hdmf: the iterator (:mod:`h5live._iterate.iterator`)
  asks these functions and waits on its follower.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = [
    "Selection",
    "complete_scan_rows",
    "first_frame",
    "last_frame",
    "next_release_cost",
    "prefix_boxes",
    "release_budget",
    "tiles",
    "with_frames",
]

Selection = tuple[slice, ...]

#: How much of the last release cost is still remembered at the next one (a decaying maximum).
COST_MEMORY = 0.9


def prefix_boxes(block: Selection, scan_shape: Sequence[int], complete: int) -> list[Selection]:
    """The parts of ``block`` (slices over the scan dims) made of frames ``< complete``.

    Frames are numbered in C order over ``scan_shape``; the parts are boxes, in scan order.
    """
    if complete <= 0 or not block:
        return []
    first = block[0]
    inner = math.prod(scan_shape[1:])
    rows, rest = divmod(complete, inner)
    boxes: list[Selection] = []
    if rows > first.start:
        boxes.append((slice(first.start, min(first.stop, rows)), *block[1:]))
    if first.start <= rows < first.stop and rest:
        for part in prefix_boxes(block[1:], scan_shape[1:], rest):
            boxes.append((slice(rows, rows + 1), *part))
    return boxes


def last_frame(block: Selection, scan_shape: Sequence[int]) -> int:
    """Flat index of the last frame of a box of the scan."""
    return int(np.ravel_multi_index([s.stop - 1 for s in block], tuple(scan_shape)))


def first_frame(block: Selection, scan_shape: Sequence[int]) -> int:
    """Flat index of the first frame of a box of the scan."""
    return int(np.ravel_multi_index([s.start for s in block], tuple(scan_shape)))


def tiles(shape: Sequence[int], step: Sequence[int]) -> list[list[slice]]:
    """Per axis, the slices that cut ``shape`` into pieces of ``step``."""
    return [
        [slice(lo, min(lo + k, n)) for lo in range(0, n, k)]
        for n, k in zip(shape, step, strict=True)
    ]


def with_frames(parts: Sequence[Selection], frame_tiles: list[list[slice]]) -> Iterator[Selection]:
    """Each box of the scan with each tile of the frame axes, in hdmf's order."""
    for part in parts:
        for frame_part in itertools.product(*frame_tiles):
            yield (*part, *frame_part)


def complete_scan_rows(block: Selection, scan_shape: Sequence[int], frontier: int) -> int:
    """Rows of ``block`` from its start (along the first axis) whose frames are all complete
    (frames up to ``frontier``), less than the whole block."""
    start, stop = int(block[0].start), int(block[0].stop)
    inner = max(int(math.prod(scan_shape[1:])), 1)
    # Row r of the block is complete when its last frame, r * inner + offset, is.
    offset = last_frame((slice(0, 1), *block[1:]), scan_shape)
    rows = (frontier - offset) // inner + 1 - start
    return max(0, min(rows, stop - start - 1))


def release_budget(max_latency_s: float, cost_s: float) -> float:
    """How long a complete frame may wait to be released: ``max_latency_s`` less what a
    release has cost lately (reading and writing it), but at least half of it."""
    return max_latency_s - min(cost_s, max_latency_s / 2)


def next_release_cost(remembered_s: float, last_s: float) -> float:
    """The release cost to plan with after a release that took ``last_s``: a decaying maximum,
    so that one slow write is remembered for a while."""
    return max(last_s, COST_MEMORY * remembered_s)
