"""Test helpers that are not fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
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

    from h5live._write.output import HDF5_LAYOUT

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


H5LIVE = [sys.executable, "-m", "h5live"]
# The idle timeout (s) that ends conversions of writers that crash or stop without the finished
# flag: long enough that a writer paused by a busy machine is not taken for one that stopped.
IDLE_S = 2.0
PROGRAMS = Path(__file__).parent / "programs"


def wait_for_frames(
    path: Path,
    frames: int,
    process: subprocess.Popen[str] | None = None,
    layout: Any = None,
    data: str = "/entry/data/data",
) -> int:
    """Until the output at ``path`` exists and says ``frames`` frames are complete.

    Waits as long as the count advances (a busy machine is slow, not stalled); fails when it
    stalls, or at once when the converter ``process`` has ended first, with its stderr.
    """
    from h5live.testing import wait_for_progress

    def frames_complete() -> int | None:
        return int(output_status(path, layout, data)["frames"]) if path.exists() else None

    return wait_for_progress(
        frames_complete, frames, what=f"frames complete in {path.name}", process=process
    )


def start_converter(
    spawn: Callable[..., subprocess.Popen[str]],
    command: str,
    source: str | Path,
    destination: Path,
    *args: str,
    layout: Any = None,
    data: str = "/entry/data/data",
) -> subprocess.Popen[str]:
    """``h5live COMMAND SOURCE DESTINATION`` in another process owned by ``spawn`` (so that a
    test can follow, read or kill it, and a failing test still ends it); unless resuming, it
    returns once the output exists and can be followed."""
    process = spawn(
        [*H5LIVE, command, str(source), str(destination), "--no-progress", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if "--resume" not in args:
        wait_for_frames(destination, 0, process, layout, data)
    return process


def ended(process: subprocess.Popen[str], timeout_s: float = 120) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of a process, its pipes closed."""
    out, err = process.communicate(timeout=timeout_s)
    return process.returncode, out, err


def converter_report(process: subprocess.Popen[str], path: Path) -> str:
    """What a converter and its output say, for the message of a failed assertion."""
    code = process.poll()
    try:
        status: object = output_status(path)
    except (OSError, KeyError) as exc:
        status = f"unreadable ({exc})"
    err = ended(process, 10)[2][-2000:] if code is not None else ""
    state = "still running" if code is None else f"exited with {code}, stderr {err!r}"
    return f"the converter is {state}; its output says {status}"


class OutputReaders:
    """Two readers of an h5live output during its resume: a process that holds it open for
    SWMR reading (it holds HDF5's file lock, which must not block the resume) and
    ``h5live follow``. :meth:`check` says whether both saw every frame once it is done."""

    def __init__(
        self, spawn: Callable[..., subprocess.Popen[str]], path: Path, status: str, frames: int
    ) -> None:
        self.frames = frames
        self.holder = spawn(
            [sys.executable, str(PROGRAMS / "hold_open.py"), str(path), status, str(frames)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None
        assert self.holder.stdout.readline() == "open\n"
        self.follower = spawn(
            [*H5LIVE, "follow", str(path), "--timeout", "60", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def check(self) -> None:
        """Once the output is complete: the holder saw every frame, and so did the follower."""
        looks, _ = self.holder.communicate("\n" * 1000, timeout=120)
        assert looks.strip() == str(self.frames)  # the reader that held the file open
        summary, err = self.follower.communicate(timeout=120)
        assert self.follower.returncode == 0, err
        followed = json.loads(summary)
        assert (followed["frames"], followed["stop_reason"]) == (self.frames, "finished")


class Background:
    """A call run in a thread (a conversion or write blocks until its sources finish);
    ``join`` re-raises what it raised."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            call()
        except BaseException as exc:  # re-raised in the test's thread
            self.error = exc

    def join(self, timeout_s: float = 240.0) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the call in the background did not end"
        if self.error is not None:
            raise self.error


def compound_source(path: Path) -> Path:
    """A finished source of 6 frames of compound values (a structured dtype), keys all set."""
    import h5py

    with h5py.File(path, "w", libver="latest") as f:
        compound = np.zeros(6, [("a", "i4"), ("b", "f8")])
        f.create_dataset("/entry/data/data", data=compound, maxshape=(None,))
        f.create_dataset("/entry/keys/key_0", data=np.ones(6, "i4"), maxshape=(None,))
        f.create_dataset("/entry/finished", data=1)
    return path


def assert_valid_nwb(path: Path) -> None:
    """pynwb.validate passes, and nwbinspector finds nothing CRITICAL (or worse)."""
    import pynwb
    from nwbinspector import inspect_nwbfile

    assert pynwb.validate(path=str(path)) == []
    findings = [
        f"{m.importance.name} {m.check_function_name} at {m.location}: {m.message}"
        for m in inspect_nwbfile(path, skip_validate=True, importance_threshold="CRITICAL")
    ]
    assert findings == []
