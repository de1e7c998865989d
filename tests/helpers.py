"""Test helpers that are not fixtures."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


class RecordingDataset:
    """A dataset-like wrapper that counts the key entries read through it.

    It is also a check that the follower accepts duck-typed datasets (``maxshape``, ``shape``,
    ``__getitem__``, optional ``refresh``), as swmr_tools does. Live behaviour still comes from
    the real h5py dataset underneath.
    """

    def __init__(
        self,
        dataset: Any,
        before_read: Callable[[], None] | None = None,
        on_read: Callable[[], None] | None = None,
    ) -> None:
        self.dataset = dataset
        self.before_read = before_read  # once, before the first read
        self.on_read = on_read  # before every read
        self.reads: list[int] = []

    def __getattr__(self, name: str) -> Any:  # maxshape, shape, chunks, dtype, name, file
        return getattr(self.dataset, name)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.shape)

    def refresh(self) -> None:
        self.dataset.refresh()

    def __getitem__(self, selection: Any) -> Any:
        if self.before_read is not None:
            action, self.before_read = self.before_read, None
            action()
        if self.on_read is not None:
            self.on_read()
        values = self.dataset[selection]
        self.reads.append(int(np.size(values)))
        return values


def run_script(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a Python script as a user would, in a fresh interpreter, and capture its output."""
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def output_status(path: Path, layout: Any = None, data: str = "/entry/data/data") -> dict[str, Any]:
    """How complete an h5live output says it is (``layout``: HDF5_LAYOUT by default), and how
    many rows its data dataset holds."""
    import h5py

    from h5live._output import HDF5_LAYOUT

    layout = layout or HDF5_LAYOUT
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        return {
            "frames": int(f[layout.status + "frames_complete"][()]),
            "state": f[layout.status + "state"][()].decode(),
            "stop_reason": f[layout.status + "stop_reason"][()].decode(),
            "keys": int(np.count_nonzero(f[layout.keys][...])),
            "finished": int(f[layout.finished][0]),
            "data": f[data].shape[0],
        }
