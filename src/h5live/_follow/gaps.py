"""Gap timing for the ``"skip"`` gap policy of a KeyFollower.

A *gap* is a frame whose keys are not all set while a later frame is complete. The skip policy
delivers past a gap once it has stayed open for ``gap_timeout_s``. This module remembers when
each open gap was first seen and decides how far past the frontier to look: a probe that
starts small (a gap is usually right behind frames the writer has just completed) and grows
only while it finds no complete frame, so that looking costs little when there is no gap.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from h5live._follow.keys import first_zero

__all__ = ["GapTracker"]


class GapTracker:
    """First-seen times of open gaps, and when and how far to look for them.

    Parameters
    ----------
    gap_timeout_s
        How long a gap stays open before it is skipped.
    lookahead
        The most frames past the frontier one scan inspects.
    initial_probe
        Frames inspected by the first scan after the frontier moved.
    """

    def __init__(self, gap_timeout_s: float, lookahead: int, initial_probe: int) -> None:
        self.gap_timeout_s = gap_timeout_s
        self.lookahead = lookahead
        self.initial_probe = min(initial_probe, lookahead)
        self.probe = self.initial_probe
        self.first_seen: dict[int, float] = {}
        self.last_scan = -math.inf

    def due(self, now: float) -> bool:
        """Whether a scan is due: first-seen times need a resolution of gap_timeout_s / 8."""
        return now - self.last_scan >= self.gap_timeout_s / 8

    def frontier_moved(self) -> None:
        """Start the next search for a gap small again."""
        self.probe = self.initial_probe

    def skip_run(
        self, complete: npt.NDArray[np.bool_], start: int, now: float, final: bool
    ) -> tuple[int, list[int]]:
        """How many frames from ``start`` are complete or expired gaps, and which were gaps.

        Parameters
        ----------
        complete
            Whether frames ``start, start + 1, ...`` are complete in every key.
        start
            The first frame after the frontier.
        now
            The current time.
        final
            The writer is done (finished flag, or the follower is giving up): every gap
            counts as expired.

        Returns
        -------
        run : int
            Frames from ``start`` that can be passed (delivered or skipped).
        skipped : list of int
            The gaps among them, in order.
        """
        self.last_scan = now
        done = np.flatnonzero(complete)
        if done.size == 0:  # no gap in sight: look further next time, up to the lookahead
            self.first_seen.clear()
            self.probe = self.probe * 4 if self.probe < self.lookahead else self.initial_probe
            return 0, []
        last = int(done[-1])
        gaps = [int(i) + start for i in np.flatnonzero(~complete[:last])]
        self.first_seen = {i: self.first_seen.get(i, now) for i in gaps}
        passable = complete[: last + 1].copy()
        for i in gaps:
            passable[i - start] = final or now - self.first_seen[i] >= self.gap_timeout_s
        blocked = first_zero(passable)
        run = last + 1 if blocked is None else blocked
        return run, [i for i in gaps if i < start + run]
