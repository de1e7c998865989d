"""RowKeyFollower: a KeyFollower that hands out whole rows of the scan."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from h5live._closing import ClosingContext
from h5live._follow.follower import FollowPolicy, KeyFollower, ScanMaxshape
from h5live._follow.keys import dataset_label
from h5live._source.spec import Clock, Sleep

__all__ = ["RowKeyFollower"]

logger = logging.getLogger(__name__)


class RowKeyFollower(ClosingContext):
    """Iterate over complete rows: yields the flat index of the last frame of each row.

    A drop-in for ``swmr_tools.RowKeyFollower``. A row is ``row_size`` consecutive frames
    (default: the length of the fastest scan axis); use ``utils.get_row_slice(index, ...)`` to
    select it. A final row that the writer never completes is not yielded (as in swmr_tools),
    and a warning says how many frames it held.

    Parameters
    ----------
    key_datasets, timeout, finished_dataset
        As for :class:`h5live.KeyFollower`.
    row_size
        Frames per row; needed when the fastest scan axis can grow.
    policy, clock, sleep
        As for :class:`h5live.KeyFollower`.

    Raises
    ------
    ValueError
        ``row_size`` is not a positive number, or is None while the fastest axis can grow.
    """

    def __init__(
        self,
        key_datasets: Sequence[Any],
        timeout: float | None = 10,
        finished_dataset: Any | None = None,
        row_size: int | None = None,
        *,
        policy: FollowPolicy | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if row_size is not None and not (isinstance(row_size, int) and row_size > 0):
            raise ValueError(f"row_size must be None or a number of frames >= 1, got {row_size!r}.")
        self.inner_key_follower = KeyFollower(
            key_datasets, timeout, finished_dataset, policy=policy, clock=clock, sleep=sleep
        )
        self.row_size = row_size
        self.scan_rank = -1
        self.maxshape: ScanMaxshape | None = None
        self._row_count = -1
        self._warned = False
        self.check_datasets()

    def check_datasets(self) -> None:
        """Set ``scan_rank``, ``maxshape`` and the default ``row_size`` (done at construction)."""
        inner = self.inner_key_follower
        inner.check_datasets()
        self.scan_rank = inner.scan_rank
        self.maxshape = inner.maxshape
        if self.row_size is None:
            fastest = self.maxshape[-1] if self.maxshape else None
            if fastest is None:
                filename, name = dataset_label(inner.key_datasets[0])
                raise ValueError(
                    f"the fastest scan axis of key dataset {name!r} in {filename!r} can grow "
                    f"(maxshape {self.maxshape}), so the row size is unknown. Fix: pass "
                    "row_size=<frames per row>."
                )
            self.row_size = fastest

    def __iter__(self) -> RowKeyFollower:
        return self

    def __next__(self) -> int:
        inner = self.inner_key_follower
        size = self.row_size if self.row_size is not None else 1
        last = inner.current_key + size
        if not inner.wait_for(last):
            leftover = inner.current_max - inner.current_key
            if leftover > 0 and not self._warned:
                self._warned = True
                logger.warning(
                    "%s: the last %d complete frame(s) do not fill a row of %d and were not "
                    "delivered",
                    dataset_label(inner.key_datasets[0])[0],
                    leftover,
                    size,
                )
            raise StopIteration
        inner.current_key = last
        self._row_count += 1
        return last

    def reset(self) -> None:
        """Start again from the first row."""
        self._row_count = -1
        self.inner_key_follower.reset()

    def close(self) -> None:
        """Close the inner follower. Idempotent."""
        self.inner_key_follower.close()

    def __repr__(self) -> str:
        filename = os.path.basename(dataset_label(self.inner_key_follower.key_datasets[0])[0])
        return (
            f"<RowKeyFollower {filename!r} row_size={self.row_size} rows={self._row_count + 1} "
            f"frontier={self.inner_key_follower.current_max}>"
        )
