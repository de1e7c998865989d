"""LiveHDF5Interface: a neuroconv DataInterface over a file another process writes (SWMR).

Contract
--------
- ``__init__`` opens the source for SWMR reading (waiting up to ``timeout`` for the writer to
  create it), learns what it holds and closes it again. Every bad input is refused there, long
  before an NWB file exists: a missing source, a dataset that is not there, a grid scan (an NWB
  series has one time axis), no timing (no ``rate``, and no timestamp dataset given or found).
- ``get_metadata()`` says what the source knows, in neuroconv's dict format: under
  ``metadata["LiveHDF5"][key]`` the series (name, type, description, unit, and its timing: a
  rate, or the source's timestamp dataset and the time its values count from), a device under
  ``metadata["Devices"][key]`` for the series types that link one, and
  ``metadata["NWBFile"]["session_start_time"]`` if the source records one (a ``start_time``
  dataset or attribute of the root or a top-level group, or the root's ``file_time``, as NeXus
  files do). ``key`` is :attr:`LiveHDF5Interface.metadata_key`, the default series name.
- ``add_to_nwbfile()`` opens the source again (a session, kept until :meth:`close` or the next
  ``add_to_nwbfile``) and adds the series with :class:`h5live.LiveDataChunkIterator` data, and
  timestamps as a second iterator sharing the frames' follower; both are bare iterators, so a
  backend configuration sets their chunks, buffers and compression. Timestamps are written
  relative to the NWBFile's ``timestamps_reference_time`` (the source's values are shifted by
  the difference of the two reference times).
- ``run_conversion()`` is neuroconv's, with its checks and metadata validation, but the new
  file is configured and written by :func:`h5live.neuroconv.configure_and_write_nwbfile`:
  a live source of unknown length works with the default configuration, an edited one is
  followed (chunks, buffers, compression), and all live datasets are written round-robin.
  The session is closed at the end.
- In a ``ConverterPipe``/``NWBConverter``, neuroconv calls only ``add_to_nwbfile``; write the
  NWBFile it makes with :func:`h5live.neuroconv.configure_and_write_nwbfile`, or use
  :class:`h5live.neuroconv.LiveConverterPipe`. One interface per source file: two followers of
  one file in one process would open its keys twice.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from neuroconv import BaseDataInterface
from neuroconv.utils import DeepDict
from pydantic import validate_call

from h5live._iterate.iterator import LiveDataChunkIterator
from h5live._stages import Stage
from h5live._write.conversion import Conversion, LiveOptions
from h5live._write.nwb import (
    _EPOCH,
    _largest,
    _series,
    _start_time,
    _timestamps_path,
    check_one_time_axis,
    check_series_values,
)
from h5live._write.output import NWB_LAYOUT
from h5live.errors import NWBSourceError
from h5live.neuroconv._configuration import get_default_backend_configuration
from h5live.neuroconv._private import LiveWriting, add_device

__all__ = ["METADATA_KEY", "LiveHDF5Interface"]

logger = logging.getLogger(__name__)

#: Where the interface's series live in neuroconv's metadata: ``metadata[METADATA_KEY][key]``.
METADATA_KEY = "LiveHDF5"

SeriesType = Literal["auto", "ImageSeries", "TwoPhotonSeries", "TimeSeries", "ElectricalSeries"]
#: Series types that link a device (a TimeSeries has no device field).
_DEVICE_TYPES = ("ImageSeries", "TwoPhotonSeries", "ElectricalSeries")
#: What the series types need of a frame: dims (a frame of one more dim is allowed, as pynwb).
_FRAME_DIMS = {"ImageSeries": 2, "TwoPhotonSeries": 2, "ElectricalSeries": 1}

_SERIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "series_type"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[^/]*$", "description": "The series' name."},
        "series_type": {
            "type": "string",
            "enum": ["ImageSeries", "TwoPhotonSeries", "TimeSeries", "ElectricalSeries"],
        },
        "description": {"type": "string"},
        "unit": {"type": "string"},
        "comments": {"type": "string"},
        "conversion": {"type": "number"},
        "offset": {"type": "number"},
        "rate": {"type": "number", "exclusiveMinimum": 0, "description": "Frames per second."},
        "starting_time": {"type": "number"},
        "timestamps_path": {
            "type": "string",
            "description": "The source's dataset of one time per frame, in seconds.",
        },
        "timestamps_reference_time": {
            "type": "string",
            "format": "date-time",
            "description": (
                "The time the source's timestamps count from (flush times: the Unix epoch)."
            ),
        },
        "device_metadata_key": {
            "type": "string",
            "description": "Key of the series' device in metadata['Devices'].",
        },
        "imaging_plane": {"type": "object", "description": "TwoPhotonSeries: its plane."},
        "electrodes": {"type": "object", "description": "ElectricalSeries: its electrodes."},
    },
}


@dataclass(frozen=True)
class _SourceFacts:
    """What ``__init__`` learnt of the source."""

    frames_path: str
    timestamps_path: str | None
    frame_shape: tuple[int, ...]
    dtype: str
    series_type: str
    start_time: datetime.datetime | None


class _Shift:
    """Adds a constant number of seconds to timestamps (picklable, for worker processes)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, frames: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.asarray(frames, dtype=np.float64) + self.seconds


