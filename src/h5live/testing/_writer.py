"""A simulated detector: a real SWMR writer that tests, tutorials, benchmarks and the demo share.

The file layout follows real detectors: frames in ``/entry/data/data``, one key dataset per
``/entry/keys/key_<n>``, a finished flag in ``/entry/finished`` (every path configurable). The
writer flushes data, then keys, then the finished flag, as SWMR followers expect, and can misbehave
on purpose: crash, leave gaps, reset keys.

Use it in-process and step it by hand (:meth:`SimulatedWriter.append`,
:meth:`SimulatedWriter.flush_keys`, :meth:`SimulatedWriter.finish`), or run it in another
process with :class:`h5live.testing.WriterProcess` for live tests.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import h5py
import numpy as np
import numpy.typing as npt

from h5live._closing import ClosingContext
from h5live._read.filters import filter_options

__all__ = ["CRASH_EXIT_CODE", "SimulatedWriter", "WriterConfig", "frame_values"]

KeyOrder = Literal["forward", "reverse", "random"]

#: Exit code of a writer process that crashed on purpose (``crash_after``).
CRASH_EXIT_CODE = 3


@dataclass(frozen=True)
class WriterConfig:
    """What the simulated detector writes, how fast, and how it misbehaves.

    Parameters
    ----------
    scan_shape
        Final scan shape: ``(n,)`` for a stack, ``(rows, columns)`` for a grid scan, ...
    frame_shape
        Shape of one frame: ``()`` scalar, ``(n,)`` spectrum, ``(h, w)`` image.
    dtype
        Frame dtype.
    presized
        Create data and keys at the full scan shape from the start (fixed ``maxshape``),
        instead of growing them along the first scan axis.
    frame_rate_hz
        Frames per second, or ``None`` for as fast as possible.
    n_keys
        Number of key datasets.
    key_order
        Order in which the keys of a batch are set and flushed.
    key_jitter_s
        Random pause, up to this long, between flushing one key and the next.
    flush_every
        Frames per batch: data for the batch is flushed, then its keys.
    data_chunks, key_chunks
        HDF5 chunk shapes (``None``: one frame per data chunk; keys chunked along the fast axis).
    contiguous_keys
        Create pre-sized contiguous keys, which HDF5 cannot follow live (to test that error).
    compression
        ``None``, ``"gzip"``, ``"lzf"``, or an hdf5plugin filter: ``"zstd"``, ``"lz4"``,
        ``"blosc"``, ``"blosc2"``, ``"bitshuffle"``.
    finished
        Create the finished dataset and set it at the end.
    finished_scalar
        Finished dataset of shape ``()`` (True) or ``(1,)`` (False).
    crash_after
        Stop after this many frames are keyed, without setting finished (a process exits with
        code 3 without closing the file).
    stop_after
        Stop after this many frames are keyed and set finished: an aborted scan.
    gaps
        Frame indices whose first key is left at 0.
    gap_fill_after
        Set a gap's key this many frames after it was written (``None``: never).
    regressions
        ``(after, index)`` pairs: once ``after`` frames are keyed, reset the first key at
        ``index`` to 0.
    timestamps
        Write the wall-clock time (``time.time()``) at which each frame's data was flushed, in
        ``timestamp_path`` (NaN until written), for latency measurements.
    key_trailing_ones
        Append this many size-1 dims to the key shape (Diamond writes keys as ``(..., 1, 1)``).
    hold_at
        A writer process pauses before writing frame ``hold_at`` (0: before any frame) until
        :meth:`WriterProcess.go` is called, so that a test can act at a known point; a tuple
        of frames pauses before each, one :meth:`WriterProcess.go` each (a test can look at an
        output mid-write, however slow the machine, without racing the writer).
    key_dtype
        Dtype of the key datasets (``"uint64"`` for the unique ids of Odin's detector files).
    interleave
        ``(files, block, part)``: this file is part ``part`` of an acquisition whose frames are
        dealt out in blocks of ``block`` to ``files`` writers (as Odin's frame processors), so
        its frame ``k`` is frame ``interleaved_index(k)`` of the scan: it holds that frame's
        values, its key is that index + 1 (a unique id), and ``frame_rate_hz`` is the whole
        acquisition's rate (it is written when the scan reaches it). ``scan_shape`` is this
        file's own (a stack).
    value_offset
        Frame ``i`` holds ``frame_values(i + value_offset)``: detectors of one scan that write
        files of their own hold different frames.
    seed
        Seed for key order and jitter.
    """

    scan_shape: tuple[int, ...] = (100,)
    frame_shape: tuple[int, ...] = (8, 8)
    dtype: str = "uint16"
    presized: bool = False
    frame_rate_hz: float | None = None
    n_keys: int = 1
    key_order: KeyOrder = "forward"
    key_jitter_s: float = 0.0
    flush_every: int = 1
    data_chunks: tuple[int, ...] | None = None
    key_chunks: tuple[int, ...] | None = None
    contiguous_keys: bool = False
    compression: str | None = None
    finished: bool = True
    finished_scalar: bool = True
    crash_after: int | None = None
    stop_after: int | None = None
    gaps: tuple[int, ...] = ()
    gap_fill_after: int | None = None
    regressions: tuple[tuple[int, int], ...] = ()
    timestamps: bool = False
    key_trailing_ones: int = 0
    hold_at: int | tuple[int, ...] | None = None
    key_dtype: str = "i8"
    interleave: tuple[int, int, int] | None = None
    value_offset: int = 0
    seed: int = 0
    data_path: str = "/entry/data/data"
    keys_group: str = "/entry/keys"
    finished_path: str = "/entry/finished"
    timestamp_path: str = "/entry/flush_time"

    def __post_init__(self) -> None:
        if not self.scan_shape or any(n < 1 for n in self.scan_shape):
            raise ValueError(f"scan_shape must be non-empty and positive, got {self.scan_shape!r}")
        if self.n_keys < 1:
            raise ValueError(f"n_keys must be >= 1, got {self.n_keys!r}")
        if self.flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {self.flush_every!r}")
        if self.key_order not in ("forward", "reverse", "random"):
            raise ValueError(f"key_order must be forward, reverse or random: {self.key_order!r}")
        if self.contiguous_keys and not self.presized:
            raise ValueError("contiguous_keys needs presized=True (growing keys must be chunked)")
        if self.interleave is not None:
            files, block, part = self.interleave
            if files < 1 or block < 1 or not 0 <= part < files or len(self.scan_shape) != 1:
                raise ValueError(
                    f"interleave must be (files >= 1, block >= 1, 0 <= part < files) for a "
                    f"stack, got {self.interleave!r} with scan_shape {self.scan_shape!r}"
                )

    @classmethod
    def of(cls, config: WriterConfig | None = None, **overrides: Any) -> WriterConfig:
        """``config`` (default: all defaults) with some fields replaced."""
        base = config if config is not None else cls()
        return dataclasses.replace(base, **overrides) if overrides else base

    @property
    def n_frames(self) -> int:
        """Number of frames in the whole scan."""
        return math.prod(self.scan_shape)

    def interleaved_index(self, k: int) -> int:
        """The scan's flat index of this file's frame ``k`` (``k`` itself unless interleaved)."""
        if self.interleave is None:
            return k
        files, block, part = self.interleave
        blocks, within = divmod(k, block)
        return (blocks * files + part) * block + within

    @property
    def key_paths(self) -> list[str]:
        """Paths of the key datasets."""
        return [f"{self.keys_group}/key_{k}" for k in range(self.n_keys)]

    def to_json(self) -> str:
        """Serialise, for a writer process."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WriterConfig:
        """Inverse of :meth:`to_json`."""
        raw: dict[str, Any] = json.loads(text)
        for name in (
            "scan_shape",
            "frame_shape",
            "data_chunks",
            "key_chunks",
            "gaps",
            "interleave",
        ):
            if raw.get(name) is not None:
                raw[name] = tuple(raw[name])
        raw["regressions"] = tuple(tuple(pair) for pair in raw.get("regressions", ()))
        if isinstance(raw.get("hold_at"), list):
            raw["hold_at"] = tuple(raw["hold_at"])
        return cls(**raw)

    @property
    def hold_points(self) -> tuple[int, ...]:
        """The frames a writer process pauses before, in order (``hold_at`` as a tuple)."""
        if self.hold_at is None:
            return ()
        points = (self.hold_at,) if isinstance(self.hold_at, int) else self.hold_at
        return tuple(sorted(points))


@functools.lru_cache(maxsize=8)
def _unsigned_ramp(frame_shape: tuple[int, ...], dtype: str) -> npt.NDArray[Any]:
    """``arange`` over the frame, wrapped to ``dtype`` (read-only: it is shared)."""
    ramp = np.arange(math.prod(frame_shape), dtype=np.int64).reshape(frame_shape).astype(dtype)
    ramp.flags.writeable = False
    return ramp


def frame_values(index: int, frame_shape: Sequence[int], dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """The frame the simulated writer writes at flat index ``index``.

    Every pixel differs and every frame differs, so a transposed, shifted or stale frame
    never compares equal.
    """
    dt = np.dtype(dtype)
    if dt.kind == "u" and dt.isnative:  # the same values, fast: wrapping unsigned adds
        base = _unsigned_ramp(tuple(int(n) for n in frame_shape), dt.str)
        frame: npt.NDArray[Any] = base + np.array(index * 7919 % (int(np.iinfo(dt).max) + 1), dt)
        return frame
    ramp = np.arange(math.prod(frame_shape), dtype=np.int64).reshape(tuple(frame_shape))
    if dt.kind in "iu":
        span = int(np.iinfo(dt).max) + 1 if dt.kind == "u" else int(np.iinfo(dt).max)
        return ((ramp + index * 7919) % span).astype(dt)
    if dt.kind == "b":
        return ((ramp + index) % 2).astype(dt)
    return (index + ramp / (ramp.size + 1)).astype(dt)


def _write_block(dataset: Any, start: Sequence[int], block: npt.NDArray[Any]) -> None:
    """Write ``block`` at ``start`` through the low-level API (h5py's ``__setitem__`` costs
    ~100 us a call, too slow for a simulated kHz detector)."""
    block = np.ascontiguousarray(block)
    file_space = dataset.id.get_space()
    file_space.select_hyperslab(tuple(start), block.shape)
    dataset.id.write(h5py.h5s.create_simple(block.shape), file_space, block)


class SimulatedWriter(ClosingContext):
    """A SWMR writer of the layout described by a :class:`WriterConfig`.

    Parameters
    ----------
    path
        File to create (overwritten).
    config
        What to write; keyword arguments override its fields.

    Examples
    --------
    >>> with SimulatedWriter("scan.h5", scan_shape=(10,)) as writer:  # doctest: +SKIP
    ...     writer.append(3)  # data for frames 0..2, flushed
    ...     writer.flush_keys()  # their keys, flushed: frames 0..2 are complete
    ...     writer.finish()
    """

    def __init__(
        self, path: str | os.PathLike[str], config: WriterConfig | None = None, **overrides: Any
    ) -> None:
        self.config = WriterConfig.of(config, **overrides)
        self.path = os.fspath(path)
        self.frames_written = 0
        self.frames_keyed = 0
        self._rng = np.random.default_rng(self.config.seed)
        self._applied_regressions: set[tuple[int, int]] = set()
        self._filled_gaps: set[int] = set()
        # Current shapes, by id(dataset): h5py's Dataset.shape costs ~30 us a call.
        self._shapes: dict[int, list[int]] = {}
        c = self.config
        self._frame_ones = (1,) * len(c.scan_shape)
        self._key_ones = (1,) * c.key_trailing_ones
        self.file: Any = None
        self.data: Any = None
        self.keys: list[Any] = []
        self.finished: Any = None
        self.timestamps: Any = None
        self.create()

    # ------------------------------------------------------------------ layout

    def _scan_extent(self, frames: int) -> int:
        """Length of the first scan axis needed to hold ``frames`` frames."""
        inner = math.prod(self.config.scan_shape[1:])
        return -(-frames // inner)

    def _scan_dims(self, first: int) -> tuple[int, ...]:
        return (first, *self.config.scan_shape[1:])

    def _key_chunks(self) -> tuple[int, ...]:
        c = self.config
        if c.key_chunks is not None:
            return (*c.key_chunks, *(1,) * c.key_trailing_ones)
        scan = c.scan_shape
        fast = min(scan[-1], 1024)
        chunk = (*(1,) * (len(scan) - 1), fast) if len(scan) > 1 else (min(scan[0], 1024),)
        return (*chunk, *(1,) * c.key_trailing_ones)

    def create(self) -> None:
        """Create the file and its whole layout, then switch SWMR mode on."""
        c = self.config
        first = c.scan_shape[0] if c.presized else 0
        scan_now = self._scan_dims(first)
        scan_max = c.scan_shape if c.presized else (None, *c.scan_shape[1:])
        ones = (1,) * c.key_trailing_ones
        f = h5py.File(self.path, "w", libver="latest")
        data_chunks = c.data_chunks or (*(1,) * len(c.scan_shape), *c.frame_shape)
        self.data = f.create_dataset(
            c.data_path,
            shape=(*scan_now, *c.frame_shape),
            maxshape=(*scan_max, *c.frame_shape),
            dtype=c.dtype,
            chunks=data_chunks,
            **filter_options(c.compression),
        )
        key_options: dict[str, Any] = (
            {}
            if c.contiguous_keys
            else {"chunks": self._key_chunks(), "maxshape": (*scan_max, *ones)}
        )
        self.keys = [
            f.create_dataset(
                path, shape=(*scan_now, *ones), dtype=c.key_dtype, fillvalue=0, **key_options
            )
            for path in c.key_paths
        ]
        if c.timestamps:
            self.timestamps = f.create_dataset(
                c.timestamp_path,
                shape=scan_now,
                maxshape=scan_max,
                dtype="f8",
                fillvalue=np.nan,
                chunks=self._key_chunks()[: len(c.scan_shape)],
            )
        if c.finished:
            # Written now so that its storage exists before SWMR starts: a scalar dataset
            # cannot be chunked, and HDF5 cannot follow contiguous storage allocated later.
            if c.finished_scalar:
                self.finished = f.create_dataset(c.finished_path, data=np.int32(0))
            else:
                self.finished = f.create_dataset(
                    c.finished_path, data=np.zeros(1, np.int32), maxshape=(1,), chunks=(1,)
                )
        f.swmr_mode = True
        self.file = f

    # ------------------------------------------------------------------ stepping by hand

    def _position(self, index: int) -> tuple[int, ...]:
        return tuple(int(p) for p in np.unravel_index(index, self.config.scan_shape))

    def _grow(self, dataset: Any, frames: int) -> None:
        if self.config.presized:
            return
        needed = self._scan_extent(frames)
        shape = self._shapes.get(id(dataset))
        if shape is None:
            shape = self._shapes[id(dataset)] = list(dataset.shape)
        if shape[0] < needed:
            shape[0] = needed
            dataset.id.set_extent(tuple(shape))

    def append(self, n: int = 1) -> range:
        """Write and flush the data of the next ``n`` frames (their keys stay unset).

        Returns
        -------
        range
            The flat indices written.
        """
        c = self.config
        first = self.frames_written
        stop = min(first + n, c.n_frames)
        if stop <= first:
            return range(first, first)
        self._grow(self.data, stop)
        if len(c.scan_shape) == 1:
            block = np.stack([self._frame(i) for i in range(first, stop)])
            _write_block(self.data, (first, *(0,) * len(c.frame_shape)), block)
        else:
            for i in range(first, stop):
                frame = self._frame(i).reshape((*self._frame_ones, *c.frame_shape))
                _write_block(self.data, (*self._position(i), *(0,) * len(c.frame_shape)), frame)
        self.data.id.flush()
        if self.timestamps is not None:
            self._grow(self.timestamps, stop)
            if len(c.scan_shape) == 1:
                _write_block(self.timestamps, (first,), np.full(stop - first, time.time()))
            else:
                now = np.full(self._frame_ones, time.time())
                for i in range(first, stop):
                    _write_block(self.timestamps, self._position(i), now)
            self.timestamps.id.flush()
        self.frames_written = stop
        return range(first, stop)

    def _frame(self, i: int) -> npt.NDArray[Any]:
        """What this file's frame ``i`` holds."""
        c = self.config
        return frame_values(c.interleaved_index(i) + c.value_offset, c.frame_shape, c.dtype)

    def set_keys(self, key: int, frames: Iterable[int], value: int | None = None) -> None:
        """Set key ``key`` at the given frames (to ``index + 1``, or ``value``) and flush it."""
        dataset = self.keys[key]
        indices = sorted(frames)
        if not indices:
            return
        self._grow(dataset, indices[-1] + 1)
        zeros = (0,) * self.config.key_trailing_ones
        contiguous = indices == list(range(indices[0], indices[-1] + 1))
        if len(self.config.scan_shape) == 1 and contiguous:
            values = np.arange(indices[0] + 1, indices[-1] + 2, dtype=np.int64)
            if self.config.interleave is not None:
                values = np.array([self.config.interleaved_index(int(i)) + 1 for i in indices])
            if value is not None:
                values[:] = value
            _write_block(dataset, (indices[0], *zeros), values.reshape((-1, *self._key_ones)))
        else:
            one = (*(1,) * len(self.config.scan_shape), *self._key_ones)
            for i in indices:
                unique = self.config.interleaved_index(i) + 1
                block = np.full(one, unique if value is None else value, dtype=np.int64)
                _write_block(dataset, (*self._position(i), *zeros), block)
        dataset.id.flush()

    def _key_sequence(self) -> list[int]:
        order = list(range(self.config.n_keys))
        if self.config.key_order == "reverse":
            order.reverse()
        elif self.config.key_order == "random":
            self._rng.shuffle(order)
        return order

    def flush_keys(self) -> range:
        """Set and flush the keys of every written frame that has none yet.

        Keys are set in ``key_order`` with ``key_jitter_s`` pauses; gaps leave the first key at
        0; due gap fills and regressions are applied afterwards.

        Returns
        -------
        range
            The flat indices keyed.
        """
        c = self.config
        frames = range(self.frames_keyed, self.frames_written)
        if not frames:
            return frames
        gaps = set(c.gaps) - self._filled_gaps
        for n, key in enumerate(self._key_sequence()):
            if n and c.key_jitter_s:
                time.sleep(float(self._rng.uniform(0, c.key_jitter_s)))
            wanted = [i for i in frames if i not in gaps] if key == 0 else frames
            self.set_keys(key, wanted)
        self.frames_keyed = frames.stop
        if c.gap_fill_after is not None:
            due = [
                g for g in gaps if g < self.frames_written and g + c.gap_fill_after <= frames.stop
            ]
            self.set_keys(0, due)
            self._filled_gaps.update(due)
        for after, index in c.regressions:
            if (after, index) not in self._applied_regressions and self.frames_keyed >= after:
                self.set_keys(0, [index], value=0)
                self._applied_regressions.add((after, index))
        return frames

    def finish(self) -> None:
        """Set the finished flag (keys must be flushed first, and are) and flush it."""
        if self.finished is None:
            return
        if self.finished.shape == ():
            self.finished[()] = 1
        else:
            self.finished[0] = 1
        self.finished.id.flush()

    # ------------------------------------------------------------------ the whole acquisition

    def run(self, on_hold: Callable[[], object] | None = None) -> dict[str, Any]:
        """Write the whole scan at ``frame_rate_hz``, as configured.

        Parameters
        ----------
        on_hold
            Called before each frame of ``hold_at`` is written (a writer process waits there).

        Returns
        -------
        dict
            ``frames`` keyed, ``elapsed_s``, ``rate_hz`` achieved, this process's CPU time
            while writing (``cpu_s``, of which ``sys_s`` in the kernel), and ``crashed``.
        """
        c = self.config
        total = min([c.n_frames, *(n for n in (c.crash_after, c.stop_after) if n is not None)])
        start = time.perf_counter()
        cpu_start = os.times()
        holds = list(c.hold_points) if on_hold is not None else []
        while self.frames_keyed < total:
            if on_hold is not None and holds and self.frames_keyed >= holds[0]:
                holds.pop(0)
                on_hold()
                done = c.interleaved_index(self.frames_keyed)
                start = time.perf_counter() - done / (c.frame_rate_hz or math.inf)
                cpu_start = os.times()
            if c.frame_rate_hz:  # an interleaved file's frames come when the scan reaches them
                due = start + c.interleaved_index(self.frames_keyed) / c.frame_rate_hz
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            batch = min(c.flush_every, total - self.frames_keyed)
            if holds:
                batch = min(batch, holds[0] - self.frames_keyed)
            self.append(batch)
            self.flush_keys()
        crashed = c.crash_after is not None and c.crash_after == total < c.n_frames
        if not crashed:
            self.finish()
        elapsed = time.perf_counter() - start
        cpu_end = os.times()
        return {
            "frames": self.frames_keyed,
            "elapsed_s": elapsed,
            "cpu_s": cpu_end.user + cpu_end.system - cpu_start.user - cpu_start.system,
            "sys_s": cpu_end.system - cpu_start.system,
            "rate_hz": self.frames_keyed / elapsed if elapsed > 0 else math.inf,
            "crashed": crashed,
        }

    # ------------------------------------------------------------------ resource handling

    def close(self) -> None:
        """Close the file (idempotent). Does not set the finished flag."""
        if self.file is not None:
            self.file.close()
            self.file = None

    def __repr__(self) -> str:
        return (
            f"<SimulatedWriter {os.path.basename(self.path)!r} "
            f"written={self.frames_written} keyed={self.frames_keyed}/{self.config.n_frames}>"
        )
