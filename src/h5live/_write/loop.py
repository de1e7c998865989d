"""LiveWrite: the one loop that writes every live dataset of a destination.

Contract
--------
- A destination's live datasets are :class:`LiveTarget` s: a
  :class:`~h5live.LiveDataChunkIterator` and the :class:`~h5live._write.sink.DatasetSink` that
  writes its chunks. :meth:`LiveWrite.run` asks them for chunks round-robin, as hdmf's queue
  does (lazily: a sink may copy stored chunks as they are), writes each through its sink, and
  after each chunk marks the frames that *every* live dataset holds in the output's bookkeeping
  (:class:`~h5live._write.output.LiveOutput`: data flushed, then keys, then the count). Only
  what a sink has written counts (its pool of encoding threads may hold chunks handed over):
  the pools are flushed before a source is waited for (the followers' ``on_wait``), after a
  chunk released early for the latency bound (its cost is then the release's), and at the end.
- Before each chunk, and while a source is waited for, it checks for a stop request
  (:mod:`h5live._write.stop`), and before each write
  that the disk and the file size limit have room (:class:`Space`): HDF5 cannot close a file
  after a write failed for lack of space.
- :meth:`LiveWrite.guarded` records how a run ended if it did not end normally (``interrupted``
  on Ctrl-C or a signal, ``failed`` with the message on errors, raising
  :class:`~h5live.errors.OutputError` for write failures); :meth:`LiveWrite.end` records a
  normal end: ``complete`` when every source finished and every frame was written, else
  ``incomplete``. Either way the live datasets are first cut to the rows of complete frames.
- ``copy_live``, ``to_nwb``, resumes and :class:`h5live.LiveHDF5IO` /
  :class:`h5live.LiveNWBHDF5IO` all write through it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from h5live._iterate.iterator import LiveDataChunkIterator
from h5live._write.output import LiveOutput
from h5live._write.sink import DatasetSink
from h5live._write.stop import check_stop, clear_stop
from h5live.errors import OutputError

__all__ = ["Coverage", "LiveTarget", "LiveWrite", "Space"]

logger = logging.getLogger(__name__)

Selection = tuple[slice, ...]


class Coverage:
    """Which frames of one live dataset are written; the complete prefix (in flat frames).

    A frame cut into tiles (buffers smaller than a frame) counts once its last tile, in hdmf's
    order, is written."""

    def __init__(
        self, inner: tuple[int, ...], rank: int, start: int, frame: Sequence[int] = ()
    ) -> None:
        self.inner = inner
        self.rank = rank
        self.frame = tuple(int(n) for n in frame)
        self.per_row = max(math.prod(inner), 1)
        self.done = np.zeros(0, dtype=bool)
        self.prefix = start

    def add(self, selection: Selection) -> None:
        box = selection[: self.rank]
        tiles = selection[self.rank :]
        if self.frame and any(s.stop != n for s, n in zip(tiles, self.frame, strict=False)):
            return  # not the last tile of its frames: they are counted with that one
        rows = box[0].stop
        if self.done.size < rows * self.per_row:
            grown = np.zeros(max(rows * self.per_row, 2 * self.done.size), dtype=bool)
            grown[: self.done.size] = self.done
            self.done = grown
        self.done[: rows * self.per_row].reshape(rows, *self.inner)[box] = True
        ahead = self.done[self.prefix :]
        unset = np.flatnonzero(~ahead)
        self.prefix += int(unset[0]) if unset.size else int(ahead.size)


class Space:
    """Stops a write *before* the disk (or the file size limit) runs out.

    HDF5 cannot close a file cleanly once a write has failed for lack of space (measured with
    HDF5 2.0: the close fails, and freeing its objects then crashes the interpreter), so each
    chunk is written only if it and a margin for metadata fit.
    """

    MARGIN = 4 << 20

    def __init__(self, path: str) -> None:
        self.path = path
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        self.limit = math.inf if soft == resource.RLIM_INFINITY else soft

    def check(self, nbytes: int) -> None:
        need = nbytes + self.MARGIN
        size = os.path.getsize(self.path)
        stats = os.statvfs(self.path)
        free = stats.f_bavail * stats.f_frsize
        if free < need or size + need > self.limit:
            room = min(free, self.limit - size)
            raise OutputError(
                f"{self.path!r}: no room for the next {nbytes} bytes (and {self.MARGIN} for "
                f"HDF5's metadata): {room:.0f} bytes left on the disk or under the file size "
                "limit. The conversion stopped before writing them"
            )


@dataclass
class LiveTarget:
    """One live dataset of a destination: where its chunks come from and how they are
    written."""

    iterator: LiveDataChunkIterator
    sink: DatasetSink
    #: rows the destination holds already (a resume): chunks that end before are not written
    done_rows: int = 0

    @property
    def path(self) -> str:
        return str(self.sink.destination.name)


class LiveWrite:
    """Writes the live datasets of one destination, marks its progress and records its end.

    Parameters
    ----------
    file
        The destination, open for writing (``libver="latest"``); :meth:`run` switches it to
        SWMR mode.
    output
        Its bookkeeping.
    targets
        Its live datasets, the first one's scan shaping the keys.
    """

    def __init__(self, file: Any, output: LiveOutput, targets: Sequence[LiveTarget]) -> None:
        self.file = file
        self.output = output
        self.targets = list(targets)
        self.state = "writing"
        self.space = Space(file.filename)
        self.coverage = [
            Coverage(
                t.iterator.scan_inner,
                t.iterator.scan_rank,
                t.iterator.start_frame,
                t.iterator.frame_shape,
            )
            for t in self.targets
        ]
        for target in self.targets:
            target.sink.before_write = self.space.check
        self._datasets = [t.sink.destination for t in self.targets]

    @property
    def bytes_written(self) -> int:
        return sum(t.sink.bytes_written for t in self.targets)

    @property
    def chunk_copy(self) -> dict[str, str]:
        """How each live dataset's chunks are written (see :attr:`DatasetSink.how`)."""
        return {t.path: t.sink.how for t in self.targets}

    def run(self) -> str:
        """Switch the destination to SWMR mode (every object exists by now: from here on only
        values change and datasets grow), write every chunk the iterators hand out,
        round-robin, until all have stopped, and record the end (see :meth:`guarded` and
        :meth:`end`); the state."""
        if not self.file.swmr_mode:  # the one place an output enters SWMR mode
            self.file.swmr_mode = True
        with self.guarded():
            self._loop()
        return self.end()

    def _loop(self) -> None:
        followers = {id(t.iterator.follower): t.iterator.follower for t in self.targets}
        for follower in followers.values():  # nothing handed over waits for the writer
            follower.on_wait = self._on_wait
        try:
            self._write_all()
            for target in self.targets:
                target.sink.close()
            self._mark()
        except BaseException:
            for target in self.targets:
                target.sink.abort()  # never written, so never marked
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                self._mark(write_ready=False)  # what the pools wrote before the stop
            raise
        finally:
            for follower in followers.values():
                follower.on_wait = None

    def _write_all(self) -> None:
        queue: deque[int] = deque(range(len(self.targets)))
        while queue:
            check_stop()
            k = queue.popleft()
            target = self.targets[k]
            try:
                chunk = target.iterator.next_chunk(lazy=True)
            except StopIteration:
                continue
            rows = chunk.selection[0]
            if int(rows.stop) > target.done_rows:  # (a skipped one is not read)
                target.sink.write(chunk)
                if rows.stop - rows.start < target.iterator.buffer_shape[0]:
                    target.sink.flush()  # released early: on disk within its latency bound
            else:
                self.coverage[k].add(tuple(chunk.selection))
            del chunk  # its buffer is free for the next read
            self._mark()
            queue.append(k)

    def _mark(self, *, write_ready: bool = True) -> None:
        """Mark the frames every live dataset holds (written, not only handed over)."""
        for target, coverage in zip(self.targets, self.coverage, strict=True):
            for selection in target.sink.take_written(write_ready=write_ready):
                coverage.add(selection)
        self.output.mark(min(c.prefix for c in self.coverage), self._datasets)

    def _on_wait(self) -> None:
        """A source is about to be waited for: stop if asked (no chunk may come for as long as
        the writer pauses), else write what the pools hold, and mark it."""
        check_stop()
        if any(t.sink.pending for t in self.targets):
            for target in self.targets:
                target.sink.flush()
            self._mark()

    # ------------------------------------------------------------------ ending

    @property
    def stop_reason(self) -> str:
        """Why the sources stopped: the first live dataset's follower's (``finished``,
        ``complete``, ``timeout``)."""
        reasons = [t.iterator.follower.stop_reason for t in self.targets]
        return next((r for r in reasons if r is not None), "finished")

    def all_written(self) -> bool:
        """Whether every source finished and every frame it completed is written."""
        for target, coverage in zip(self.targets, self.coverage, strict=True):
            follower = target.iterator.follower
            if follower.stop_reason not in ("finished", "complete"):
                return False
            if coverage.prefix < follower.current_max + 1:
                return False
        return True

    @contextlib.contextmanager
    def guarded(self) -> Iterator[None]:
        """Record in the output how the run inside ended, if it did not end normally."""
        try:
            yield
        except KeyboardInterrupt:
            clear_stop()  # handled here: a later write must not stop for it
            self.state = "interrupted"
            self.finish(
                "interrupted", "interrupted", "stopped by Ctrl-C or a signal; resume to continue"
            )
            raise
        except (OSError, RuntimeError) as exc:
            message = f"the live write into {self.file.filename!r} stopped: {exc}"
            if isinstance(exc, OutputError):  # stopped before the space ran out, or the pool
                message = str(exc).rstrip(".")
            self.state = "failed"
            self.finish("failed", "error", message)
            raise OutputError(
                f"{message}. The output is valid and marked failed with "
                f"{self.output.frames_complete} complete frames. Fix: fix that cause (a full "
                "disk: free space; the source: check its writer), then resume=True (--resume)."
            ) from exc
        except BaseException as exc:
            self.state = "failed"
            self.finish("failed", "error", f"{type(exc).__name__}: {exc}")
            raise

    def end(self) -> str:
        """Record a normal end; the state (``complete`` or ``incomplete``)."""
        reason = self.stop_reason
        done = self.all_written()
        state = "complete" if done else "incomplete"
        self.finish(state, reason, "" if done else f"the source stopped: {reason}")
        self.state = state
        return state

    def finish(self, state: str, reason: str, message: str) -> None:
        """Record the end, even when the disk is full (the status has its space already),
        after cutting every live dataset to the rows of complete frames: a run that stopped
        early (one dataset written further than another) must not leave rows that the keys do
        not cover."""
        with contextlib.suppress(OSError, RuntimeError, ValueError, KeyError):
            frames = self.output.settle()  # the keys on disk, if a stop cut a mark short
            rows = -(-frames // max(math.prod(self.output.scan_inner), 1))
            for path in self.output.datasets:
                dataset = self.file[path]
                if dataset.shape[0] > rows:
                    dataset.resize(rows, axis=0)
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            self.output.finish(state, reason, message)

    def __repr__(self) -> str:
        return (
            f"<LiveWrite {os.path.basename(self.file.filename)!r} datasets={len(self.targets)} "
            f"frames_complete={self.output.frames_complete}>"
        )
