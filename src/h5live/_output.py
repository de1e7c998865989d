"""A destination that is itself a live source: its keys, finished flag and status.

Contract
--------
- An output written by h5live carries, next to its data, what a follower of it needs
  (h5live's layout, so that ``KeyFollower.from_path`` and swmr_tools find them):
  ``/entry/keys/key_0`` (int32, the scan's shape, fill 0, growing along the first axis unless
  the length is known) and ``/entry/finished`` (int32 scalar). Key ``i`` is set to 1 only after
  frame ``i`` of every data dataset is written and flushed; ``finished`` only when the copy is
  complete (the source finished, every frame copied).
- And it says how complete it is, in ``/entry/h5live`` (readable while it is written):
  ``frames_complete`` (int64), ``state`` (``writing``, ``complete``, ``incomplete``,
  ``interrupted``, ``failed``), ``stop_reason`` and ``message`` (fixed-length strings), with the
  source, the data datasets, the converter's pid and host as attributes.
- Everything is created before the file enters SWMR mode; afterwards only values change. A
  resumed output is attached to as it is (:meth:`LiveOutput.attach`).
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Sequence
from typing import Any

import numpy as np

from h5live._keys import flat_boxes

__all__ = ["FINISHED_PATH", "KEY_PATH", "STATUS_PATH", "LiveOutput", "OutputState"]

KEY_PATH = "/entry/keys/key_0"
FINISHED_PATH = "/entry/finished"
STATUS_PATH = "/entry/h5live"

OutputState = str  # "writing" | "complete" | "incomplete" | "interrupted" | "failed"
_TEXT = {"state": 16, "stop_reason": 16, "message": 400}


def _text(value: str, size: int) -> Any:
    """A fixed-length string of ``size`` bytes (its dataset never changes size)."""
    return np.array(value.encode("utf-8", "replace")[:size], dtype=f"S{size}")


class LiveOutput:
    """Keys, finished flag and status of a destination written by h5live.

    Parameters
    ----------
    file
        The destination, open for writing (``libver="latest"``).
    keys, finished, status
        Its key dataset, finished dataset and status group.
    """

    def __init__(self, file: Any, keys: Any, finished: Any, status: Any) -> None:
        self.file = file
        self.keys = keys
        self.finished = finished
        self.status = status
        self.scan_inner = tuple(int(n) for n in keys.shape[1:])
        self.frames_complete = int(status["frames_complete"][()])

    @classmethod
    def create(
        cls,
        file: Any,
        scan_shape: Sequence[int],
        final_rows: int | None,
        *,
        source: str,
        datasets: Sequence[str],
    ) -> LiveOutput:
        """Create the keys, flag and status in ``file`` (before it enters SWMR mode).

        ``scan_shape``: the scan's shape now (its first axis may grow); ``final_rows``: the
        length of the first axis when known.
        """
        inner = tuple(int(n) for n in scan_shape[1:])
        rows = final_rows if final_rows is not None else 0
        per_row = max(math.prod(inner), 1)
        keys = file.create_dataset(
            KEY_PATH,
            shape=(rows, *inner),
            maxshape=(final_rows, *inner),
            chunks=(max(1, min(4096 // per_row, final_rows or 4096)), *inner),
            dtype="int32",
            fillvalue=0,
        )
        # one element, as swmr_tools reads it (``finished[0]``), storage allocated now
        finished = file.create_dataset(FINISHED_PATH, data=np.zeros(1, np.int32))
        status = file.require_group(STATUS_PATH)
        status.create_dataset("frames_complete", data=np.int64(0))
        for name, size in _TEXT.items():
            status.create_dataset(name, data=_text("writing" if name == "state" else "", size))
        status.attrs["source"] = source
        status.attrs["datasets"] = list(datasets)
        output = cls(file, keys, finished, status)
        output.claim()
        return output

    @classmethod
    def attach(cls, file: Any) -> LiveOutput:
        """The bookkeeping of an existing h5live output (to resume it).

        Raises
        ------
        KeyError
            ``file`` was not written by h5live (no status group).
        """
        status = file[STATUS_PATH]
        return cls(file, file[KEY_PATH], file[FINISHED_PATH], status)

    # ------------------------------------------------------------------ facts

    @property
    def state(self) -> str:
        return bytes(self.status["state"][()]).decode("utf-8", "replace")

    @property
    def source(self) -> str:
        return str(self.status.attrs["source"])

    @property
    def datasets(self) -> list[str]:
        return [str(name) for name in self.status.attrs["datasets"]]

    def writer_alive(self) -> int | None:
        """The pid of another converter still writing this output on this host, or None."""
        pid = int(self.status.attrs.get("writer_pid", 0))
        host = str(self.status.attrs.get("writer_host", ""))
        if not pid or pid == os.getpid() or host != socket.gethostname():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def claim(self) -> None:
        """Record this process as the output's writer (before SWMR mode)."""
        self.status.attrs["writer_pid"] = os.getpid()
        self.status.attrs["writer_host"] = socket.gethostname()

    # ------------------------------------------------------------------ progress

    def mark(self, frames: int, data: Sequence[Any]) -> None:
        """Frames ``0 .. frames - 1`` of every dataset in ``data`` are written: flush them,
        then set their keys, then the count."""
        if frames <= self.frames_complete:
            return
        for dataset in data:
            dataset.flush()
        per_row = max(math.prod(self.scan_inner), 1)
        rows = -(-frames // per_row)
        if self.keys.shape[0] < rows:
            self.keys.resize(rows, axis=0)
        scan = (self.keys.shape[0], *self.scan_inner)
        for box in flat_boxes(self.frames_complete, frames, scan):
            self.keys[box] = 1
        self.keys.flush()
        self.frames_complete = frames
        self.status["frames_complete"][()] = frames
        self.status["frames_complete"].flush()

    def finish(self, state: OutputState, stop_reason: str, message: str = "") -> None:
        """Record how the copy ended; set the finished flag if it is complete."""
        self.status["stop_reason"][()] = _text(stop_reason, _TEXT["stop_reason"])
        self.status["message"][()] = _text(message, _TEXT["message"])
        self.status["state"][()] = _text(state, _TEXT["state"])
        for name in _TEXT:
            self.status[name].flush()
        if state == "complete":
            self.finished[0] = 1
            self.finished.flush()
        self.file.flush()

    def reopen(self, state: OutputState = "writing") -> None:
        """Mark a resumed output as being written again."""
        self.status["state"][()] = _text(state, _TEXT["state"])
        self.status["stop_reason"][()] = _text("", _TEXT["stop_reason"])
        self.status["message"][()] = _text("", _TEXT["message"])
        self.finished[0] = 0
        self.file.flush()


def frames_keyed(keys: Any) -> int:
    """Frames whose keys are set, from the first on (a prefix), in C order over the scan."""
    flat = np.asarray(keys[...]).reshape(-1)
    unset = np.flatnonzero(flat == 0)
    return int(unset[0]) if unset.size else int(flat.size)
