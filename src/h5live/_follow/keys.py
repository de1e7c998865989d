"""The progress datasets of a source: key datasets seen as flat runs of frames, and the
finished flag. These are the reads a KeyFollower poll is made of.

A key dataset is shaped like the scan (trailing size-1 dims ignored); frame ``i`` is the entry
at flat C-order index ``i`` over the scan dims. Keys are numbers of any type (integers of any
width, bool, floats): an entry marks its frame written once it is non-zero and not NaN, and
keys are only ever compared as such booleans. :class:`KeyView` reads flat index ranges as at
most ``2 * rank - 1`` hyperslabs and finds the end of the run of set entries after the
frontier, reading chunk-aligned windows that grow only while they are all set.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from h5live._source.handles import check_single_handle
from h5live._source.spec import (
    contiguous_message,
    is_contiguous_failure,
    is_unallocated_contiguous,
)
from h5live.errors import DuplicateHandleError, FinishedDatasetError, KeyDatasetError

__all__ = [
    "KEY_KINDS",
    "MIN_WINDOW",
    "NO_LIMIT",
    "FinishedFlag",
    "KeyView",
    "check_key_dataset",
    "check_key_dtype",
    "dataset_label",
    "first_zero",
    "flat_boxes",
    "key_is_set",
    "refresh_dataset",
    "scan_rank_of",
    "stable_prefix",
]

MIN_WINDOW = 64  # flat entries read by the first window of a poll, at least
_MAX_WINDOW = 1 << 20  # a catch-up read never takes more than this many entries at once
_MAX_ALIGN = 1 << 16  # chunk alignment is a hint; ignore it for enormous chunks
NO_LIMIT = sys.maxsize
#: numpy dtype kinds accepted as keys: bool, signed and unsigned integers, floats, complex.
KEY_KINDS = "biufc"


def scan_rank_of(maxshape: Sequence[int | None]) -> int:
    """The scan rank of a key: its rank without trailing size-1 dims (as swmr_tools counts)."""
    rank = len(maxshape)
    while rank > 0 and maxshape[rank - 1] == 1:
        rank -= 1
    return rank


def _align_up(value: int, step: int) -> int:
    return -(-value // step) * step


def first_zero(values: npt.NDArray[Any]) -> int | None:
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
        return NO_LIMIT
    axis = changed[-1]
    return min(old[axis], new[axis]) * math.prod(old[axis + 1 :])


def dataset_label(dataset: Any) -> tuple[str, str]:
    """(file name, dataset name) of an h5py dataset or a dataset-like object, for messages."""
    name = getattr(dataset, "name", None) or type(dataset).__name__
    file = getattr(dataset, "file", None)
    filename = getattr(file, "filename", None) or "<no file>"
    return str(filename), str(name)


def refresh_dataset(dataset: Any) -> None:
    """Call ``dataset.refresh()`` if it has one and its file is open in SWMR mode.

    Arrays have nothing to refresh. A file opened without SWMR mode cannot be growing (a writer
    would hold its lock), and with HDF5 2.0 refreshing a dataset of such a file can break the
    other handles open on it ("can't retrieve B-tree's shared ref. count object").

    Raises
    ------
    DuplicateHandleError
        Another handle on the dataset is open in this process (see ``h5live._source.handles``).
    """
    refresh = getattr(dataset, "refresh", None)
    if refresh is None:
        return
    if getattr(getattr(dataset, "file", None), "swmr_mode", True) is False:
        return
    check_single_handle(dataset)
    refresh()


class KeyView:
    """One key dataset seen as a flat run of frames."""

    __slots__ = (
        "align",
        "dataset",
        "dims",
        "dtype_checked",
        "extent",
        "filename",
        "name",
        "refreshed_in",
        "shape",
    )

    def __init__(self, dataset: Any, dims: int) -> None:
        self.dataset = dataset
        self.filename, self.name = dataset_label(dataset)
        self.dims = dims
        self.shape: tuple[int, ...] = tuple(int(n) for n in dataset.shape[:dims])
        self.extent = math.prod(self.shape)
        chunks = getattr(dataset, "chunks", None)
        # duck-typed datasets may have no chunks, or an attribute that is not a shape
        flat_chunk = math.prod(chunks[:dims]) if isinstance(chunks, (tuple, list)) else 1
        self.align = max(1, min(flat_chunk, _MAX_ALIGN))
        self.dtype_checked = False
        self.refreshed_in = -1  # the follower's poll count at the last refresh

    def _fail(self, exc: BaseException, doing: str) -> KeyDatasetError:
        if is_contiguous_failure(exc):
            return KeyDatasetError(contiguous_message("key", self.name, self.filename))
        if isinstance(exc, ValueError):  # h5py: "... not a valid dataset identifier"
            return KeyDatasetError(
                f"cannot {doing} key dataset {self.name!r} in {self.filename!r}: its file is "
                "closed. Fix: keep the file open while following it."
            )
        return KeyDatasetError(
            f"cannot {doing} key dataset {self.name!r} in {self.filename!r}: {exc}. Fix: if it "
            "is compressed with a plugin filter, `import hdf5plugin` first; otherwise check that "
            "the file is a valid SWMR file and its writer is healthy."
        )

    def refresh(self, frontier: int) -> None:
        try:
            refresh_dataset(self.dataset)
            shape = tuple(int(n) for n in self.dataset.shape[: self.dims])
        except DuplicateHandleError:
            raise
        except (RuntimeError, OSError, ValueError) as exc:
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

    def read(self, lo: int, hi: int) -> npt.NDArray[np.bool_]:
        """Whether the keys at flat indices ``[lo, hi)`` (``hi <= extent``) are set, raveled.

        Raises
        ------
        KeyDatasetError
            The dataset cannot be read, or its values are not numbers.
        """
        try:
            if self.dims == 1:
                values = np.asarray(self.dataset[lo:hi, ...]).reshape(-1)
            else:
                selections = [(*box, Ellipsis) for box in flat_boxes(lo, hi, self.shape)]
                parts = [np.asarray(self.dataset[sel]).reshape(-1) for sel in selections]
                values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        except (RuntimeError, OSError, ValueError) as exc:
            raise self._fail(exc, "read") from exc
        if not self.dtype_checked:
            check_key_dtype(values.dtype, self.name, self.filename)
            self.dtype_checked = True
        return key_is_set(values)

    def run_end(
        self,
        start: int,
        stop: int,
        on_regression: Callable[[KeyView, npt.NDArray[np.int64]], None],
    ) -> int:
        """End (exclusive) of the run of non-zero entries from ``start``, at most ``stop``.

        The first read also covers the entries before ``start`` in the same chunk (at least
        the frontier entry): they are free to read and reveal keys that went back to zero.
        """
        if self.extent < start:
            on_regression(self, np.arange(self.extent, start, dtype=np.int64))
            return start
        pos = start
        window = max(self.align, MIN_WINDOW)
        if start > 0:
            lo = ((start - 1) // self.align) * self.align
            hi = min(stop, _align_up(start + window, self.align)) if stop > start else start
            values = self.read(lo, hi)
            behind = values[: start - lo]
            if not behind.all():
                on_regression(self, np.flatnonzero(~behind).astype(np.int64) + lo)
            zero = first_zero(values[start - lo :])
            if zero is not None:
                return start + zero
            pos = hi
            window = min(window * 4, _MAX_WINDOW)
        while pos < stop:
            hi = min(stop, _align_up(pos + window, self.align))
            zero = first_zero(self.read(pos, hi))
            if zero is not None:
                return pos + zero
            pos = hi
            window = min(window * 4, _MAX_WINDOW)
        return stop


def check_key_dtype(dtype: np.dtype[Any], name: str, filename: str) -> None:
    """Refuse keys that are not numbers: integers of any width, bool and floats are keys.

    Raises
    ------
    KeyDatasetError
        ``dtype`` is not numeric (strings, compounds, objects, ...).
    """
    if dtype.kind not in KEY_KINDS:
        raise KeyDatasetError(
            f"key dataset {name!r} in {filename!r} has dtype {dtype}, which is not a number; "
            "keys are numbers, 0 (or NaN) while the frame is not written and non-zero once it "
            "is. Fix: pass the scan-shaped numeric key dataset (integer, bool or float), or "
            "have the writer store its keys as one with fill value 0."
        )


def key_is_set(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Where numeric key values mark a written frame: non-zero, and not NaN for floats."""
    written = np.asarray(values != 0)
    if values.dtype.kind in "fc":
        written &= ~np.isnan(values)
    return written


