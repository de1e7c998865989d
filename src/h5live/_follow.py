"""KeyFollower: the frontier of complete frames in a live source.

Contract
--------
- A *key dataset* is an integer (or boolean) dataset shaped like the scan, fill value 0, set
  non-zero by the writer once the frame at that position is flushed. Frames are numbered by
  their flat C-order index over the scan dims (the key dims left after dropping trailing
  size-1 dims, as swmr_tools does).
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
  the flag is first seen, because the writer sets keys before the flag), or
  when no frame has completed for ``timeout`` seconds of waiting (``"timeout"``). Every
  complete frame is delivered before iteration stops.
- A key that drops back to zero below the frontier is reported (a warning, or an error in
  strict mode) and never makes a frame be delivered twice. The check covers the key chunk that
  holds the frontier, which is read anyway.
- Time is read through an injectable ``clock``/``sleep`` pair.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import h5py
import numpy as np
import numpy.typing as npt

from h5live._source import (
    Clock,
    Sleep,
    SourceSpec,
    contiguous_message,
    is_contiguous_failure,
    is_unallocated_contiguous,
)
from h5live.errors import (
    FinishedDatasetError,
    FollowTimeout,
    KeyDatasetError,
    KeyRegressionError,
    KeyRegressionWarning,
)

__all__ = ["FollowPolicy", "KeyFollower", "StopReason"]

logger = logging.getLogger(__name__)

StopReason = Literal["finished", "timeout", "complete"]
GapPolicy = Literal["block", "skip"]

_MIN_WINDOW = 64  # flat entries read by the first window of a poll, at least
_MAX_WINDOW = 1 << 20  # a catch-up read never takes more than this many entries at once
_MAX_ALIGN = 1 << 16  # chunk alignment is a hint; ignore it for enormous chunks
_NO_LIMIT = sys.maxsize


@dataclass(frozen=True)
class FollowPolicy:
    """How a :class:`KeyFollower` polls, treats gaps and reacts to writer errors.

    Parameters
    ----------
    poll_interval_s
        Sleep between polls while waiting. The default (1 ms) keeps the median delay from a
        key flush to its frame being yielded well under 5 ms; an idle poll costs a few tens of
        microseconds, so this is a few percent of one core while waiting.
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

    def __post_init__(self) -> None:
        if not (self.poll_interval_s >= 0 and math.isfinite(self.poll_interval_s)):
            raise ValueError(
                f"poll_interval_s must be a finite number >= 0, got {self.poll_interval_s!r}. "
                "Fix: pass seconds between polls, e.g. 0.001."
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


def scan_rank_of(maxshape: Sequence[int | None]) -> int:
    """The scan rank of a key: its rank without trailing size-1 dims (as swmr_tools counts)."""
    rank = len(maxshape)
    while rank > 0 and maxshape[rank - 1] == 1:
        rank -= 1
    return rank


def _align_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _first_zero(values: npt.NDArray[Any]) -> int | None:
    """Index of the first zero in a 1-D array, or None."""
    if values.size == 0:
        return None
    zero = values == 0
    i = int(zero.argmax())
    return i if zero[i] else None


def flat_boxes(lo: int, hi: int, shape: Sequence[int]) -> list[tuple[slice, ...]]:
    """Hyperslabs that cover flat C-order indices ``[lo, hi)`` of ``shape``, in order.

    At most ``2 * len(shape) - 1`` boxes; reading each and concatenating their raveled
    contents gives the flat range.
    """
    if len(shape) == 1:
        return [(slice(lo, hi),)]
    inner = math.prod(shape[1:])
    first, last = lo // inner, (hi - 1) // inner
    if first == last:
        head = slice(first, first + 1)
        return [
            (head, *box) for box in flat_boxes(lo - first * inner, hi - first * inner, shape[1:])
        ]
    boxes: list[tuple[slice, ...]] = []
    if lo % inner:
        boxes += [
            (slice(first, first + 1), *box) for box in flat_boxes(lo % inner, inner, shape[1:])
        ]
        first += 1
    tail = hi - last * inner
    whole_stop = last + 1 if tail == inner else last
    if first < whole_stop:
        boxes.append((slice(first, whole_stop), *(slice(None),) * (len(shape) - 1)))
    if tail != inner:
        boxes += [(slice(last, last + 1), *box) for box in flat_boxes(0, tail, shape[1:])]
    return boxes


def stable_prefix(old: Sequence[int], new: Sequence[int]) -> int:
    """How many leading flat indices keep their scan position when the shape changes.

    Growth of the first (slowest) axis renumbers nothing; a change of an inner axis renumbers
    every index from the first one whose position differs.
    """
    changed = [axis for axis in range(1, len(old)) if old[axis] != new[axis]]
    if not changed:
        return _NO_LIMIT
    axis = changed[-1]
    return min(old[axis], new[axis]) * math.prod(old[axis + 1 :])


def dataset_label(dataset: Any) -> tuple[str, str]:
    """(file name, dataset name) of an h5py dataset or a dataset-like object, for messages."""
    name = getattr(dataset, "name", None) or type(dataset).__name__
    file = getattr(dataset, "file", None)
    filename = getattr(file, "filename", None) or "<no file>"
    return str(filename), str(name)


def refresh_dataset(dataset: Any) -> None:
    """Call ``dataset.refresh()`` if it has one (h5py datasets do; arrays need not)."""
    refresh = getattr(dataset, "refresh", None)
    if refresh is not None:
        refresh()


class _KeyView:
    """One key dataset seen as a flat run of frames."""

    __slots__ = (
        "align",
        "dataset",
        "dims",
        "dsid",
        "dtype_checked",
        "extent",
        "filename",
        "name",
        "shape",
    )

    def __init__(self, dataset: Any, dims: int) -> None:
        self.dataset = dataset
        # For h5py datasets the extent comes from one low-level dataspace query per refresh.
        self.dsid = dataset.id if isinstance(dataset, h5py.Dataset) else None
        self.filename, self.name = dataset_label(dataset)
        self.dims = dims
        self.shape: tuple[int, ...] = tuple(int(n) for n in dataset.shape[:dims])
        self.extent = math.prod(self.shape)
        chunks = getattr(dataset, "chunks", None)
        flat_chunk = math.prod(chunks[:dims]) if chunks else 1
        self.align = max(1, min(flat_chunk, _MAX_ALIGN))
        self.dtype_checked = False

    def _fail(self, exc: BaseException, doing: str) -> KeyDatasetError:
        if is_contiguous_failure(exc):
            return KeyDatasetError(contiguous_message("key", self.name, self.filename))
        return KeyDatasetError(
            f"cannot {doing} key dataset {self.name!r} in {self.filename!r}: {exc}"
        )

    def refresh(self, frontier: int) -> None:
        try:
            refresh_dataset(self.dataset)
            full = self.dataset.shape if self.dsid is None else self.dsid.get_space().shape
            shape = tuple(int(n) for n in full[: self.dims])
        except (RuntimeError, OSError) as exc:
            raise self._fail(exc, "refresh") from exc
        if shape[1:] != self.shape[1:] and frontier >= stable_prefix(self.shape, shape):
            raise KeyDatasetError(
                f"key dataset {self.name!r} in {self.filename!r} changed its inner scan dims "
                f"from {self.shape} to {shape} after frame {frontier} was delivered, which "
                "would renumber delivered frames. Fix: the writer must fix the inner scan dims "
                "(all but the first) before the first row is complete, e.g. by pre-sizing them."
            )
        self.shape = shape
        self.extent = math.prod(shape)

    def read(self, lo: int, hi: int) -> npt.NDArray[Any]:
        """Key values at flat indices ``[lo, hi)`` (``hi <= extent``), raveled."""
        try:
            if self.dims == 1:
                values = np.asarray(self.dataset[lo:hi, ...]).reshape(-1)
            else:
                selections = [(*box, Ellipsis) for box in flat_boxes(lo, hi, self.shape)]
                parts = [np.asarray(self.dataset[sel]).reshape(-1) for sel in selections]
                values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        except (RuntimeError, OSError) as exc:
            raise self._fail(exc, "read") from exc
        if not self.dtype_checked:
            self.dtype_checked = True
            if values.dtype.kind not in "iub":
                raise KeyDatasetError(
                    f"key dataset {self.name!r} in {self.filename!r} has dtype {values.dtype} "
                    "but keys must be integers (0 = frame not written yet). Fix: have the "
                    "writer store keys as an integer dataset with fill value 0."
                )
        return values

    def run_end(
        self,
        start: int,
        stop: int,
        on_regression: Callable[[_KeyView, npt.NDArray[np.int64]], None],
    ) -> int:
        """End (exclusive) of the run of non-zero entries from ``start``, at most ``stop``.

        The first read also covers the entries before ``start`` in the same chunk (at least
        the frontier entry): they are free to read and reveal keys that went back to zero.
        """
        if self.extent < start:
            on_regression(self, np.arange(self.extent, start, dtype=np.int64))
            return start
        pos = start
        window = max(self.align, _MIN_WINDOW)
        if start > 0:
            lo = ((start - 1) // self.align) * self.align
            hi = min(stop, _align_up(start + window, self.align)) if stop > start else start
            values = self.read(lo, hi)
            behind = values[: start - lo]
            if not behind.all():
                on_regression(self, np.flatnonzero(behind == 0).astype(np.int64) + lo)
            zero = _first_zero(values[start - lo :])
            if zero is not None:
                return start + zero
            pos = hi
            window = min(window * 4, _MAX_WINDOW)
        while pos < stop:
            hi = min(stop, _align_up(pos + window, self.align))
            zero = _first_zero(self.read(pos, hi))
            if zero is not None:
                return pos + zero
            pos = hi
            window = min(window * 4, _MAX_WINDOW)
        return stop


class KeyFollower:
    """Iterate over the flat indices of complete frames in a live source.

    A drop-in for ``swmr_tools.KeyFollower`` (same signature, attributes and methods) that polls
    cheaply, waits with low latency, stops race-safe on the finished flag and never yields a
    frame twice. See the module docstring of ``h5live._follow`` for the contract.

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
    maxshape : tuple
        The scan part of the first key's ``maxshape`` (``None`` on growing axes).
    timed_out, finished_set : bool
        Whether the idle timeout elapsed; whether the finished flag was seen set.
    stop_reason : {"finished", "timeout", "complete"} or None
        Why no more frames will be delivered; None while following.

    Raises
    ------
    KeyDatasetError
        Keys of different scan rank, non-integer keys, a scalar key, or a contiguous key that
        HDF5 cannot read while it is written.
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
        self.current_key = -1
        self.current_max = -1
        self.timed_out = False
        self.finished_set = False
        self.stop_reason: StopReason | None = None
        self.scan_rank = -1
        self.maxshape: tuple[int | None, ...] | None = None
        self._keys: list[_KeyView] = []
        self._total: int | None = None
        self._skipped: list[int] = []
        self._regressed: set[int] = set()
        self._gap_idx = np.empty(0, dtype=np.int64)
        self._gap_seen = np.empty(0, dtype=np.float64)
        self._last_gap_scan = -math.inf
        self._last_finished_read = -math.inf
        self._file: Any | None = None
        self._closed = False
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
                    "pass key_paths and finished_path inside the SourceSpec, not beside it."
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
        ranks = []
        for dataset in self.key_datasets:
            filename, name = dataset_label(dataset)
            try:
                maxshape = tuple(dataset.maxshape)
                shape = tuple(dataset.shape)
            except AttributeError as exc:
                raise KeyDatasetError(
                    f"key dataset {name!r} ({type(dataset).__name__}) has no shape/maxshape. "
                    "Fix: pass h5py datasets or objects with maxshape, shape and __getitem__."
                ) from exc
            if not shape:
                raise KeyDatasetError(
                    f"key dataset {name!r} in {filename!r} is a scalar; keys are shaped like "
                    "the scan. Fix: pass the scan-shaped key dataset (maybe this is the "
                    "finished dataset?)."
                )
            dtype = getattr(dataset, "dtype", None)
            if dtype is not None and np.dtype(dtype).kind not in "iub":
                raise KeyDatasetError(
                    f"key dataset {name!r} in {filename!r} has dtype {np.dtype(dtype)} but keys "
                    "must be integers (0 = frame not written yet). Fix: have the writer store "
                    "keys as an integer dataset with fill value 0."
                )
            if is_unallocated_contiguous(dataset):
                raise KeyDatasetError(contiguous_message("key", name, filename))
            ranks.append((name, maxshape, scan_rank_of(maxshape)))
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
            logger.warning("key datasets have different scan maxshapes: %s", sorted(maxshapes))
        self.scan_rank = rank
        self.maxshape = ranks[0][1][:rank]
        if all(n is not None for n in self.maxshape):
            self._total = math.prod(n for n in self.maxshape if n is not None)
        dims = max(rank, 1)
        self._keys = [_KeyView(dataset, dims) for dataset in self.key_datasets]
        if self.finished_dataset is not None:
            self._check_finished_dataset()
        if self.timeout is None and self.finished_dataset is None and self._total is None:
            logger.warning(
                "timeout=None and no finished dataset: following %r stops only if its keys "
                "become complete, and waits forever if the writer dies",
                self._keys[0].filename,
            )

    def _check_finished_dataset(self) -> None:
        dataset = self.finished_dataset
        filename, name = dataset_label(dataset)
        shape = tuple(getattr(dataset, "shape", ()))
        dtype = getattr(dataset, "dtype", None)
        if math.prod(shape) > 1:
            raise FinishedDatasetError(
                f"finished dataset {name!r} in {filename!r} has shape {shape}; it must hold one "
                "number (shape () or (1,)). Fix: pass the one-element finished dataset."
            )
        if dtype is not None and np.dtype(dtype).kind not in "iubf":
            raise FinishedDatasetError(
                f"finished dataset {name!r} in {filename!r} has dtype {np.dtype(dtype)}; it "
                "must be a number (0 while writing, non-zero when complete). Fix: pass the "
                "numeric finished dataset."
            )
        if is_unallocated_contiguous(dataset):
            raise FinishedDatasetError(contiguous_message("finished", name, filename))

    # ------------------------------------------------------------------ polling

    def _read_finished(self) -> bool:
        dataset = self.finished_dataset
        try:
            refresh_dataset(dataset)
            value = np.asarray(dataset[()])
        except (RuntimeError, OSError, ValueError, TypeError) as exc:
            filename, name = dataset_label(dataset)
            if is_contiguous_failure(exc):
                raise FinishedDatasetError(contiguous_message("finished", name, filename)) from exc
            raise FinishedDatasetError(
                f"cannot read finished dataset {name!r} in {filename!r}: {exc}. Fix: pass a "
                "readable one-element numeric dataset, or finished_dataset=None."
            ) from exc
        if value.size == 0:
            return False
        if value.size != 1 or value.dtype.kind not in "iubf":
            filename, name = dataset_label(dataset)
            raise FinishedDatasetError(
                f"finished dataset {name!r} in {filename!r} holds {value!r}; it must be one "
                "number. Fix: pass the one-element finished dataset."
            )
        return bool(value.reshape(-1)[0] != 0)

    def _on_regression(self, key: _KeyView, indices: npt.NDArray[np.int64]) -> None:
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
        warnings.warn(message, KeyRegressionWarning, stacklevel=4)

    def _complete_run(self, start: int) -> int:
        """End (exclusive) of the run of frames complete in every key, from ``start``."""
        end = _NO_LIMIT
        reference: tuple[int, ...] | None = None
        for key in self._keys:
            key.refresh(self.current_max)
            if reference is None:
                reference = key.shape
            elif key.shape[1:] != reference[1:]:
                end = min(end, stable_prefix(reference, key.shape))
            end = key.run_end(start, max(start, min(end, key.extent)), self._on_regression)
            if end <= start:
                return start
        return end

    def _merged(self, start: int) -> npt.NDArray[np.bool_]:
        """Completeness of frames ``start, start + 1, ...`` over the gap lookahead window."""
        stop = start + self.policy.gap_lookahead
        for key in self._keys:
            key.refresh(self.current_max)
            stop = min(stop, key.extent)
        if stop <= start:
            return np.zeros(0, dtype=bool)
        merged = np.ones(stop - start, dtype=bool)
        for key in self._keys:
            merged &= key.read(start, stop) != 0
        return merged

    def _skip_gaps(self, start: int, now: float, final: bool) -> int:
        """Skip open gaps at ``start`` that have expired; return the new end (exclusive)."""
        self._last_gap_scan = now
        merged = self._merged(start)
        complete = np.flatnonzero(merged)
        if complete.size == 0:
            self._gap_idx = np.empty(0, dtype=np.int64)
            self._gap_seen = np.empty(0, dtype=np.float64)
            return start
        last = int(complete[-1])
        open_idx = np.flatnonzero(~merged[:last]).astype(np.int64) + start
        seen = np.full(open_idx.size, now)
        if self._gap_idx.size:
            pos = np.minimum(np.searchsorted(self._gap_idx, open_idx), self._gap_idx.size - 1)
            known = self._gap_idx[pos] == open_idx
            seen[known] = self._gap_seen[pos[known]]
        self._gap_idx, self._gap_seen = open_idx, seen
        ok = merged[: last + 1].copy()
        ok[open_idx - start] = final or (now - seen >= self.policy.gap_timeout_s)
        blocked = _first_zero(ok)
        run = last + 1 if blocked is None else blocked
        skipped = [int(i) for i in open_idx if i < start + run]
        if skipped:
            self._skipped.extend(skipped)
            logger.warning(
                "%s: skipped %d frame(s) whose keys stayed unset%s: %s",
                self._keys[0].filename,
                len(skipped),
                " when the writer finished" if final else f" for {self.policy.gap_timeout_s} s",
                skipped if len(skipped) <= 10 else [*skipped[:10], "..."],
            )
        return start + run

    def _advance(self, *, final: bool = False) -> bool:
        """Read the keys once and move the frontier; True if it moved."""
        start = self.current_max + 1
        end = self._complete_run(start)
        if self.policy.gaps == "skip":
            now = self._clock()
            stalled = end == start and now - self._last_gap_scan >= self.policy.gap_timeout_s / 8
            if final or stalled:
                while True:
                    skipped_to = self._skip_gaps(end, now, final)
                    if skipped_to == end:
                        break
                    end = self._complete_run(skipped_to)
                    if not final:
                        break
        if end > start:
            self.current_max = end - 1
            logger.debug("frontier %d", self.current_max)
            return True
        return False

    def _stop(self, reason: StopReason) -> None:
        self.stop_reason = reason
        if reason == "timeout":
            self.timed_out = True
        logger.info(
            "%s: stopped (%s) at frontier %d", self._keys[0].filename, reason, self.current_max
        )
        if self.policy.gaps == "block" and reason != "complete":
            stranded = int(np.count_nonzero(self._merged(self.current_max + 1)))
            if stranded:
                logger.warning(
                    "%s: %d complete frame(s) after the gap at frame %d were not delivered "
                    "(gap policy 'block'); FollowPolicy(gaps='skip') delivers them",
                    self._keys[0].filename,
                    stranded,
                    self.current_max + 1,
                )

    def _finished_now(self, force: bool) -> bool:
        """Read the finished flag if it is due (see ``FollowPolicy.finished_interval_s``)."""
        if self.finished_dataset is None:
            return False
        now = self._clock()
        if not force and now - self._last_finished_read < self.policy.finished_interval_s:
            return False
        self._last_finished_read = now
        return self._read_finished()

    def _poll_once(self, *, last: bool = False) -> bool:
        """One poll: keys, then (when idle) the finished flag. True if the frontier moved.

        ``last``: the poll before a timeout stop, which reads the flag whenever it is due or not.
        """
        moved = self._advance()
        if self._total is not None and self.current_max >= self._total - 1:
            self._stop("complete")
        elif not moved and self._finished_now(force=last):
            self.finished_set = True
            moved = self._advance(final=True) or moved  # keys are set before the flag
            self._stop("finished")
        return moved

    def _wait(self, target: int, deadline: float | None) -> bool:
        """Block until the frontier reaches ``target`` (True) or the follower stops (False)."""
        idle_since = self._clock()
        while self.current_max < target:
            if self.stop_reason is not None:
                return False
            now = self._clock()
            timed_out = self.timeout is not None and now - idle_since >= self.timeout
            if self._poll_once(last=timed_out):
                idle_since = self._clock()
                continue
            if self.stop_reason is not None:
                return self.current_max >= target
            if timed_out:  # that poll was the last key read, and it read the flag too
                self._stop("timeout")
                return False
            if deadline is not None and now >= deadline:
                raise FollowTimeout(
                    f"frame {target} of {self._keys[0].filename!r} was not complete within "
                    f"the wait deadline (frontier {self.current_max}). Fix: wait longer, or "
                    "check that the writer is still running."
                )
            self._sleep(self.policy.poll_interval_s)
        return True

    # ------------------------------------------------------------------ public API

    def poll(self) -> int:
        """Read the keys once, without blocking, and return the frontier.

        Also checks the finished flag when no frame completed, so ``stop_reason`` may be set
        afterwards. Does nothing once the follower has stopped.
        """
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
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index!r}.")
        deadline = None if timeout_s is None else self._clock() + timeout_s
        return self._wait(index, deadline)

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
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames!r}.")
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
        return self._advance()

    def get_current_max(self) -> int:
        """The frontier (swmr_tools compatibility)."""
        return self.current_max

    def are_keys_complete(self) -> bool:
        """True if the frontier covers the whole scan of fixed ``maxshape``."""
        return self._total is not None and self.current_max >= self._total - 1

    def is_finished(self) -> bool:
        """True once iteration has handed out every frame it ever will.

        When the cursor has caught up with the frontier, polls once (without blocking).
        """
        if self.current_key < self.current_max:
            return False
        if self.stop_reason is None:
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

    def __enter__(self) -> KeyFollower:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        filename = os.path.basename(self._keys[0].filename) if self._keys else "?"
        total = "?" if self._total is None else str(self._total)
        state = f" stopped={self.stop_reason!r}" if self.stop_reason else ""
        return (
            f"<KeyFollower {filename!r} keys={len(self.key_datasets)} "
            f"frontier={self.current_max}/{total} finished={self.finished_set}{state}>"
        )
