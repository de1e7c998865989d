"""The first swmr_tools API (``Follower``, ``FrameGrabber``) as thin shims over h5live.

swmr_tools started with a ``KeyFollower`` *module* holding two classes: ``Follower``, an
iterator over the flat indices of complete frames that took an open file and key *group*
paths, and ``FrameGrabber``, which read the frame at such an index. Scripts written against
that API (and its tutorial) run unchanged on these classes::

    from h5live.compat import Follower, FrameGrabber  # was: from swmr_tools.KeyFollower import

Both are legacy names kept for those scripts; new code should use :class:`h5live.KeyFollower`
(and :class:`h5live.FrameReader` for frames). Importing this module issues no warning, so that test
suites which treat warnings as errors keep working.
"""

from __future__ import annotations

import logging
import operator
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy.typing as npt

from h5live._closing import ClosingContext
from h5live._follow.follower import FollowPolicy, KeyFollower, StopReason
from h5live._follow.keys import dataset_label
from h5live._read.reader import FrameReader
from h5live._source.spec import Clock, Sleep, _expand, get_dataset

__all__ = ["Follower", "FrameGrabber"]

logger = logging.getLogger(__name__)

# Termination conditions understood by Follower.
_CONDITIONS: tuple[str, ...] = ("timeout", "always_true")


def _absolute(path: str) -> str:
    """``path`` from the file's root: the first API took paths relative to the open file."""
    return path if path.startswith("/") else f"/{path}"


def _check_conditions(conditions: Sequence[str] | str, filename: str) -> tuple[str, ...]:
    """The termination conditions as a tuple, or a ValueError naming the bad one."""
    found = (conditions,) if isinstance(conditions, str) else tuple(conditions)
    for condition in found:
        if condition not in _CONDITIONS:
            raise ValueError(
                f"unknown termination condition {condition!r} for following {filename!r}. "
                f"Fix: use any of {list(_CONDITIONS)}: 'timeout' stops after "
                "`timeout` seconds without a new frame, 'always_true' at the first incomplete "
                "frame."
            )
    return found


