"""DataSource: a KeyFollower and one FrameReader per dataset, yielding complete frames.

Contract
--------
- Each item is a :class:`~h5live._read.reader.SliceDict` of frames by dataset path, for one frame
  (swmr_tools' behaviour) or, with ``batch_frames``, for a run of up to that many frames that
  is one box of the scan grid, read with one hyperslab read per dataset.
- Order of operations per new frontier: the keys are read (by the follower), then every data
  dataset is refreshed once, then frames up to that frontier are read without further
  refreshes. Nothing ever sleeps except the follower waiting for the writer.
- Data datasets must have the scan shape of the keys (checked at construction); interleaved
  datasets (frames written alternately by several writers) hold frame ``i`` in dataset
  ``i % n`` at index ``i // n``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from h5live import utils
from h5live._closing import ClosingContext
from h5live._follow.follower import FollowPolicy, KeyFollower
from h5live._follow.keys import dataset_label
from h5live._read.reader import DirectMode, FrameReader, SliceDict, box_runs
from h5live._source.spec import Clock, Sleep
from h5live.errors import ScanShapeError

__all__ = ["DataSource"]


def _scan_maxshape(dataset: Any, scan_rank: int) -> tuple[int | None, ...]:
    maxshape = getattr(dataset, "maxshape", None) or dataset.shape
    return tuple(maxshape[:scan_rank])


class DataSource(ClosingContext):
    """Iterate over the complete frames of several datasets of a live source.

    A drop-in for ``swmr_tools.DataSource`` (same signature, items, attributes and methods)
    that never sleeps a fixed time, rejects data whose scan shape does not match the keys, and
    can read runs of frames with one read per dataset (``batch_frames``).

    Parameters
    ----------
    key_datasets
        Key datasets (see :class:`h5live.KeyFollower`).
    datasets
        Datasets to read frames from, by name (usually their path); may be None if
        ``interleaved_datasets`` is given.
    timeout, finished_dataset
        As for :class:`h5live.KeyFollower`.
    use_direct_chunk
        As for :class:`h5live.FrameReader`.
    interleaved_datasets
        Name -> list of datasets that together hold one stack of frames written alternately
        (frame ``i`` is frame ``i // n`` of dataset ``i % n``). Stacks only (scan rank 1).
    batch_frames
        None: one frame per item, as swmr_tools. A number: up to that many frames per item,
        each item one box of the scan grid (a run of a stack; part of one row, or whole rows,
        of a grid), with frames keeping their scan dims.
    policy, clock, sleep
        As for :class:`h5live.KeyFollower`.

    Attributes
    ----------
    kf : KeyFollower
        The follower of the keys.
    frame_readers, interleaved_frame_readers : dict
        The readers by name.
    max_index : int
        The frontier at the last data refresh.

    Raises
    ------
    ValueError
        No datasets, a bad ``batch_frames``, or interleaved datasets on a grid scan.
    ScanShapeError
        A dataset whose scan shape does not match the keys' (both shapes are named): fewer
        dims than the scan rank, or other inner scan dims. The first axis's maximum length may
        differ; frames are those the keys mark.

    Examples
    --------
    >>> with h5py.File("scan.h5", "r", libver="latest", swmr=True) as f:  # doctest: +SKIP
    ...     source = DataSource([f["/entry/keys/key_0"]], {"data": f["/entry/data/data"]})
    ...     for item in source:
    ...         total = item["data"].sum()
    """

    def __init__(
        self,
        key_datasets: Sequence[Any],
        datasets: Mapping[str, Any] | None,
        timeout: float | None = 10,
        finished_dataset: Any | None = None,
        use_direct_chunk: DirectMode = False,
        interleaved_datasets: Mapping[str, Sequence[Any]] | None = None,
        *,
        batch_frames: int | None = None,
        policy: FollowPolicy | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not datasets and not interleaved_datasets:
            raise ValueError(
                "no data to follow: datasets and interleaved_datasets are both empty. Fix: "
                "pass {name: dataset} for the frames to read."
            )
        if batch_frames is not None and not (isinstance(batch_frames, int) and batch_frames > 0):
            raise ValueError(
                f"batch_frames must be None (one frame per item) or a number of frames >= 1, "
                f"got {batch_frames!r}."
            )
        self._datasets = dict(datasets or {})
        self._interleaved_datasets = {k: list(v) for k, v in (interleaved_datasets or {}).items()}
        self.batch_frames = batch_frames
        self.max_index = -1
        self.kf = KeyFollower(
            key_datasets, timeout, finished_dataset, policy=policy, clock=clock, sleep=sleep
        )
        rank = self.kf.scan_rank
        for name, dataset in self._datasets.items():
            self._check_scan_shape(name, dataset)
        if self._interleaved_datasets and rank != 1:
            raise ValueError(
                f"interleaved datasets {sorted(self._interleaved_datasets)} need a stack (scan "
                f"rank 1) but the keys have scan rank {rank}. Fix: pass grid data as datasets."
            )
        self.frame_readers = {
            name: FrameReader(dataset, rank, use_direct_chunk)
            for name, dataset in self._datasets.items()
        }
        self.interleaved_frame_readers = {
            name: [FrameReader(dataset, rank, use_direct_chunk) for dataset in parts]
            for name, parts in self._interleaved_datasets.items()
        }
        self._pending: list[tuple[int, int]] = []
        self._ranges: Iterator[tuple[int, int]] | None = None

    def _check_scan_shape(self, name: str, dataset: Any) -> None:
        rank = self.kf.scan_rank
        keys = self.kf.maxshape or ()
        key_shape = tuple(self.kf.key_datasets[0].shape[:rank])
        filename, path = dataset_label(dataset)
        shape = tuple(dataset.shape)
        data = _scan_maxshape(dataset, rank) if len(shape) >= rank else shape
        # Inner scan dims must agree. The first axis's maximum may differ (swmr_tools' own tests
        # give keys room for 20 frames beside data for 10): the keys say which frames exist.
        clash = len(shape) < rank or any(
            k is not None and d is not None and k != d
            for k, d in zip(keys[1:], data[1:], strict=True)
        )
        # inner scan dims that can grow must still agree now (0: not written yet)
        clash = clash or any(
            shape[a] and key_shape[a] and shape[a] != key_shape[a] for a in range(1, rank)
        )
        if clash:
            key_file, key_path = dataset_label(self.kf.key_datasets[0])
            raise ScanShapeError(
                f"dataset {name!r} ({path!r} in {filename!r}) has scan shape "
                f"{shape[:rank]} (maxshape {data}) but the keys ({key_path!r} in "
                f"{key_file!r}) have scan shape {key_shape} (maxshape {keys}). Fix: pass the "
                "data and keys of the same scan; the first dims of each data dataset must be "
                "the scan dims of the keys."
            )

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> DataSource:
        return self

    def _refresh_data(self, last: int) -> None:
        """Refresh every dataset once per frontier move (after the keys were read)."""
        if last <= self.max_index:
            return
        frontier = self.kf.current_max
        self.max_index = frontier
        for reader in self.frame_readers.values():
            reader.refresh(frontier)
        for parts in self.interleaved_frame_readers.values():
            count = len(parts)
            for j, reader in enumerate(parts):
                reader.refresh((frontier - j) // count)

    def _next_range(self) -> tuple[int, int]:
        if self.batch_frames is None:
            index = next(self.kf)
            return index, index + 1
        while not self._pending:
            if self._ranges is None:
                self._ranges = self.kf.iter_ranges(self.batch_frames)
            start, stop = next(self._ranges)
            # the keys define the scan grid: the data may still lag behind them
            self._pending = box_runs(
                start, stop, self.kf.key_datasets[0].shape[: self.kf.scan_rank]
            )
        return self._pending.pop(0)

    def __next__(self) -> SliceDict:
        start, stop = self._next_range()
        self._refresh_data(stop - 1)
        output = SliceDict()
        output.maxshape = self.kf.maxshape
        output.index = start
        output.stop = stop
        for name, reader in self.frame_readers.items():
            output[name], output.slice_metadata = reader.read_frames(start, stop)
        for name, parts in self.interleaved_frame_readers.items():
            output[name] = self._read_interleaved(parts, start, stop)
            if output.slice_metadata is None:
                output.slice_metadata = (slice(start, stop),)
        return output

    @staticmethod
    def _read_interleaved(parts: list[FrameReader], start: int, stop: int) -> npt.NDArray[Any]:
        count = len(parts)
        blocks: list[tuple[int, npt.NDArray[Any]]] = []
        for j, reader in enumerate(parts):
            first = start + (j - start) % count  # first frame of [start, stop) in part j
            if first >= stop:
                continue
            n = -(-(stop - first) // count)
            blocks.append((first, reader.read_frames(first // count, first // count + n)[0]))
        # the dtype of what was read: a duck-typed dataset's dtype attribute may not be one
        sample = blocks[0][1]
        frames = np.empty((stop - start, *sample.shape[1:]), dtype=sample.dtype)
        for first, block in blocks:
            frames[first - start :: count] = block
        return frames

    # ------------------------------------------------------------------ swmr_tools methods

    def reset(self) -> None:
        """Start again from frame 0 (frames already complete are handed out again at once)."""
        self.kf.reset()
        self.max_index = -1
        self._pending = []
        self._ranges = None

    def create_dataset(self, data: Any, fh: Any, path: str) -> Any:
        """Create a dataset in ``fh`` for per-frame results, with the scan's maxshape."""
        return utils.create_dataset(data, self.kf.maxshape or (), fh, path)

    def append_data(self, data: Any, slice_metadata: Sequence[slice], dataset: Any) -> None:
        """Write a result at ``slice_metadata``, growing ``dataset`` (see ``utils.append_data``)."""
        utils.append_data(data, slice_metadata, dataset)

    def is_scan_finished(self) -> bool:
        """Whether the writer is done: the finished dataset was seen set, or the keys cover
        the whole fixed scan shape."""
        return self.kf.finished_set or self.kf.stop_reason == "complete"

    def has_timed_out(self) -> bool:
        """Whether the follower stopped on its idle timeout."""
        return self.kf.timed_out

    def close(self) -> None:
        """Close the follower (and the file, if it opened it). Idempotent."""
        self.kf.close()

    def __repr__(self) -> str:
        names = sorted([*self.frame_readers, *self.interleaved_frame_readers])
        filename = os.path.basename(dataset_label(self.kf.key_datasets[0])[0])
        batch = f" batch_frames={self.batch_frames}" if self.batch_frames else ""
        return (
            f"<DataSource {filename!r} datasets={names} frontier={self.kf.current_max}"
            f"{batch} stop_reason={self.kf.stop_reason!r}>"
        )
