"""A simulated multi-file acquisition: detector files written by their own processes, and a
master file, written by another, that stitches them together as beamlines do.

Contract
--------
- ``files`` detector files ``<stem>_000001.h5``, ... sit beside the master ``<stem>.h5``. Each is
  written by its own :class:`~h5live.testing.WriterProcess` in SWMR mode, in the simulated
  detector's layout (``/entry/data/data``, unique-id keys ``/entry/keys/key_0`` of
  ``key_dtype``, ``/entry/finished``, ``/entry/flush_time`` with ``timestamps``).
- ``layout="vds"`` (Odin's frame processors with a NeXus master): the scan's frames are dealt out
  in blocks of ``block`` frames to the files in turn; the master holds virtual datasets (VDS)
  that interleave them back, as fastcs-odin's ``_generate_vds.py`` does with
  ``h5py.MultiBlockSlice``: bounded over fixed-size files when ``presized``, else unlimited over
  growing ones. ``/entry/<detector>/data`` holds the frames, ``/entry/keys/uid`` the unique ids
  (and ``/entry/<detector>/flush_time`` the flush times), so the master follows the h5live
  layout (``/entry/keys``, ``/entry/finished``).
- ``layout="links"`` (GDA's master): every file is a detector of its own recording the whole
  scan (detector ``j``'s frames hold ``frame_values(i + j * n_frames)``); the master holds
  external links ``/entry/<detector>_<j>/data`` to each file's frames and keeps its keys as
  external links to each file's unique ids, in Diamond's layout
  (``/entry/diamond_scan/keys/<detector>_<j>``, ``/entry/diamond_scan/scan_finished``).
- The master's own process creates it before the detector files exist (VDS and external links
  may point to files not created yet), switches SWMR mode on, then sets its finished flag once
  every detector file has set its own: a follower of the master that sees the flag has seen
  every key.
- :class:`MultiFileAcquisition` starts the master's process and then the detectors', and ends
  every one of them on :meth:`~MultiFileAcquisition.close`. Tests own one through a fixture.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import h5py
import numpy as np

from h5live._closing import ClosingContext
from h5live.testing._process import WriterProcess, read_line
from h5live.testing._writer import SimulatedWriter, WriterConfig

__all__ = [
    "AcquisitionConfig",
    "MultiFileAcquisition",
    "MultiFileLayout",
    "create_master",
    "detector_paths",
    "main",
    "run_master",
    "simulate_acquisition",
    "write_acquisition",
]

MultiFileLayout = Literal["vds", "links"]

#: Paths inside each detector file (the simulated detector's defaults).
_DETECTOR_DATA = "/entry/data/data"
_DETECTOR_KEY = "/entry/keys/key_0"
_DETECTOR_FINISHED = "/entry/finished"
_DETECTOR_TIMES = "/entry/flush_time"


@dataclass(frozen=True)
class AcquisitionConfig:
    """What a multi-file acquisition writes.

    Parameters
    ----------
    files
        Detector files, each written by its own process.
    layout
        ``"vds"``: a master of virtual datasets interleaving the files' frames in blocks;
        ``"links"``: a master of external links to detectors that each record the whole scan.
    block
        Frames per block dealt out to each file in turn (``"vds"``).
    scan_shape, frame_shape, dtype, presized, frame_rate_hz, flush_every
        As for :class:`~h5live.testing.WriterConfig`, for the whole scan (``frame_rate_hz``: of
        the acquisition, not of one file). ``"vds"`` needs a stack (``scan_shape`` ``(n,)``).
    compression, timestamps, hold_at
        As for :class:`~h5live.testing.WriterConfig`.
    key_dtype
        Dtype of the unique-id keys (Odin and pymalcolm write ``uint64``).
    detector
        The detector's name in the master's paths.
    """

    files: int = 2
    layout: MultiFileLayout = "vds"
    block: int = 10
    scan_shape: tuple[int, ...] = (100,)
    frame_shape: tuple[int, ...] = (8, 8)
    dtype: str = "uint16"
    presized: bool = False
    frame_rate_hz: float | None = None
    flush_every: int = 1
    compression: str | None = None
    timestamps: bool = False
    hold_at: int | None = None
    key_dtype: str = "uint64"
    detector: str = "detector"

    def __post_init__(self) -> None:
        if not 1 <= self.files <= 16:
            raise ValueError(f"files must be 1 to 16, got {self.files!r}")
        if self.layout not in ("vds", "links"):
            raise ValueError(f"layout must be 'vds' or 'links', got {self.layout!r}")
        if self.block < 1:
            raise ValueError(f"block must be >= 1, got {self.block!r}")
        if self.layout == "vds" and len(self.scan_shape) != 1:
            raise ValueError(
                f"layout 'vds' interleaves a stack, so scan_shape must be (n,), got "
                f"{self.scan_shape!r}. Fix: give one scan dim (--scan N), or use layout 'links' "
                "(--layout links) for a grid scan"
            )
        if not self.detector or "/" in self.detector:
            raise ValueError(f"detector must be a name without '/', got {self.detector!r}")

    @classmethod
    def of(cls, config: AcquisitionConfig | None = None, **overrides: Any) -> AcquisitionConfig:
        """``config`` (default: all defaults) with some fields replaced."""
        base = config if config is not None else cls()
        return dataclasses.replace(base, **overrides) if overrides else base

    @property
    def n_frames(self) -> int:
        """Frames in the whole scan."""
        return math.prod(self.scan_shape)

    # ------------------------------------------------------------------ the master's paths

    @property
    def keys_group(self) -> str:
        """The master's key group (a known layout, so h5live finds it without options)."""
        return "/entry/keys" if self.layout == "vds" else "/entry/diamond_scan/keys"

    @property
    def finished_path(self) -> str:
        """The master's finished flag, set by the master's process."""
        return "/entry/finished" if self.layout == "vds" else "/entry/diamond_scan/scan_finished"

    @property
    def data_paths(self) -> list[str]:
        """Where the master shows the frames: one VDS, or one link per detector file."""
        if self.layout == "vds":
            return [f"/entry/{self.detector}/data"]
        return [f"/entry/{self.detector}_{j}/data" for j in range(self.files)]

    @property
    def key_paths(self) -> list[str]:
        """The master's key datasets: one VDS of unique ids, or one link per detector file."""
        if self.layout == "vds":
            return [f"{self.keys_group}/uid"]
        return [f"{self.keys_group}/{self.detector}_{j}" for j in range(self.files)]

    @property
    def timestamp_paths(self) -> list[str]:
        """Where the master shows the flush times (``timestamps``), beside the frames."""
        if not self.timestamps:
            return []
        return [path.rsplit("/", 1)[0] + "/flush_time" for path in self.data_paths]

    # ------------------------------------------------------------------ the detector files

    def frames_in(self, part: int) -> int:
        """Frames detector file ``part`` holds."""
        if self.layout == "links":
            return self.n_frames
        cycles, rest = divmod(self.n_frames, self.block * self.files)
        return cycles * self.block + min(max(rest - part * self.block, 0), self.block)

    def detector_config(self, part: int) -> WriterConfig:
        """What the process of detector file ``part`` writes."""
        vds = self.layout == "vds"
        return WriterConfig(
            scan_shape=(self.frames_in(part),) if vds else self.scan_shape,
            frame_shape=self.frame_shape,
            dtype=self.dtype,
            presized=self.presized,
            frame_rate_hz=self.frame_rate_hz,
            flush_every=self.flush_every,
            compression=self.compression,
            timestamps=self.timestamps,
            hold_at=self.hold_at,
            key_dtype=self.key_dtype,
            interleave=(self.files, self.block, part) if vds else None,
            value_offset=0 if vds else part * self.n_frames,
            seed=part,
        )

    def to_json(self) -> str:
        """Serialise, for the master's process."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AcquisitionConfig:
        """Inverse of :meth:`to_json`."""
        raw: dict[str, Any] = json.loads(text)
        raw["scan_shape"] = tuple(raw["scan_shape"])
        raw["frame_shape"] = tuple(raw["frame_shape"])
        return cls(**raw)


def detector_paths(master: str | os.PathLike[str], files: int) -> list[str]:
    """The detector files of a master ``<stem>.h5``: ``<stem>_000001.h5``, ... beside it."""
    path = Path(master)
    return [os.fspath(path.with_name(f"{path.stem}_{j + 1:06d}.h5")) for j in range(files)]


# ---------------------------------------------------------------------- writing the master


def _virtual(
    group: Any,
    name: str,
    config: AcquisitionConfig,
    sources: Sequence[str],
    source_path: str,
    frame: tuple[int, ...],
    dtype: str,
    fill: Any,
) -> None:
    """A VDS interleaving ``source_path`` of each file in ``sources`` (names relative to the
    master's folder) in blocks: bounded over fixed-size files, or unlimited over growing ones.

    h5py's ``VirtualLayout`` cannot make an unlimited interleaved mapping (its selection needs
    a finite extent), so the mappings are made with the low-level API, as HDF5's own examples.
    """
    unlimited = h5py.h5s.UNLIMITED
    n, block, files = config.n_frames, config.block, config.files
    zeros, ones = (0,) * len(frame), (1,) * len(frame)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.VIRTUAL)
    dcpl.set_fill_value(np.array(fill, dtype=dtype))
    if config.presized:
        space = h5py.h5s.create_simple((n, *frame))
    else:
        space = h5py.h5s.create_simple((0, *frame), (unlimited, *frame))
    for part, source in enumerate(sources):
        size = config.frames_in(part)
        if config.presized:
            whole = size // block
            mappings = []
            if whole:  # whole blocks, every files-th block of the scan
                mappings.append(((block * part, whole, block * files, block), (0, whole * block)))
            if size % block:  # the scan's last, short block
                first = config.detector_config(part).interleaved_index(whole * block)
                mappings.append(((first, 1, 1, size % block), (whole * block, size % block)))
            for (start, count, stride, rows), (src_start, src_rows) in mappings:
                virtual = h5py.h5s.create_simple((n, *frame))
                virtual.select_hyperslab(
                    (start, *zeros), (count, *ones), (stride, *ones), (rows, *frame)
                )
                stored = h5py.h5s.create_simple((size, *frame))
                stored.select_hyperslab((src_start, *zeros), (1, *ones), None, (src_rows, *frame))
                dcpl.set_virtual(virtual, source.encode(), source_path.encode(), stored)
        else:
            virtual = h5py.h5s.create_simple((0, *frame), (unlimited, *frame))
            virtual.select_hyperslab(
                (block * part, *zeros), (unlimited, *ones), (block * files, *ones), (block, *frame)
            )
            stored = h5py.h5s.create_simple((0, *frame), (unlimited, *frame))
            stored.select_hyperslab((0, *zeros), (1, *ones), None, (unlimited, *frame))
            dcpl.set_virtual(virtual, source.encode(), source_path.encode(), stored)
    kind = h5py.h5t.py_create(np.dtype(dtype))
    h5py.h5d.create(group.id, name.encode(), kind, space, dcpl=dcpl)


def create_master(path: str | os.PathLike[str], config: AcquisitionConfig) -> Any:
    """Create the master file (detector files need not exist yet), with its finished flag at 0,
    and switch SWMR mode on; return it open."""
    names = [os.path.basename(p) for p in detector_paths(path, config.files)]
    f = h5py.File(path, "w", libver="latest")
    f.require_group("/entry").attrs["NX_class"] = "NXentry"
    if config.layout == "vds":
        datasets: list[tuple[str, str, tuple[int, ...], str, float]] = [
            (config.data_paths[0], _DETECTOR_DATA, config.frame_shape, config.dtype, 0)
        ]
        datasets.append((config.key_paths[0], _DETECTOR_KEY, (), config.key_dtype, 0))
        if config.timestamps:
            datasets.append((config.timestamp_paths[0], _DETECTOR_TIMES, (), "f8", np.nan))
        for master_path, source_path, frame, dtype, fill in datasets:
            parent, name = master_path.rsplit("/", 1)
            group = f.require_group(parent)
            _virtual(group, name, config, names, source_path, tuple(frame), dtype, fill)
        f[config.data_paths[0].rsplit("/", 1)[0]].attrs["NX_class"] = "NXdata"
    else:
        for j, name in enumerate(names):
            f[config.data_paths[j]] = h5py.ExternalLink(name, _DETECTOR_DATA)
            f[config.key_paths[j]] = h5py.ExternalLink(name, _DETECTOR_KEY)
            if config.timestamps:
                f[config.timestamp_paths[j]] = h5py.ExternalLink(name, _DETECTOR_TIMES)
            f[config.data_paths[j].rsplit("/", 1)[0]].attrs["NX_class"] = "NXdata"
    # written now, so that its storage exists before SWMR starts (HDF5 issue 5251)
    f.create_dataset(config.finished_path, data=np.int32(0))
    f.swmr_mode = True
    return f


def _detector_finished(path: str) -> bool:
    """Whether a detector file has set its finished flag (False while it cannot be read)."""
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            return bool(f[_DETECTOR_FINISHED][()])
    except (OSError, KeyError):
        return False


def run_master(
    path: str | os.PathLike[str], config: AcquisitionConfig, *, poll_s: float = 0.01
) -> dict[str, Any]:
    """Write the master: create it, then set its finished flag once every detector file has
    set its own (each read in SWMR mode, reopened per poll so that a file created late is
    seen). Prints ``READY`` once the master is in SWMR mode."""
    master = create_master(path, config)
    print("READY", flush=True)
    start = time.perf_counter()
    waiting = detector_paths(path, config.files)
    try:
        while waiting:
            waiting = [p for p in waiting if not _detector_finished(p)]
            if waiting:
                time.sleep(poll_s)
        master[config.finished_path][()] = 1
        master[config.finished_path].id.flush()
    finally:
        master.close()
    return {"frames": config.n_frames, "elapsed_s": time.perf_counter() - start}


def write_acquisition(
    path: str | os.PathLike[str], config: AcquisitionConfig | None = None, **overrides: Any
) -> AcquisitionConfig:
    """Write a whole multi-file acquisition in this process, finished: the master, then each
    detector file, then the master's finished flag (for tests of complete files, and to
    compare with live ones). Returns the configuration written."""
    chosen = AcquisitionConfig.of(config, **overrides)
    if chosen.hold_at is not None:
        chosen = dataclasses.replace(chosen, hold_at=None)
    master = create_master(path, dataclasses.replace(chosen, frame_rate_hz=None))
    try:
        for part, detector in enumerate(detector_paths(path, chosen.files)):
            writer_config = dataclasses.replace(chosen.detector_config(part), frame_rate_hz=None)
            with SimulatedWriter(detector, writer_config) as writer:
                writer.run()
        master[chosen.finished_path][()] = 1
    finally:
        master.close()
    return chosen


# ---------------------------------------------------------------------- the processes


class _MasterProcess(ClosingContext):
    """The master's writer in another process (``python -m h5live.testing._multifile``)."""

    def __init__(self, path: str, config: AcquisitionConfig) -> None:
        self.path = path
        self.config = config
        self.summary: dict[str, Any] | None = None
        self.stderr = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_file: IO[bytes] | None = None

    def start(self, ready_timeout_s: float) -> None:
        command = [sys.executable, "-m", "h5live.testing._multifile", self.path]
        command += ["--config", self.config.to_json()]
        self._stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._stderr_file, bufsize=0
        )
        line = read_line(self._proc, ready_timeout_s)
        if line.strip() != "READY":
            self.close()
            raise RuntimeError(
                f"the master writer of {self.path!r} did not start (got {line!r}): {self.stderr}"
            )

    def wait(self, timeout_s: float | None) -> int:
        if self._proc is None:
            raise RuntimeError("the master writer is not started")
        out, _ = self._proc.communicate(timeout=timeout_s)
        lines = [line for line in out.decode().splitlines() if line.startswith("{")]
        if lines:
            self.summary = json.loads(lines[-1])
        if self._proc.returncode != 0:
            raise RuntimeError(
                f"the master writer of {self.path!r} failed with exit code "
                f"{self._proc.returncode}:\n{self._collect_stderr()}"
            )
        return 0

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _collect_stderr(self) -> str:
        if self._stderr_file is not None:
            self._stderr_file.seek(0)
            self.stderr = self._stderr_file.read().decode(errors="replace")
        return self.stderr

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc.wait()
        if self._stderr_file is not None:
            self._collect_stderr()
            self._stderr_file.close()
            self._stderr_file = None

    def __repr__(self) -> str:
        rc = None if self._proc is None else self._proc.poll()
        return f"<master writer {os.path.basename(self.path)!r} pid={self.pid} rc={rc}>"