def check_key_dataset(dataset: Any) -> tuple[tuple[int | None, ...], int]:
    """Validate one key dataset; return its ``maxshape`` and scan rank.

    Raises
    ------
    KeyDatasetError
        No shape/maxshape, a scalar, a dtype that is not numeric, or contiguous storage HDF5
        cannot read while it is written.
    """
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
            f"key dataset {name!r} in {filename!r} is a scalar; keys are shaped like the scan. "
            "Fix: pass the scan-shaped key dataset (maybe this is the finished dataset?)."
        )
    dtype = getattr(dataset, "dtype", None)
    if isinstance(dtype, np.dtype):  # duck-typed datasets are checked on their first read
        check_key_dtype(dtype, name, filename)
    if is_unallocated_contiguous(dataset):
        raise KeyDatasetError(contiguous_message("key", name, filename))
    return maxshape, scan_rank_of(maxshape)


class FinishedFlag:
    """The finished dataset: one number, 0 while writing and non-zero once complete.

    Shape ``()`` and ``(1,)`` both work; so does a growing dataset still of shape ``(0,)``,
    which reads as not finished.

    Raises
    ------
    FinishedDatasetError
        At construction: more than one element, a non-numeric dtype, or contiguous storage HDF5
        cannot read while it is written. From :meth:`read`: an unreadable dataset.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.filename, self.name = dataset_label(dataset)
        shape = tuple(getattr(dataset, "shape", ()))
        dtype = getattr(dataset, "dtype", None)
        if math.prod(shape) > 1:
            raise FinishedDatasetError(
                f"finished dataset {self.name!r} in {self.filename!r} has shape {shape}; it "
                "must hold one number (shape () or (1,)). Fix: pass the one-element finished "
                "dataset."
            )
        # duck-typed datasets may have a dtype that is not one: their values are checked on read
        if isinstance(dtype, np.dtype) and dtype.kind not in "iubf":
            raise FinishedDatasetError(
                f"finished dataset {self.name!r} in {self.filename!r} has dtype "
                f"{dtype}; it must be a number (0 while writing, non-zero when "
                "complete). Fix: pass the numeric finished dataset."
            )
        if is_unallocated_contiguous(dataset):
            raise FinishedDatasetError(contiguous_message("finished", self.name, self.filename))

    def read(self) -> bool:
        """Refresh and read the flag: True once the file is complete."""
        try:
            refresh_dataset(self.dataset)
            value = np.asarray(self.dataset[()])
        except DuplicateHandleError:
            raise
        except (RuntimeError, OSError, ValueError, TypeError) as exc:
            if is_contiguous_failure(exc):
                raise FinishedDatasetError(
                    contiguous_message("finished", self.name, self.filename)
                ) from exc
            raise FinishedDatasetError(
                f"cannot read finished dataset {self.name!r} in {self.filename!r}: {exc}. Fix: "
                "keep its file open, or pass a readable one-element numeric dataset (or none)."
            ) from exc
        if value.size == 0:
            return False
        if value.size != 1 or value.dtype.kind not in "iubf":
            raise FinishedDatasetError(
                f"finished dataset {self.name!r} in {self.filename!r} holds {value!r}; it must "
                "be one number. Fix: pass the one-element finished dataset."
            )
        return bool(value.reshape(-1)[0] != 0)