def _series_name(file_path: str) -> str:
    """A series name from the file's name: ``scan_042.h5`` -> ``scan_042``."""
    stem = Path(file_path).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem) or "live"


def _recorded_start_time(file: Any) -> datetime.datetime | None:
    """The session start the source records, if any: a ``start_time`` dataset or attribute of
    the root or a top-level group (NeXus' ``/entry/start_time``), or the root's ``file_time``."""
    places = [file]
    for name in file:
        try:  # an external link to a file that is not there (yet) is no place to look
            place = file[name]
        except (KeyError, OSError):
            continue
        if hasattr(place, "keys"):
            places.append(place)
    for place in places:
        candidates = [place.attrs.get("start_time")]
        child = place.get("start_time") if hasattr(place, "get") else None
        if child is not None and not hasattr(child, "keys") and child.shape in ((), (1,)):
            candidates.append(child[()] if child.shape == () else child[0])
        if place is file:
            candidates.append(place.attrs.get("file_time"))
        for value in candidates:
            when = _as_datetime(value)
            if when is not None:
                return when
    return None


def _as_datetime(value: Any) -> datetime.datetime | None:
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if not isinstance(value, str):
        return None
    try:
        return _start_time(value.strip())
    except ValueError:
        return None


class LiveHDF5Interface(LiveWriting, BaseDataInterface):  # type: ignore[misc]
    """A neuroconv DataInterface for an HDF5 file that another process is writing (SWMR).

    The series is written while the acquisition runs: its length need not be known, and the
    conversion ends when the writer sets its finished flag (or goes idle for ``timeout`` s).

    Parameters
    ----------
    file_path
        The source: an HDF5 file written in SWMR mode, with key datasets (see
        :class:`h5live.SourceSpec` for the layouts found by default).
    dataset_path
        The frames (default: the dataset with the largest frames that grows with the scan).
    rate
        Frames per second. Without it, timestamps come from ``timestamps_path``.
    timestamps_path
        A dataset of the source holding one time per frame, in seconds (default: a float
        dataset growing with the scan, such as ``/entry/flush_time``, if there is one).
    series_type
        ``"auto"`` (ImageSeries for frames of 2 or 3 dims, else TimeSeries), ``"ImageSeries"``,
        ``"TwoPhotonSeries"``, ``"TimeSeries"`` or ``"ElectricalSeries"``.
    key_paths
        The source's key datasets (default: found, see :class:`h5live.SourceSpec`).
    finished_path
        The source's finished dataset (default: found, see :class:`h5live.SourceSpec`).
    timeout
        Seconds to wait for the source to appear, and idle seconds after which a writer that
        neither writes nor finishes is taken as stopped (``None``: wait for the finished flag;
        the source is then waited for 10 s).
    verbose
        neuroconv's.

    Raises
    ------
    SourceNotReadyError
        No such source within ``timeout`` (or it cannot be opened for SWMR reading).
    DatasetNotFoundError
        ``dataset_path`` or ``timestamps_path`` is not in the source.
    NWBSourceError
        A grid scan, no timing, both ``rate`` and ``timestamps_path``, frames that do not suit
        ``series_type``, or a ``rate`` that is not positive.

    Notes
    -----
    ``metadata_key`` is the key of this interface's entries in ``metadata["LiveHDF5"]`` and
    ``metadata["Devices"]`` (the default series name, from the file name); ``iterators`` are
    the live iterators of the last ``add_to_nwbfile`` (frames, then timestamps) while its
    session is open.

    Examples
    --------
    >>> interface = LiveHDF5Interface("scan.h5", rate=30.0)  # doctest: +SKIP
    >>> metadata = interface.get_metadata()  # doctest: +SKIP
    >>> metadata["NWBFile"]["session_start_time"] = "2026-03-04T05:06:07+00:00"  # doctest: +SKIP
    >>> interface.run_conversion("scan.nwb", metadata=metadata)  # doctest: +SKIP
    """

    display_name = "Live HDF5 (SWMR)"
    keywords = ("HDF5", "SWMR", "live", "detector", "acquisition")
    associated_suffixes = (".h5", ".hdf5", ".nxs")
    info = "Interface for an HDF5 file another process is writing in SWMR mode (h5live)."

    @validate_call
    def __init__(
        self,
        file_path: str | Path,
        dataset_path: str | None = None,
        *,
        rate: float | None = None,
        timestamps_path: str | None = None,
        series_type: SeriesType = "auto",
        key_paths: list[str] | None = None,
        finished_path: str | None = None,
        timeout: float | None = 10.0,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            verbose=verbose,
            file_path=os.fspath(file_path),
            dataset_path=dataset_path,
            rate=rate,
            timestamps_path=timestamps_path,
            series_type=series_type,
            key_paths=key_paths,
            finished_path=finished_path,
            timeout=timeout,
        )
        self.file_path = os.fspath(file_path)
        self.metadata_key = _series_name(self.file_path)
        self.iterators: list[LiveDataChunkIterator] = []
        self._session: Conversion | None = None
        if rate is not None and not rate > 0:
            raise NWBSourceError(
                f"rate must be a number of frames per second > 0, got {rate!r} for "
                f"{self.file_path!r}. Fix: pass the acquisition's frame rate, or "
                "timestamps_path= for a dataset of frame times."
            )
        if rate is not None and timestamps_path is not None:
            raise NWBSourceError(
                f"both rate={rate!r} and timestamps_path={timestamps_path!r} are given for "
                f"{self.file_path!r}; an NWB series has one or the other. Fix: pass one of them."
            )
        self._facts = self._inspect(dataset_path, timestamps_path, rate, series_type)

    # ------------------------------------------------------------------ source

    def _open(self) -> Conversion:
        """The source, open for SWMR reading, with its follower (a conversion without a
        destination: h5live's own, so that errors and defaults are those of ``to_nwb``)."""
        options = self.source_data
        timeout = options["timeout"]
        return Conversion(
            self.file_path,
            os.devnull,  # never opened: the NWB file is neuroconv's to create
            NWB_LAYOUT,
            key_paths=options["key_paths"],
            finished_path=options["finished_path"],
            timeout=timeout,
            poll_interval_s=0.001,
            open_timeout_s=10.0 if timeout is None else float(timeout),
            resume=False,
            overwrite=False,
        )

    def _inspect(
        self,
        dataset_path: str | None,
        timestamps_path: str | None,
        rate: float | None,
        series_type: str,
    ) -> _SourceFacts:
        with self._open() as conversion:
            check_one_time_axis(conversion.follower, self.file_path)
            frames_path = dataset_path or _largest(conversion)
            times_path = timestamps_path
            if rate is None and times_path is None:
                times_path = _timestamps_path(conversion, frames_path)
                if times_path is None:
                    raise NWBSourceError(
                        f"{self.file_path!r} has no timing: no rate was given and no timestamp "
                        f"dataset grows with its scan beside {frames_path!r}. Fix: pass rate= "
                        "(frames per second) or timestamps_path= (a dataset of one time per "
                        "frame, in seconds)."
                    )
            sources = conversion.live_datasets([frames_path, *([times_path] if times_path else [])])
            frames = sources[0]
            check_series_values(frames, self.file_path)
            frame_shape = tuple(int(n) for n in frames.shape[1:])
            kind = series_type
            if kind == "auto":
                kind = "ImageSeries" if len(frame_shape) >= 2 else "TimeSeries"
            self._check_frames(kind, frame_shape, frames.name)
            if times_path is not None and (
                sources[1].ndim != 1 or sources[1].dtype.kind not in "fiu"
            ):
                raise NWBSourceError(
                    f"timestamps dataset {times_path!r} in {self.file_path!r} has shape "
                    f"{sources[1].shape} and dtype {sources[1].dtype}; timestamps are one number "
                    "per frame. Fix: pass the dataset of frame times, or rate=."
                )
            return _SourceFacts(
                frames_path=frames.name,
                timestamps_path=sources[1].name if times_path is not None else None,
                frame_shape=frame_shape,
                dtype=str(frames.dtype),
                series_type=kind,
                start_time=_recorded_start_time(conversion.source_file),
            )

    def _check_frames(self, kind: str, frame_shape: tuple[int, ...], path: str) -> None:
        dims = _FRAME_DIMS.get(kind)
        if dims is not None and len(frame_shape) not in (dims, dims + 1):
            raise NWBSourceError(
                f"a {kind} needs frames of {dims} dims, but {path!r} in {self.file_path!r} has "
                f"frames of shape {frame_shape}. Fix: series_type='TimeSeries' (or 'auto'), or "
                "dataset_path= for the dataset you mean."
            )

    # ------------------------------------------------------------------ metadata

    def _defaults(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The series entry and the device entry (None for a TimeSeries) of this source."""
        facts, key = self._facts, self.metadata_key
        series: dict[str, Any] = {
            "name": key,
            "series_type": facts.series_type,
            "description": (
                f"frames of {facts.frames_path!r} in {os.path.basename(self.file_path)!r}, "
                "converted while they were written (h5live)"
            ),
        }
        if facts.series_type != "ElectricalSeries":  # its unit is volts, fixed by NWB
            series["unit"] = "n.a." if facts.series_type == "TwoPhotonSeries" else "counts"
        rate = self.source_data["rate"]
        if rate is not None:
            series["rate"] = float(rate)
        else:
            series["timestamps_path"] = facts.timestamps_path
            series["timestamps_reference_time"] = _EPOCH.isoformat()
        if facts.series_type == "TwoPhotonSeries":
            series["imaging_plane"] = {
                "name": f"{key}_plane",
                "description": f"the imaging plane of {key}",
            }
        if facts.series_type == "ElectricalSeries":
            series["electrodes"] = {
                "group_name": f"{key}_electrodes",
                "description": f"the channels of {key}",
            }
        if facts.series_type not in _DEVICE_TYPES:
            return series, None
        series["device_metadata_key"] = key
        device = {"name": f"{key}_device", "description": f"the device that wrote {key}"}
        return series, device

    def get_metadata(self) -> DeepDict:
        """neuroconv's base metadata, with what the source knows: the series (name, type,
        timing), its device, and the session start if the source records one."""
        metadata = super().get_metadata()
        if self._facts.start_time is not None:
            metadata["NWBFile"]["session_start_time"] = self._facts.start_time
        series, device = self._defaults()
        metadata[METADATA_KEY][self.metadata_key] = series
        if device is not None:
            metadata["Devices"][self.metadata_key] = device
        return metadata

    def get_metadata_schema(self) -> dict[str, Any]:
        """neuroconv's base schema, with ``LiveHDF5``: one entry per series (name, type,
        description, unit, rate or timestamps, device key, imaging plane, electrodes)."""
        schema: dict[str, Any] = super().get_metadata_schema()
        schema["properties"][METADATA_KEY] = {
            "type": "object",
            "description": "Series converted from live HDF5 sources, by interface key.",
            "additionalProperties": _SERIES_SCHEMA,
        }
        return schema

    def _entry(self, metadata: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """This series' metadata (the defaults, updated by ``metadata``) and the Devices."""
        series, device = self._defaults()
        given = dict((metadata.get(METADATA_KEY) or {}).get(self.metadata_key) or {})
        if "rate" in given and "timestamps_path" not in given:
            series.pop("timestamps_path", None)
            series.pop("timestamps_reference_time", None)
        if "timestamps_path" in given and "rate" not in given:
            series.pop("rate", None)
            series.setdefault("timestamps_reference_time", _EPOCH.isoformat())
        series.update(given)
        devices = {self.metadata_key: device} if device is not None else {}
        devices.update(dict(metadata.get("Devices") or {}))
        return series, devices

    # ------------------------------------------------------------------ NWB

    def add_to_nwbfile(
        self,
        nwbfile: Any,
        metadata: dict[str, Any] | None = None,
        *,
        max_latency_s: float | None = 1.0,
        display_progress: bool = False,
    ) -> None:
        """Add the series, its data and timestamps live iterators over the source.

        Parameters
        ----------
        nwbfile
            The in-memory ``pynwb.NWBFile``.
        metadata
            neuroconv metadata (default: :meth:`get_metadata`).
        max_latency_s
            A complete frame reaches the NWB file within about this many seconds (``None``:
            whole buffers only).
        display_progress
            A progress bar of the frames written.

        Raises
        ------
        NWBSourceError
            Metadata this source cannot satisfy (both a rate and timestamps, a series type its
            frames do not suit, a device name already used by another series type).
        DatasetNotFoundError
            A ``timestamps_path`` in the metadata that is not in the source.
        """
        metadata = dict(metadata) if metadata is not None else self.get_metadata()
        series, devices = self._entry(metadata)
        kind = str(series.pop("series_type"))
        self._check_frames(kind, self._facts.frame_shape, self._facts.frames_path)
        rate = series.pop("rate", None)
        times_path = series.pop("timestamps_path", None)
        zero = series.pop("timestamps_reference_time", None)
        if (rate is None) == (times_path is None):
            raise NWBSourceError(
                f"the metadata of {self.metadata_key!r} (metadata[{METADATA_KEY!r}]) gives "
                f"rate={rate!r} and timestamps_path={times_path!r} for {self.file_path!r}; an "
                "NWB series needs exactly one. Fix: keep one of them."
            )
        self.close()  # one session at a time: a dataset must not be open twice in a process
        session = self._open()
        try:
            self.iterators = self._iterators(
                session, nwbfile, times_path, zero, max_latency_s, display_progress
            )
            self._add_series(nwbfile, metadata, kind, series, devices, rate)
        except BaseException:
            self.iterators = []
            session.__exit__(None, None, None)
            raise
        self._session = session

    def _iterators(
        self,
        session: Conversion,
        nwbfile: Any,
        times_path: str | None,
        zero: Any,
        max_latency_s: float | None,
        display_progress: bool,
    ) -> list[LiveDataChunkIterator]:
        """The frames' iterator and the timestamps' (shifted to the NWBFile's reference time),
        sharing one follower; h5live's conversion defaults for their shapes."""
        paths = [self._facts.frames_path, *([times_path] if times_path else [])]
        sources = session.live_datasets(paths)
        stages: dict[str, list[Stage]] = {}
        if times_path is not None:
            seconds = (_start_time(zero) - nwbfile.timestamps_reference_time).total_seconds()
            if seconds:
                shift = Stage(_Shift(seconds), dtype=np.float64, name=f"shift {seconds:+.6f} s")
                stages[sources[1].name] = [shift]
        options = LiveOptions(
            max_latency_s=max_latency_s, display_progress=display_progress, stages=stages
        )
        return session.live_iterators(sources, options)

    def _add_series(
        self,
        nwbfile: Any,
        metadata: Mapping[str, Any],
        kind: str,
        series: dict[str, Any],
        devices: dict[str, Any],
        rate: float | None,
    ) -> None:
        device_key = series.pop("device_metadata_key", None)
        meta: dict[str, Any] = {
            "imaging_plane": dict(series.pop("imaging_plane", None) or {}),
            "electrodes": dict(series.pop("electrodes", None) or {}),
        }
        device = dict(devices.get(device_key) or {}) if device_key is not None else {}
        if kind == "ImageSeries" and device_key is not None:
            series["device"] = add_device(nwbfile, {**metadata, "Devices": devices}, device_key)
        elif kind in _DEVICE_TYPES:
            name = device.get("name", f"{self.metadata_key}_device")
            if name in nwbfile.devices:
                raise NWBSourceError(
                    f"a device named {name!r} is in the NWBFile already, and a {kind} of "
                    f"{self.file_path!r} makes its own. Fix: give this interface's device "
                    f"another name (metadata['Devices'][{device_key!r}]['name'])."
                )
            meta["device"] = {
                k: v for k, v in device.items() if k in ("name", "description", "serial_number")
            }
        meta["series"] = series
        frames = self.iterators[0]
        times = self.iterators[1] if len(self.iterators) > 1 else None
        try:
            _series(nwbfile, kind, frames, times, rate, meta, frames.frame_shape)
        except (TypeError, ValueError) as exc:
            raise NWBSourceError(
                f"the metadata of {self.metadata_key!r} does not make a valid {kind} of "
                f"{self._facts.frames_path!r} in {self.file_path!r}: {exc}. Fix: correct that "
                f"field in metadata[{METADATA_KEY!r}][{self.metadata_key!r}] (see pynwb's "
                f"{kind})."
            ) from exc

    # ------------------------------------------------------------------ writing

    def _filled_nwbfile(
        self, nwbfile: Any | None, metadata: dict[str, Any], conversion_options: dict[str, Any]
    ) -> Any:
        if nwbfile is not None:
            self.add_to_nwbfile(nwbfile=nwbfile, metadata=metadata, **conversion_options)
            return nwbfile
        return self.create_nwbfile(metadata=metadata, **conversion_options)

    def run_conversion(self, nwbfile_path: Any, *args: Any, **kwargs: Any) -> None:
        """neuroconv's ``run_conversion`` (same arguments and checks), written by
        :func:`h5live.neuroconv.configure_and_write_nwbfile`; the session is closed after."""
        try:
            super().run_conversion(nwbfile_path, *args, **kwargs)
        finally:
            self.close()

    @staticmethod
    def get_default_backend_configuration(
        nwbfile: Any, backend: Literal["hdf5", "zarr"] = "hdf5"
    ) -> Any:
        """:func:`h5live.neuroconv.get_default_backend_configuration` (live datasets of
        unknown length included)."""
        return get_default_backend_configuration(nwbfile, backend=backend)

    # ------------------------------------------------------------------ resources

    def close(self) -> None:
        """Close the source session of the last ``add_to_nwbfile`` (idempotent)."""
        session, self._session = self._session, None
        for iterator in self.iterators:
            iterator.close()
        self.iterators = []
        if session is not None:
            session.__exit__(None, None, None)

    def __enter__(self) -> LiveHDF5Interface:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        facts = self._facts
        return (
            f"<LiveHDF5Interface {os.path.basename(self.file_path)!r} {facts.frames_path!r} "
            f"{facts.series_type} key={self.metadata_key!r} open={self._session is not None}>"
        )