class MultiFileAcquisition(ClosingContext):
    """A master file and its detector files, each written by its own process.

    Parameters
    ----------
    path
        The master file (``<stem>.h5``); detector files are written beside it.
    config
        What to write; keyword arguments override its fields.

    Attributes
    ----------
    detector_paths : list of str
        The detector files, in order.
    detectors : list of WriterProcess
        Their writer processes (started by :meth:`start`).

    Examples
    --------
    >>> with MultiFileAcquisition("scan.h5", files=2, layout="vds") as acq:  # doctest: +SKIP
    ...     acq.start()  # the master, then one process per detector file
    ...     with h5live.KeyFollower.from_path("scan.h5") as follower:
    ...         frames = list(follower)
    ...     acq.wait()
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: AcquisitionConfig | None = None,
        **overrides: Any,
    ) -> None:
        self.config = AcquisitionConfig.of(config, **overrides)
        self.path = os.fspath(path)
        self.detector_paths = detector_paths(self.path, self.config.files)
        self.detectors: list[WriterProcess] = []
        self.summary: dict[str, Any] | None = None
        self._master: _MasterProcess | None = None

    @property
    def pids(self) -> list[int]:
        """Process ids of the master's writer and the detectors' writers started so far."""
        procs = [self._master, *self.detectors]
        return [p.pid for p in procs if p is not None and p.pid is not None]

    def start(self, *, ready_timeout_s: float = 60.0) -> MultiFileAcquisition:
        """Start the master's writer (the master is then in SWMR mode), then one writer per
        detector file (each returns once its file is in SWMR mode).

        Raises
        ------
        RuntimeError
            A writer did not start; every process started so far is ended.
        """
        try:
            self._master = _MasterProcess(self.path, self.config)
            self._master.start(ready_timeout_s)
            for part, path in enumerate(self.detector_paths):
                writer = WriterProcess(path, self.config.detector_config(part))
                self.detectors.append(writer)
                writer.start(ready_timeout_s=ready_timeout_s)
        except BaseException:
            self.close()
            raise
        return self

    def go(self) -> None:
        """Let detector writers that pause at ``hold_at`` go on."""
        for writer in self.detectors:
            writer.go()

    def wait(self, timeout_s: float | None = 120.0) -> dict[str, Any]:
        """Wait for every writer to end; return a summary of the acquisition.

        Returns
        -------
        dict
            ``frames`` of the scan, ``files``, the slowest detector's ``elapsed_s``, the
            acquisition's ``rate_hz``, and each detector's own summary (``detectors``).

        Raises
        ------
        RuntimeError
            A writer failed, with its stderr.
        """
        if self._master is None:
            raise RuntimeError("the acquisition is not started")
        for writer in self.detectors:
            writer.wait(timeout_s)
        self._master.wait(timeout_s)
        summaries = [w.summary or {} for w in self.detectors]
        elapsed = max((s.get("elapsed_s", 0.0) for s in summaries), default=0.0)
        n = self.config.n_frames
        self.summary = {
            "frames": n,
            "files": len(self.detectors),
            "layout": self.config.layout,
            "elapsed_s": elapsed,
            "rate_hz": n / elapsed if elapsed > 0 else math.inf,
            "crashed": any(s.get("crashed", False) for s in summaries),
            "detectors": summaries,
        }
        return self.summary

    def close(self) -> None:
        """Kill every writer still running and release its pipes (idempotent)."""
        for writer in self.detectors:
            writer.close()
        if self._master is not None:
            self._master.close()

    def __repr__(self) -> str:
        running = [p for p in self.detectors if p.returncode is None and p.pid is not None]
        return (
            f"<MultiFileAcquisition {os.path.basename(self.path)!r} layout="
            f"{self.config.layout!r} files={self.config.files} running={len(running)}>"
        )


def simulate_acquisition(
    path: str | os.PathLike[str], config: AcquisitionConfig | None = None, **overrides: Any
) -> dict[str, Any]:
    """Run a whole multi-file acquisition (``h5live simulate --files N``): the master's writer
    and one writer process per detector file; return its summary (frames, files, master and
    detector paths, elapsed time, rate)."""
    with MultiFileAcquisition(path, config, **overrides) as acquisition:
        acquisition.start()
        summary = acquisition.wait(timeout_s=None)
    return {
        "frames": summary["frames"],
        "layout": summary["layout"],
        "master": acquisition.path,
        "files": acquisition.detector_paths,
        "elapsed_s": summary["elapsed_s"],
        "rate_hz": summary["rate_hz"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the master's writer: ``python -m h5live.testing._multifile PATH --config
    JSON``; prints ``READY``, then the summary as JSON."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m h5live.testing._multifile")
    parser.add_argument("path")
    parser.add_argument("--config", default="{}", help="AcquisitionConfig as JSON")
    args = parser.parse_args(argv)
    config = (
        AcquisitionConfig.from_json(args.config) if args.config != "{}" else AcquisitionConfig()
    )
    summary = run_master(args.path, config)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
