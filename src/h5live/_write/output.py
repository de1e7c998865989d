"""A destination that is itself a live source: its keys, finished flag and status.

Contract
--------
- An output written by h5live carries, next to its data, what a follower of it needs
  (h5live's layout, so that ``KeyFollower.from_path`` and swmr_tools find them):
  ``/entry/keys/key_0`` (int32, the scan's shape, fill 0, growing along the first axis unless
  the length is known; never empty: one row of zeros before the first frame) and
  ``/entry/finished`` (int32 scalar). Key ``i`` is set to 1 only after frame ``i`` of every
  data dataset is written and flushed; ``finished`` only when the copy is complete (the source
  finished, every frame copied).
- And it says how complete it is, in ``/entry/h5live`` (readable while it is written):
  ``frames_complete`` (int64), ``state`` (``writing``, ``complete``, ``incomplete``,
  ``interrupted``, ``failed``), ``stop_reason`` and ``message`` (fixed-length strings), with the
  source, the data datasets, the converter's pid and host as attributes.
- Everything is created before the file enters SWMR mode; afterwards only values change. A
  resumed output is opened as it is (``LiveOutput(file, layout)``).
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from h5live._follow.keys import flat_boxes

__all__ = ["HDF5_LAYOUT", "NWB_LAYOUT", "LiveOutput", "OutputLayout", "OutputState"]

OutputState = str  # "writing" | "complete" | "incomplete" | "interrupted" | "failed"
_TEXT = {"state": 16, "stop_reason": 16, "message": 400}


@dataclass(frozen=True)
class OutputLayout:
    """Where an output keeps its keys, finished flag and status.

    ``status`` is a prefix: ``status + "frames_complete"`` and so on. ``scratch``: each is an
    NWB ``ScratchData`` (typed, with notes), so that NWB files stay valid.
    """

    keys: str
    finished: str
    status: str
    scratch: bool = False


#: h5live's layout, which KeyFollower.from_path finds.
HDF5_LAYOUT = OutputLayout("/entry/keys/key_0", "/entry/finished", "/entry/h5live/")
#: In NWB files, in ``/scratch`` as ScratchData.
NWB_LAYOUT = OutputLayout(
    "/scratch/h5live_keys", "/scratch/h5live_finished", "/scratch/h5live_", True
)

_NOTES = {
    "keys": "h5live: 1 where the frame is written and flushed in every live dataset, else 0",
    "finished": "h5live: 1 once the conversion is complete (the source finished, all copied)",
    "frames_complete": "h5live: frames complete (written to every live dataset), from the first",
    "state": "h5live: writing, complete, incomplete, interrupted or failed",
    "stop_reason": "h5live: why the source stopped (finished, complete, timeout) or interrupted",
    "message": "h5live: what went wrong, and the fix",
}


def _text(value: str, size: int) -> Any:
    """A fixed-length string of ``size`` bytes (its dataset never changes size)."""
    return np.array(value.encode("utf-8", "replace")[:size], dtype=f"S{size}")


class LiveOutput:
    """Keys, finished flag and status of a destination written by h5live.

    Parameters
    ----------
    file
        The destination, open for writing (``libver="latest"``).
    layout
        Where the bookkeeping is (:data:`HDF5_LAYOUT` or :data:`NWB_LAYOUT`).
    """

    def __init__(self, file: Any, layout: OutputLayout) -> None:
        self.file = file
        self.layout = layout
        self.keys = file[layout.keys]
        self.finished = file[layout.finished]
        self.status = {name: file[layout.status + name] for name in ("frames_complete", *_TEXT)}
        self.scan_inner = tuple(int(n) for n in self.keys.shape[1:])
        self.frames_complete = int(self.status["frames_complete"][()])

    @classmethod
    def create(
        cls,
        file: Any,
        layout: OutputLayout,
        scan_shape: Sequence[int],
        final_rows: int | None,
        *,
        source: str,
        datasets: Sequence[str],
        source_datasets: Sequence[str] | None = None,
    ) -> LiveOutput:
        """Create the keys, flag and status in ``file`` (before it enters SWMR mode).

        ``scan_shape``: the scan's shape now (its first axis may grow); ``final_rows``: the
        length of the first axis when known. ``source``, ``datasets`` (the live datasets'
        paths) and ``source_datasets`` (theirs in the source, if not the same) are kept as
        attributes of the keys, to resume.
        """
        inner = tuple(int(n) for n in scan_shape[1:])
        # Never empty: swmr_tools 0.9's KeyFollower cannot read a key of size 0 (its argmax of
        # an empty sequence); a row of zeros says "nothing written yet" to every follower.
        rows = max(final_rows if final_rows is not None else 0, 1)
        per_row = max(math.prod(inner), 1)
        made = {
            "keys": file.create_dataset(
                layout.keys,
                shape=(rows, *inner),
                maxshape=(final_rows or None, *inner),  # none for a scan of no frames
                chunks=(max(1, min(4096 // per_row, final_rows or 4096)), *inner),
                dtype="int32",
                fillvalue=0,
            ),
            # one element, as swmr_tools reads it (``finished[0]``), storage allocated now
            "finished": file.create_dataset(layout.finished, data=np.zeros(1, np.int32)),
            "frames_complete": file.create_dataset(
                layout.status + "frames_complete", data=np.int64(0)
            ),
        }
        for name, size in _TEXT.items():
            made[name] = file.create_dataset(
                layout.status + name, data=_text("writing" if name == "state" else "", size)
            )
        if layout.scratch:
            for name, dataset in made.items():
                dataset.attrs.update(
                    neurodata_type="ScratchData",
                    namespace="core",
                    object_id=str(uuid.uuid4()),
                    notes=_NOTES[name],
                )
        made["keys"].attrs["h5live_source"] = source
        made["keys"].attrs["h5live_datasets"] = list(datasets)
        made["keys"].attrs["h5live_source_datasets"] = list(source_datasets or datasets)
        output = cls(file, layout)
        output.claim()
        return output

    # ------------------------------------------------------------------ facts

    @property
    def state(self) -> str:
        return bytes(self.status["state"][()]).decode("utf-8", "replace")

    @property
    def source(self) -> str:
        return str(self.keys.attrs["h5live_source"])

    @property
    def datasets(self) -> list[str]:
        """The live datasets' paths in the output."""
        return [str(name) for name in self.keys.attrs["h5live_datasets"]]

    @property
    def source_datasets(self) -> list[str]:
        """Their paths in the source, in the same order."""
        return [str(name) for name in self.keys.attrs["h5live_source_datasets"]]

    @property
    def writer(self) -> tuple[int, str]:
        """(pid, host) of the converter that last wrote this output."""
        return (
            int(self.keys.attrs.get("h5live_writer_pid", 0)),
            str(self.keys.attrs.get("h5live_writer_host", "")),
        )

    def writer_alive(self) -> int | None:
        """The pid of another converter still writing this output on this host, or None."""
        pid = int(self.keys.attrs.get("h5live_writer_pid", 0))
        host = str(self.keys.attrs.get("h5live_writer_host", ""))
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
        self.keys.attrs["h5live_writer_pid"] = os.getpid()
        self.keys.attrs["h5live_writer_host"] = socket.gethostname()

    # ------------------------------------------------------------------ progress

    def mark(self, frames: int, data: Sequence[Any] | None) -> None:
        """Frames ``0 .. frames - 1`` of every dataset in ``data`` are written: flush them
        (``None``: the whole file), then set their keys, then the count."""
        if frames <= self.frames_complete:
            return
        if data is None:
            self.file.flush()
        for dataset in data or ():
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

    def settle(self) -> int:
        """Make the count agree with the keys on disk and return it. A stop that lands inside
        :meth:`mark` (a signal raises anywhere) can leave keys set, for flushed frames, ahead of
        the count; the keys are the truth."""
        keyed = frames_keyed(self.keys)
        if keyed > int(self.status["frames_complete"][()]):
            self.frames_complete = keyed
            self.status["frames_complete"][()] = keyed
            self.status["frames_complete"].flush()
        return max(keyed, self.frames_complete)

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