class Follower(ClosingContext):
    """Iterate over the flat indices of complete frames, given an open file and key groups.

    The ``Follower`` of the first swmr_tools API, on top of :class:`h5live.KeyFollower`: it
    yields the flat C-order index of each complete frame (never the key values), in order and
    once, and stops according to its termination conditions. Legacy API: new code should use
    :class:`h5live.KeyFollower` directly.

    Parameters
    ----------
    h5file
        An open ``h5py.File``, opened for SWMR reading while it is written.
    key_group_paths
        Paths of groups whose datasets are all key datasets; a path may also name a key
        dataset itself. A frame is complete when it is non-zero in every key (the frontier is
        the minimum over the keys). Trailing size-1 key dims are ignored, so keys of shape
        ``(2, 4, 1, 1)`` describe a ``(2, 4)`` scan.
    timeout
        With the ``"timeout"`` condition: stop once no new frame has completed for this many
        seconds of waiting. ``None`` waits for ever (or until the scan is complete).
    termination_conditions
        When to stop iterating, any of:

        - ``"timeout"`` (default): after ``timeout`` seconds without a new complete frame.
        - ``"always_true"``: at the first incomplete frame, without waiting: when iteration
          has caught up, the keys are read once more and iteration stops if nothing is new.
          It takes precedence over ``"timeout"`` (the conditions are alternatives, and this
          one always holds).

        With no condition, the follower stops only once the keys cover a fixed-size scan, or
        the finished dataset is set.
    finished_dataset
        Optional one-element dataset (or its path in ``h5file``), non-zero once the file is
        complete; passed to :class:`h5live.KeyFollower`, which then stops without waiting
        for the timeout. The first API had none, hence the default ``None``.
    policy
        Polling and gap policy (:class:`h5live.FollowPolicy`).
    clock, sleep
        Time functions, for tests that should not really wait.

    Attributes
    ----------
    key_follower : h5live.KeyFollower
        The follower doing the work, for everything this shim does not forward.
    termination_conditions : tuple of str
        The conditions given.

    Raises
    ------
    DatasetNotFoundError
        A key path (or the finished path) is not in ``h5file``, or a key group holds no
        datasets. It is also a ``KeyError``.
    KeyDatasetError
        A key dataset cannot be followed (see :class:`h5live.KeyFollower`).
    ValueError
        An unknown termination condition, or a negative timeout.

    Notes
    -----
    ``"always_true"`` is an idle timeout of 0 s underneath, so :attr:`stop_reason` is then
    ``"timeout"``.

    Examples
    --------
    >>> with h5py.File("test_file.h5", "r", swmr=True) as f:  # doctest: +SKIP
    ...     for key in Follower(f, ["keys"], timeout=1):
    ...         print(key)
    """

    def __init__(
        self,
        h5file: Any,
        key_group_paths: Sequence[str] | str,
        timeout: float | None = 10,
        termination_conditions: Sequence[str] | str = ("timeout",),
        *,
        finished_dataset: Any | None = None,
        policy: FollowPolicy | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        filename = str(getattr(h5file, "filename", "<no file>"))
        self.termination_conditions = _check_conditions(termination_conditions, filename)
        paths = [key_group_paths] if isinstance(key_group_paths, str) else list(key_group_paths)
        if not paths:
            raise ValueError(
                f"key_group_paths is empty for {filename!r}. Fix: pass the paths of the groups "
                "holding the key datasets, e.g. ['/entry/keys']."
            )
        self.h5file = h5file
        self.key_group_paths = paths
        self.timeout = timeout
        if timeout is not None and not timeout >= 0:
            raise ValueError(
                f"timeout must be None or a number of seconds >= 0, got {timeout!r}, for "
                f"following {filename!r}. Fix: pass the idle timeout in seconds."
            )
        if "always_true" in self.termination_conditions:
            idle_timeout: float | None = 0.0
        elif "timeout" in self.termination_conditions:
            idle_timeout = timeout
        else:
            idle_timeout = None
        keys = [dataset for path in paths for dataset in _expand(h5file, _absolute(path), "key")]
        if isinstance(finished_dataset, str):
            finished_dataset = get_dataset(h5file, _absolute(finished_dataset), "finished")
        self.key_follower = KeyFollower(
            keys, idle_timeout, finished_dataset, policy=policy, clock=clock, sleep=sleep
        )

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Follower:
        return self

    def __next__(self) -> int:
        return next(self.key_follower)

    def iter_ranges(self, max_frames: int | None = None) -> Iterator[tuple[int, int]]:
        """Yield ``(start, stop)`` ranges of newly complete frames (see
        :meth:`h5live.KeyFollower.iter_ranges`); shares the cursor with iteration."""
        return self.key_follower.iter_ranges(max_frames)

    def reset(self) -> None:
        """Start iteration again from index 0 (frames known complete come again at once)."""
        self.key_follower.reset()

    def poll(self) -> int:
        """Read the keys once, without blocking, and return the frontier (-1: no frame)."""
        return self.key_follower.poll()

    def is_finished(self) -> bool:
        """True once iteration has handed out every frame it ever will."""
        return self.key_follower.is_finished()

    # ------------------------------------------------------------------ state

    @property
    def key_datasets(self) -> list[Any]:
        """The key datasets found in the key groups, in order."""
        return self.key_follower.key_datasets

    @property
    def current_key(self) -> int:
        """The last index handed out by iteration (-1 before the first)."""
        return self.key_follower.current_key

    @property
    def current_max(self) -> int:
        """The frontier: every frame up to this flat index is complete (-1: none)."""
        return self.key_follower.current_max

    @property
    def scan_rank(self) -> int:
        """Number of scan dims: key dims without trailing size-1 dims."""
        return self.key_follower.scan_rank

    @property
    def stop_reason(self) -> StopReason | None:
        """Why iteration stopped (``"timeout"`` also for ``"always_true"``); None while on."""
        return self.key_follower.stop_reason

    @property
    def timed_out(self) -> bool:
        """Whether iteration stopped on the timeout (or ``"always_true"``)."""
        return self.key_follower.timed_out

    def close(self) -> None:
        """Stop following (idempotent). The file belongs to the caller and stays open."""
        self.key_follower.close()

    def __repr__(self) -> str:
        filename, _ = dataset_label(self.key_follower.key_datasets[0])
        total = self.key_follower.total
        stopped = f" stopped={self.stop_reason!r}" if self.stop_reason else ""
        return (
            f"<Follower {os.path.basename(filename)!r} keys={len(self.key_datasets)} "
            f"frontier={self.current_max}/{'?' if total is None else total} "
            f"termination_conditions={list(self.termination_conditions)} "
            f"timeout={self.timeout}{stopped}>"
        )


class FrameGrabber:
    """Read the frame at a flat frame index, keeping its scan dims as size 1.

    The ``FrameGrabber`` of the first swmr_tools API: ``Grabber(index)`` returns the frame at
    the flat index a :class:`Follower` yields, shaped ``(1,) * scan_rank + frame_shape`` (data
    ``(2, 2, 5, 10)`` with a ``(2, 2)`` scan gives frames of shape ``(1, 1, 5, 10)``). Legacy
    API: new code should use :class:`h5live.FrameReader`, which reads ranges of frames.

    Parameters
    ----------
    dataset_path
        Path of the data dataset in ``h5file``.
    h5file
        An open ``h5py.File``, opened for SWMR reading while it is written.
    scan_rank
        Number of leading data dims that are scan dims (the rest are the frame).
    keys
        A :class:`Follower` or :class:`h5live.KeyFollower` of the same scan: its scan rank is
        used when ``scan_rank`` is not given.

    Attributes
    ----------
    dataset : h5py.Dataset
        The data dataset.
    scan_rank : int
        Leading dims of ``dataset`` that index frames.

    Raises
    ------
    DatasetNotFoundError
        No dataset at ``dataset_path`` in ``h5file`` (also a ``KeyError``).
    ValueError
        A scan rank that does not fit the data, or none given for data of fewer than 3 dims.

    Notes
    -----
    The data alone cannot tell its scan dims from its frame dims, and the first API was not
    told them: it assumed image frames. So the scan rank is, in this order: ``scan_rank``;
    the scan rank of ``keys`` (the dims the keys have, without trailing size-1 dims, which is
    how :class:`h5live.KeyFollower` counts them; at least 1); else ``dataset.ndim - 2``, i.e.
    2-D image frames, which reproduces the first API. The last rule needs data of at least 3
    dims: for 2-D data it would make the whole dataset one frame, so ``scan_rank`` or
    ``keys`` is required there. Pass ``keys=`` or ``scan_rank=`` for spectra (1-D frames),
    scalars or volumes.

    Each :meth:`Grabber` call refreshes the dataset first: an h5py SWMR reader otherwise keeps
    the shape and chunk index it saw when it opened the dataset, and would miss new frames.

    Examples
    --------
    >>> with h5py.File("test_file.h5", "r", swmr=True) as f:  # doctest: +SKIP
    ...     grabber = FrameGrabber("data/data_1", f)
    ...     for key in Follower(f, ["keys"], timeout=1):
    ...         frame = grabber.Grabber(key)  # shape (1, 1, 5, 10)
    """

    def __init__(
        self,
        dataset_path: str,
        h5file: Any,
        *,
        scan_rank: int | None = None,
        keys: Follower | KeyFollower | None = None,
    ) -> None:
        self.dataset_path = dataset_path
        self.h5file = h5file
        self.dataset: Any = get_dataset(h5file, _absolute(dataset_path), "data")
        self.filename, self.name = dataset_label(self.dataset)
        ndim = len(self.dataset.shape)
        if scan_rank is not None:
            rank = operator.index(scan_rank)
            given = f"scan_rank={scan_rank!r}"
        elif keys is not None:
            rank = max(keys.scan_rank, 1)
            given = f"the scan rank {rank} of the keys"
        elif ndim >= 3:
            rank = ndim - 2
            given = ""
        else:
            raise ValueError(
                f"cannot tell the scan dims of data dataset {self.name!r} in "
                f"{self.filename!r} (shape {tuple(self.dataset.shape)}): without keys, "
                "FrameGrabber takes all but the last 2 dims as scan dims, which needs 3 dims "
                "or more. Fix: pass scan_rank=<number of scan dims>, or keys=<the Follower>."
            )
        if not 1 <= rank <= ndim:
            raise ValueError(
                f"{given} does not fit data dataset {self.name!r} in {self.filename!r}, of "
                f"shape {tuple(self.dataset.shape)}: the scan rank must be between 1 and "
                f"{ndim}. Fix: pass the number of leading dims that are scan dims."
            )
        self.scan_rank = rank
        self._reader = FrameReader(self.dataset, rank)

    def Grabber(self, index: int) -> npt.NDArray[Any]:  # the first API's name
        """Return the frame at flat index ``index``, scan dims kept as size 1.

        Parameters
        ----------
        index
            Flat C-order index over the scan dims, as a :class:`Follower` yields.

        Returns
        -------
        numpy.ndarray
            The frame, of shape ``(1,) * scan_rank + frame_shape``.

        Raises
        ------
        IndexError
            ``index`` is negative, or beyond the frames the dataset holds (after refreshing).
        """
        position = operator.index(index)
        if position < 0:
            raise IndexError(
                f"frame index {index!r} is negative; data dataset {self.name!r} in "
                f"{self.filename!r} is indexed by flat frame indices >= 0. Fix: grab only "
                "indices a Follower has yielded."
            )
        return self._reader.read_frame(position)[0]

    def __repr__(self) -> str:
        return (
            f"<FrameGrabber {os.path.basename(self.filename)!r} {self.name!r} "
            f"shape={tuple(self.dataset.shape)} scan_rank={self.scan_rank}>"
        )
