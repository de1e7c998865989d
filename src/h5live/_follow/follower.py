"""KeyFollower: the frontier of complete frames in a live source.

Contract
--------
- A *key dataset* is a numeric dataset (integers of any width, bool, floats) shaped like the
  scan, fill value 0, set non-zero by the writer once the frame at that position is flushed;
  a float key that is NaN counts as not set. Frames are numbered by their flat C-order index
  over the scan dims (the key dims left after dropping trailing size-1 dims, as swmr_tools
  does).
- The *frontier* (``current_max``) is the highest flat index ``i`` such that every key is
  non-zero at every index ``0..i`` (with the ``"skip"`` gap policy: or was skipped). It only
  grows. Frames up to it are delivered exactly once, in order, by iteration
  (``__next__`` / :meth:`KeyFollower.iter_ranges`); :meth:`KeyFollower.poll` and
  :meth:`KeyFollower.wait_for` only report it.
- A poll refreshes each key and reads a chunk-aligned window after the frontier, growing
  geometrically while it is all non-zero, so an idle poll costs the same whatever the scan
  length or the pre-sized key size. It stops at the first key that shows no progress. Keys are
  combined as booleans, never multiplied.
- The follower stops (``stop_reason``) when the keys cover the whole fixed scan shape
  (``"complete"``), when the finished dataset is non-zero (``"finished"``; read on polls that
  find no new frame, at most every ``finished_interval_s``; the keys are read once more after
  the flag is first seen, because the writer sets keys before the flag, and if that read
  completes a fixed scan the stop is ``"complete"``, so that a pre-sized scan that ends
  normally always says so), or when no frame has completed for ``timeout`` seconds of
  waiting (``"timeout"``). Every complete frame is delivered before iteration stops.
- A key that drops back to zero below the frontier is reported (a warning, or an error in
  strict mode) and never makes a frame be delivered twice. The check covers the key chunk that
  holds the frontier, which is read anyway.
- While waiting, a poll starts at most every ``poll_interval_s`` and polls are spaced so
  that they take at most ``max_busy_fraction`` of the time, from the median cost of the last
  few polls: one poll slowed by a stall (the process paused, the disk busy) does not space the
  next ones, so a stall of a few seconds never delays frames by four times as long.
- Time is read through an injectable ``clock``/``sleep`` pair.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import statistics
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from h5live._closing import ClosingContext
from h5live._follow.gaps import GapTracker
from h5live._follow.keys import (
    MIN_WINDOW,
    NO_LIMIT,
    FinishedFlag,
    KeyView,
    check_key_dataset,
    dataset_label,
    stable_prefix,
)
from h5live._source.spec import (
    Clock,
    Sleep,
    SourceSpec,
)
from h5live.errors import (
    FollowTimeout,
    KeyDatasetError,
    KeyRegressionError,
    KeyRegressionWarning,
)

__all__ = ["FollowPolicy", "KeyFollower", "ScanMaxshape", "StopReason"]

logger = logging.getLogger(__name__)

StopReason = Literal["finished", "timeout", "complete"]
#: The scan part of a key's ``maxshape``: a tuple for h5py datasets, a list if a key gives one.
ScanMaxshape = tuple[int | None, ...] | list[int | None]

_MOVES_KEPT = 4096  # frontier moves remembered for completed_at
_COSTS_KEPT = 5  # poll costs whose median spaces the polls (a slow one among them is ignored)
GapPolicy = Literal["block", "skip"]


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside h5live."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("h5live."):
        frame = frame.f_back
        level += 1
    return level


def _thinned(moves: list[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    """Half as many (frontier, time, previous poll) moves: each pair merged into the later
    frontier with the earlier times, so that :meth:`KeyFollower.completed_at` and
    :meth:`KeyFollower.complete_since` err early, never late."""
    merged = [(moves[k + 1][0], *moves[k][1:]) for k in range(0, len(moves) - 1, 2)]
    if len(moves) % 2:
        merged.append(moves[-1])
    return merged


@dataclass(frozen=True)
class FollowPolicy:
    """How a :class:`KeyFollower` polls, treats gaps and reacts to writer errors.

    Parameters
    ----------
    poll_interval_s
        While waiting, start at most one poll per this many seconds. The default (1 ms) keeps
        the median delay from a key flush to its frame being yielded around 1 ms. A poll costs
        about 0.1-0.3 ms per key it reads (mostly HDF5 reloading the refreshed key dataset),
        whatever the scan length.
    max_busy_fraction
        While waiting, space polls so that polling takes at most this fraction of the time
        (measured from the median cost of the last five polls, so that one poll slowed by a
        stall does not hold back the next ones): following a fast writer with several keys
        then costs a quarter of a core, not all of it, at the price of a little latency.
        1.0 polls back to back when a poll is slower than ``poll_interval_s``.
    gaps
        ``"block"`` (default, as swmr_tools): a key left at 0 holds the frontier until it is
        set. ``"skip"``: once frames after it are complete, an index whose keys stay unset for
        ``gap_timeout_s`` is skipped and reported in :attr:`KeyFollower.skipped`.
    gap_timeout_s
        How long a gap may stay open, with complete frames after it, before it is skipped.
    gap_lookahead
        How many frames past the frontier the skip policy inspects for complete frames. A gap
        longer than this blocks as with ``"block"``.
    strict
        Raise :class:`~h5live.errors.KeyRegressionError` when a key drops back to zero,
        instead of warning.
    finished_interval_s
        While no frame completes, read the finished flag at most this often. It only decides
        when to stop, so reading it on every poll would double the cost of an idle poll.
    """

    poll_interval_s: float = 0.001
    gaps: GapPolicy = "block"
    gap_timeout_s: float = 5.0
    gap_lookahead: int = 65536
    strict: bool = False
    finished_interval_s: float = 0.01
    max_busy_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not (self.poll_interval_s >= 0 and math.isfinite(self.poll_interval_s)):
            raise ValueError(
                f"poll_interval_s must be a finite number >= 0, got {self.poll_interval_s!r}. "
                "Fix: pass seconds between polls, e.g. 0.001."
            )
        if not 0 < self.max_busy_fraction <= 1:
            raise ValueError(
                f"max_busy_fraction must be in (0, 1], got {self.max_busy_fraction!r}. Fix: pass "
                "the largest share of one core the follower may spend polling, e.g. 0.25."
            )
        if self.gaps not in ("block", "skip"):
            raise ValueError(
                f"gaps must be 'block' or 'skip', got {self.gaps!r}. Fix: 'block' waits for "
                "every key (as swmr_tools), 'skip' delivers frames past a gap that stays open."
            )
        if not self.gap_timeout_s >= 0:
            raise ValueError(
                f"gap_timeout_s must be >= 0, got {self.gap_timeout_s!r}. Fix: pass the seconds "
                "a gap may stay open before it is skipped."
            )
        if not (self.finished_interval_s >= 0 and math.isfinite(self.finished_interval_s)):
            raise ValueError(
                f"finished_interval_s must be a finite number >= 0, got "
                f"{self.finished_interval_s!r}. Fix: pass seconds between finished-flag reads."
            )
        if self.gap_lookahead < 1:
            raise ValueError(
                f"gap_lookahead must be >= 1, got {self.gap_lookahead!r}. Fix: pass how many "
                "frames past the frontier to inspect for complete frames."
            )


class KeyFollower(ClosingContext):
    """Iterate over the flat indices of complete frames in a live source.

    A drop-in for ``swmr_tools.KeyFollower`` (same signature, attributes and methods) that polls
    cheaply, waits with low latency, stops race-safe on the finished flag and never yields a
    frame twice. See the module docstring of ``h5live._follow.follower`` for the contract.

    Parameters
    ----------
    key_datasets
        Key datasets: h5py datasets, or objects with ``maxshape``, ``shape``,
        ``__getitem__`` and optionally ``refresh()``. All must have the same scan rank.
    timeout
        Idle timeout: stop when no new frame has completed for this many seconds of waiting.
        ``None`` waits until the finished flag is set or the scan is complete.
    finished_dataset
        Optional one-element dataset, non-zero once the file is complete. A true scalar
        (shape ``()``) and shape ``(1,)`` both work.
    policy
        Poll interval, gap policy and strictness (:class:`FollowPolicy`).
    clock, sleep
        Time functions; tests inject fakes so that nothing really sleeps.

    Attributes
    ----------
    current_key : int
        The last index handed out by iteration (-1 before the first).
    current_max : int
        The frontier: the highest index up to which every frame is complete (-1: none).
    scan_rank : int
        Number of scan dims (key dims without trailing size-1 dims).
    maxshape : tuple or list
        The scan part of the first key's ``maxshape`` (``None`` on growing axes), of the
        sequence type the key gives (h5py: a tuple).
    timed_out, finished_set : bool
        Whether the idle timeout elapsed; whether the finished flag was seen set.
    stop_reason : {"finished", "timeout", "complete"} or None
        Why no more frames will be delivered; None while following.

    Raises
    ------
    KeyDatasetError
        Keys of different scan rank, keys that are not numbers, a scalar key, or a contiguous
        key that HDF5 cannot read while it is written.
    FinishedDatasetError
        A finished dataset that does not hold exactly one number.

    Examples
    --------
    >>> with KeyFollower.from_path("scan.h5", timeout=5) as follower:  # doctest: +SKIP
    ...     for start, stop in follower.iter_ranges():
    ...         process(start, stop)
    ...     print(follower.stop_reason)
    """

    def __init__(
        self,
        key_datasets: Sequence[Any],
        timeout: float | None = 10,
        finished_dataset: Any | None = None,
        *,
        policy: FollowPolicy | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if timeout is not None and not timeout >= 0:
            raise ValueError(
                f"timeout must be None or a number of seconds >= 0, got {timeout!r}. Fix: pass "
                "the idle timeout in seconds, or None to wait for the finished flag only."
            )
        self.key_datasets = list(key_datasets)
        self.timeout = timeout
        self.finished_dataset: Any = finished_dataset
        self.policy = policy if policy is not None else FollowPolicy()
        self._clock = clock
        self._sleep = sleep
        #: Called before each sleep of a wait for frames (the frontier short of what is
        #: waited for): a writer hands over the work it holds there (LiveWrite flushes the
        #: chunks its encoding threads hold, so that nothing written waits for the writer).
        self.on_wait: Callable[[], None] | None = None
        self.current_key = -1
        self.current_max = -1
        self.timed_out = False
        self.finished_set = False
        self.stop_reason: StopReason | None = None
        self.scan_rank = -1
        self.maxshape: ScanMaxshape | None = None
        self._keys: list[KeyView] = []
        self._total: int | None = None
        self._skipped: list[int] = []
        self._regressed: set[int] = set()
        self._gaps = GapTracker(
            self.policy.gap_timeout_s, self.policy.gap_lookahead, initial_probe=MIN_WINDOW
        )
        self._polls = 0  # counts key reads, so that a poll refreshes each key at most once
        self._last_finished_read = -math.inf
        self._next_poll_at = -math.inf  # when waiting may poll again
        # what the last polls cost (s), newest last; starts free, so a slow first poll is
        # not enough to space the next ones
        self._poll_costs: deque[float] = deque([0.0] * (_COSTS_KEPT - 1), maxlen=_COSTS_KEPT)
        self._file: Any | None = None
        self._finished: FinishedFlag | None = None
        self._closed = False
        # (frontier, clock time, time of the poll before) of the polls that moved it, oldest
        # first: see completed_at and complete_since
        self._moves: list[tuple[int, float, float]] = []
        self._last_poll_at: float | None = None
        self.check_datasets()

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_path(
        cls,
        source: str | os.PathLike[str] | SourceSpec,
        key_paths: Sequence[str] | str | None = None,
        finished_path: str | None = None,
        *,
        timeout: float | None = 10,
        open_timeout_s: float = 10.0,
        policy: FollowPolicy | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> KeyFollower:
        """Open a source by path and follow its keys; the follower closes the file.

        Parameters
        ----------
        source
            The HDF5 file, or a :class:`SourceSpec` (then ``key_paths``, ``finished_path`` and
            ``open_timeout_s`` come from it).
        key_paths
            Key dataset paths, or groups whose datasets are all keys. ``None``: found in a
            known layout (``/entry/keys``, Diamond's ``/entry/diamond_scan/keys``, ...).
        finished_path
            The finished dataset; ``None``: the layout's, if the file has it.
        timeout, policy, clock, sleep
            As for :class:`KeyFollower`.
        open_timeout_s
            How long to retry while the file is missing, locked or incomplete.

        Raises
        ------
        SourceNotReadyError
            The file could not be opened in time.
        DatasetNotFoundError
            A given path is missing, or no known layout matched.
        """
        if isinstance(source, SourceSpec):
            if key_paths is not None or finished_path is not None:
                raise ValueError(
                    f"got a SourceSpec and also key_paths={key_paths!r}, "
                    f"finished_path={finished_path!r}. Fix: pass them inside the SourceSpec."
                )
            spec = source
        else:
            keys = (key_paths,) if isinstance(key_paths, str) else key_paths
            spec = SourceSpec(
                os.fspath(source),
                key_paths=None if keys is None else tuple(keys),
                finished_path=finished_path,
                open_timeout_s=open_timeout_s,
            )
        file, found = spec.open_resolved(clock=clock, sleep=sleep)
        try:
            follower = cls(
                found.keys,
                timeout,
                found.finished,
                policy=policy,
                clock=clock,
                sleep=sleep,
            )
        except BaseException:
            file.close()
            raise
        follower._file = file
        return follower

    def check_datasets(self) -> None:
        """Validate the key and finished datasets and set ``scan_rank`` and ``maxshape``.

        Called by the constructor; calling it again does nothing (swmr_tools compatibility).

        Raises
        ------
        KeyDatasetError, FinishedDatasetError
            See the class docstring.
        """
        if self._keys:
            return
        if not self.key_datasets:
            raise KeyDatasetError(
                "no key datasets given. Fix: pass at least one key dataset, or use "
                "KeyFollower.from_path() to find them in a known layout."
            )
        ranks = [(dataset_label(d)[1], *check_key_dataset(d)) for d in self.key_datasets]
        if len({rank for _, _, rank in ranks}) > 1:
            described = ", ".join(f"{n!r} maxshape {m} -> rank {r}" for n, m, r in ranks)
            raise KeyDatasetError(
                f"key datasets in {dataset_label(self.key_datasets[0])[0]!r} have different "
                f"scan ranks: {described}. Fix: pass keys of one scan (trailing size-1 dims "
                "are ignored)."
            )
        rank = ranks[0][2]
        maxshapes = {m[:rank] for _, m, _ in ranks}
        if len(maxshapes) > 1:
            logger.warning(
                "key datasets have different scan maxshapes: %s", sorted(maxshapes, key=str)
            )
        self.scan_rank = rank
        maxshape = ranks[0][1][:rank]
        # as swmr_tools: the first key's maxshape as it gives it (a list stays a list)
        self.maxshape = (
            list(maxshape) if isinstance(self.key_datasets[0].maxshape, list) else maxshape
        )
        if all(n is not None for n in maxshape):
            self._total = math.prod(n for n in maxshape if n is not None)
        dims = max(rank, 1)
        self._keys = [KeyView(dataset, dims) for dataset in self.key_datasets]
        if self.finished_dataset is not None:
            self._finished = FinishedFlag(self.finished_dataset)
        if self.timeout is None and self.finished_dataset is None and self._total is None:
            logger.warning(
                "timeout=None and no finished dataset: following %r stops only if its keys "
                "become complete, and waits forever if the writer dies",
                self._keys[0].filename,
            )

    # ------------------------------------------------------------------ polling

    def _on_regression(self, key: KeyView, indices: npt.NDArray[np.int64]) -> None:
        new = [
            int(i)
            for i in indices
            if int(i) not in self._regressed and not self._is_skipped(int(i))
        ]
        if not new:
            return
        self._regressed.update(new)
        shown = new if len(new) <= 10 else [*new[:10], "..."]
        message = (
            f"key dataset {key.name!r} in {key.filename!r} went back to 0 at frame(s) {shown} "
            f"after they were complete (frontier {self.current_max}); the writer reset keys "
            "it had set. The frontier holds and no frame is delivered twice."
        )
        if self.policy.strict:
            raise KeyRegressionError(message + " Fix: correct the writer, or strict=False.")
        warnings.warn(message, KeyRegressionWarning, stacklevel=_caller_stacklevel())

    def _refresh(self, key: KeyView) -> None:
        if key.refreshed_in != self._polls:
            key.refresh(self.current_max)
            key.refreshed_in = self._polls

    def _complete_run(self, start: int) -> int:
        """End (exclusive) of the run of frames complete in every key, from ``start``."""
        end = NO_LIMIT
        reference: tuple[int, ...] | None = None
        for key in self._keys:
            self._refresh(key)
            if reference is None:
                reference = key.shape
            elif key.shape[1:] != reference[1:]:
                end = min(end, stable_prefix(reference, key.shape))
            end = key.run_end(start, max(start, min(end, key.extent)), self._on_regression)
            if end <= start:
                return start
        return end

    def _complete_mask(self, start: int, size: int) -> npt.NDArray[np.bool_]:
        """Whether frames ``start .. start + size - 1`` (at most) are complete in every key."""
        stop = start + size
        for key in self._keys:
            self._refresh(key)
            stop = min(stop, key.extent)
        if stop <= start:
            return np.zeros(0, dtype=bool)
        complete = np.ones(stop - start, dtype=bool)
        for key in self._keys:
            complete &= key.read(start, stop)
        return complete

    def _skip_gaps(self, start: int, end: int, final: bool) -> int:
        """Skip policy: pass expired gaps at ``end``; return the new end (exclusive)."""
        gaps = self._gaps
        if end > start:
            gaps.frontier_moved()
            if not final:
                return end
        now = self._clock()
        if not (final or gaps.due(now)):
            return end
        while True:
            size = self.policy.gap_lookahead if final else gaps.probe
            run, skipped = gaps.skip_run(self._complete_mask(end, size), end, now, final)
            if skipped:
                self._skipped.extend(skipped)
                logger.warning(
                    "%s: skipped %d frame(s) whose keys stayed unset%s: %s",
                    self._keys[0].filename,
                    len(skipped),
                    " when the writer was done" if final else f" for {gaps.gap_timeout_s} s",
                    skipped if len(skipped) <= 10 else [*skipped[:10], "..."],
                )
            if run == 0:
                return end
            end = self._complete_run(end + run)
            if not final:
                return end

    def _advance(self, *, final: bool = False) -> bool:
        """Read the keys once and move the frontier; True if it moved.

        ``final``: the writer is done, so the skip policy passes every gap at once.
        """
        self._polls += 1
        polled_at = self._clock()
        before, self._last_poll_at = self._last_poll_at, polled_at
        start = self.current_max + 1
        end = self._complete_run(start)
        if self.policy.gaps == "skip":
            end = self._skip_gaps(start, end, final)
        if end > start:
            self.current_max = end - 1
            logger.debug("frontier %d", self.current_max)
            if len(self._moves) >= 2 * _MOVES_KEPT:
                self._moves = _thinned(self._moves)
            seen = self._clock()
            self._moves.append((self.current_max, seen, seen if before is None else before))
            return True
        return False

    def _stop(self, reason: StopReason) -> None:
        self.stop_reason = reason
        if reason == "timeout":
            self.timed_out = True
        logger.info(
            "%s: stopped (%s) at frontier %d", self._keys[0].filename, reason, self.current_max
        )
        if reason != "complete":
            start = self.current_max + 1
            stranded = int(np.count_nonzero(self._complete_mask(start, self.policy.gap_lookahead)))
            if stranded:
                logger.warning(
                    "%s: %d complete frame(s) after the gap at frame %d were not delivered "
                    "(gap policy %r); FollowPolicy(gaps='skip') delivers them",
                    self._keys[0].filename,
                    stranded,
                    start,
                    self.policy.gaps,
                )

    def _finished_now(self, force: bool) -> bool:
        """Read the finished flag if it is due (see ``FollowPolicy.finished_interval_s``)."""
        if self._finished is None:
            return False
        now = self._clock()
        if not force and now - self._last_finished_read < self.policy.finished_interval_s:
            return False
        self._last_finished_read = now
        return self._finished.read()

    def _poll_once(self, *, last: bool = False) -> bool:
        """One poll: keys, then (when idle) the finished flag. True if the frontier moved.

        ``last``: the poll before a timeout stop, which reads the flag whenever it is due or not.
        Sets when the next poll may start (see ``FollowPolicy.max_busy_fraction``).
        """
        started = self._clock()
        try:
            return self._poll_keys_and_flag(last)
        finally:
            self._poll_costs.append(self._clock() - started)
            spacing = statistics.median(self._poll_costs) / self.policy.max_busy_fraction
            self._next_poll_at = started + max(self.policy.poll_interval_s, spacing)

    def _poll_keys_and_flag(self, last: bool) -> bool:
        moved = self._advance()
        if not (moved or self._complete()) and self._finished_now(force=last):
            self.finished_set = True
            moved = self._advance(final=True) or moved  # keys are set before the flag
            if not self._complete():
                self._stop("finished")
        if self._complete():  # also when the flag's last key read completed the fixed scan
            self._stop("complete")
        return moved

    def _complete(self) -> bool:
        return self._total is not None and self.current_max >= self._total - 1

    def _wait(self, target: int, deadline: float | None) -> bool:
        """Block until the frontier reaches ``target`` (True) or the follower stops (False)."""
        idle_since = self._clock()
        polled = False
        while self.current_max < target:
            if self.stop_reason is not None:
                return False
            pause = self._next_poll_at - self._clock()
            if self.on_wait is not None and (pause > 0 or polled):  # about to wait
                self.on_wait()
                pause = self._next_poll_at - self._clock()
            if pause > 0:
                self._sleep(pause)
            polled = True
            now = self._clock()
            timed_out = self.timeout is not None and now - idle_since >= self.timeout
            if self._poll_once(last=timed_out):
                idle_since = self._clock()
                now = idle_since  # a writer that keeps writing can still miss the deadline
            elif self.stop_reason is not None:
                return self.current_max >= target
            elif timed_out:  # that poll was the last key read, and it read the flag too
                if self.policy.gaps == "skip":
                    self._advance(final=True)  # giving up on the writer: no gap will close
                self._stop("timeout")
                return self.current_max >= target
            if (
                deadline is not None
                and now >= deadline
                and self.current_max < target
                and self.stop_reason is None
            ):
                raise FollowTimeout(
                    f"frame {target} of {self._keys[0].filename!r} was not complete within "
                    f"the wait deadline (frontier {self.current_max}). Fix: wait longer, or "
                    "check that the writer is still running."
                )
        return True

    # ------------------------------------------------------------------ public API

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(
                f"this KeyFollower of {self._keys[0].filename!r} is closed. Fix: create a new "
                "KeyFollower to follow the file again."
            )

    def poll(self) -> int:
        """Read the keys once, without blocking, and return the frontier.

        Also checks the finished flag when no frame completed, so ``stop_reason`` may be set
        afterwards. Does nothing once the follower has stopped.
        """
        self._check_open()
        if self.stop_reason is None:
            self._poll_once()
        return self.current_max

    def wait_for(self, index: int, *, timeout_s: float | None = None) -> bool:
        """Block until frame ``index`` is complete.

        Parameters
        ----------
        index
            Flat frame index.
        timeout_s
            Give up after this many seconds (``None``: no deadline of its own; the idle
            ``timeout`` still applies).

        Returns
        -------
        bool
            True once the frontier reaches ``index``; False if the follower stopped before.
            With the skip policy, check :attr:`skipped` for the index.

        Raises
        ------
        FollowTimeout
            ``timeout_s`` passed while the follower was still waiting for the writer.
        """
        self._check_open()
        if index < 0:
            raise ValueError(f"index must be a flat frame index >= 0, got {index!r}.")
        if timeout_s is not None and not (timeout_s >= 0 and math.isfinite(timeout_s)):
            raise ValueError(
                f"timeout_s must be None or a finite number of seconds >= 0, got {timeout_s!r}."
            )
        deadline = None if timeout_s is None else self._clock() + timeout_s
        return self._wait(index, deadline)

    def completed_at(self, index: int) -> float | None:
        """When this follower first saw frame ``index`` complete, on its clock; None if not yet.

        The time of the poll that moved the frontier past ``index`` (within ``poll_interval_s``
        of the writer's key write while waiting). After many thousand moves, older ones are
        merged, and the time given for a frame may be earlier than it was, never later.
        """
        if index > self.current_max or not self._moves:
            return None
        pos = bisect.bisect_left(self._moves, (index, -math.inf, -math.inf))
        return self._moves[min(pos, len(self._moves) - 1)][1]

    def complete_since(self, index: int) -> float | None:
        """The earliest time frame ``index`` may have been complete, as far as this follower
        knows: the time of the last key read before the one that saw it (the time of that one
        for frames complete at the first read); None if not complete yet.

        Never later than the truth, so a latency bound kept from it holds even when nobody
        polled for a while (a consumer busy writing).
        """
        if index > self.current_max or not self._moves:
            return None
        pos = bisect.bisect_left(self._moves, (index, -math.inf, -math.inf))
        return self._moves[min(pos, len(self._moves) - 1)][2]

    def _is_skipped(self, index: int) -> bool:
        pos = bisect.bisect_left(self._skipped, index)
        return pos < len(self._skipped) and self._skipped[pos] == index

    def _next_index(self, after: int) -> int:
        index = after + 1
        pos = bisect.bisect_left(self._skipped, index)
        while pos < len(self._skipped) and self._skipped[pos] == index:
            index += 1
            pos += 1
        return index

    def __iter__(self) -> KeyFollower:
        return self

    def __next__(self) -> int:
        self._check_open()
        index = self._next_index(self.current_key)
        while index > self.current_max:
            if not self._wait(index, None):
                raise StopIteration
            index = self._next_index(self.current_key)
        self.current_key = index
        return index

    def iter_ranges(self, max_frames: int | None = None) -> Iterator[tuple[int, int]]:
        """Yield ``(start, stop)`` ranges of newly complete frames, blocking between them.

        Shares the cursor (``current_key``) with ``__next__``. Skipped frames are never inside
        a range.

        Parameters
        ----------
        max_frames
            Split ranges longer than this (``None``: as long as available).

        Yields
        ------
        tuple of int
            Half-open flat index ranges, contiguous and in order.
        """
        if max_frames is not None and max_frames < 1:
            raise ValueError(
                f"max_frames must be None (no limit) or a number of frames >= 1, got "
                f"{max_frames!r}."
            )
        self._check_open()
        while True:
            start = self.current_key + 1
            if start > self.current_max:
                if not self._wait(start, None):
                    return
                continue
            stop = self.current_max + 1
            if max_frames is not None:
                stop = min(stop, start + max_frames)
            pos = bisect.bisect_left(self._skipped, start)
            if pos < len(self._skipped) and self._skipped[pos] < stop:
                if self._skipped[pos] == start:
                    self.current_key = start
                    continue
                stop = self._skipped[pos]
            self.current_key = stop - 1
            yield start, stop

    def reset(self) -> None:
        """Start iteration again from index 0 and clear the stop state.

        The frontier is kept (it is a fact about the file and only grows), so frames already
        known complete are handed out again at once.
        """
        self.current_key = -1
        self.timed_out = False
        self.finished_set = False
        self.stop_reason = None

    def refresh(self) -> bool:
        """Read the keys once; True if the frontier moved (swmr_tools compatibility)."""
        self._check_open()
        return self._advance()

    def get_current_max(self) -> int:
        """The frontier (swmr_tools compatibility)."""
        return self.current_max

    def are_keys_complete(self) -> bool:
        """True if the frontier covers the whole scan of fixed ``maxshape``."""
        return self._complete()

    def is_finished(self) -> bool:
        """True once iteration has handed out every frame it ever will.

        When the cursor has caught up with the frontier, polls once (without blocking).
        """
        if self.current_key < self.current_max:
            return False
        if self.stop_reason is None:
            self._check_open()
            self._poll_once()
        return self.stop_reason is not None and self.current_key >= self.current_max

    @property
    def skipped(self) -> list[int]:
        """Frame indices skipped by the ``"skip"`` gap policy, in order."""
        return list(self._skipped)

    def delivered_mask(self) -> npt.NDArray[np.bool_]:
        """Boolean mask over frames ``0..current_max``: True where a frame is (to be) delivered."""
        mask = np.ones(self.current_max + 1, dtype=bool)
        mask[self._skipped] = False
        return mask

    @property
    def regressions(self) -> list[int]:
        """Frame indices whose keys were seen going back to zero, in order."""
        return sorted(self._regressed)

    @property
    def clock(self) -> Clock:
        """The clock this follower times its waits and :meth:`completed_at` with."""
        return self._clock

    @property
    def total(self) -> int | None:
        """Number of frames in the scan when its shape is fixed, else None."""
        return self._total

    # ------------------------------------------------------------------ resource handling

    def close(self) -> None:
        """Close the source file if this follower opened it (idempotent)."""
        if not self._closed:
            self._closed = True
            if self._file is not None:
                self._file.close()

    def __repr__(self) -> str:
        filename = os.path.basename(self._keys[0].filename) if self._keys else "?"
        total = "?" if self._total is None else str(self._total)
        state = f" stopped={self.stop_reason!r}" if self.stop_reason else ""
        return (
            f"<KeyFollower {filename!r} keys={len(self.key_datasets)} "
            f"frontier={self.current_max}/{total} finished={self.finished_set}{state}>"
        )
