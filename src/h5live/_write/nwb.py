"""to_nwb: a live acquisition converted into an NWB file while it is written.

Contract
--------
- The frames (a stack: the scan's first axis is time) become an ``ImageSeries`` or
  ``TwoPhotonSeries`` (2-D frames), a ``TimeSeries`` or ``ElectricalSeries`` (1-D frames:
  channels; scalars: a ``TimeSeries``). ``series_type="auto"`` picks ImageSeries or TimeSeries.
  Timing is a ``rate`` or a timestamp dataset of the source (found: a float dataset growing with
  the scan, e.g. ``/entry/flush_time``), in seconds after ``timestamps_reference_time``
  (default: the Unix epoch, as flush times are).
- Session metadata (description, start time, identifier, subject, experimenter, ...; the series'
  name, unit and description; the imaging plane, device or electrodes) come from a mapping or a
  YAML/JSON file, with defaults that keep the file valid (a subject is always written).
- Frames and timestamps go through ``H5DataIO(LiveDataChunkIterator(...))`` in one
  :class:`h5live.LiveNWBHDF5IO` write: every object is created and the NWB specification
  cached, h5live's bookkeeping is added as ``ScratchData``
  (:data:`~h5live._write.output.NWB_LAYOUT`) and the file enters SWMR mode before the first
  frame, so that pynwb can read it while it is written; the one live write loop
  (:mod:`h5live._write.loop`) writes the frames and marks a frame complete once every live
  dataset holds it.
- Ending, interrupts, errors and ``resume`` are those of every conversion
  (:mod:`h5live._write.conversion`); a resumed NWB file is continued by the same loop.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from h5live._read.filters import SOURCE, Compression
from h5live._source.spec import largest_frames, source_path
from h5live._stages import Stage
from h5live._write.conversion import (
    Conversion,
    ConversionResult,
    LiveOptions,
    conversion_filters,
)
from h5live._write.copy import data_datasets
from h5live._write.destination import create_live_file
from h5live._write.options import ConversionOptions
from h5live._write.output import NWB_LAYOUT
from h5live.errors import NWBSourceError

__all__ = ["SERIES_TYPES", "load_metadata", "to_nwb"]

logger = logging.getLogger(__name__)

SERIES_TYPES = ("auto", "ImageSeries", "TwoPhotonSeries", "TimeSeries", "ElectricalSeries")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def load_metadata(metadata: Mapping[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any]:
    """Session metadata from a mapping, or a YAML (``.yaml``/``.yml``) or JSON file.

    Raises
    ------
    ValueError
        The file cannot be read or is not a mapping.
    """
    if metadata is None:
        return {}
    if isinstance(metadata, Mapping):
        return dict(metadata)
    path = Path(metadata)
    try:
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            loaded = yaml.safe_load(text)
        else:
            loaded = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"cannot read the metadata file {os.fspath(path)!r}: {exc}. Fix: pass a YAML "
            "(.yaml) or JSON file holding a mapping, e.g. session_description: ..."
        ) from exc
    if not isinstance(loaded, dict):
        raise ValueError(
            f"the metadata file {os.fspath(path)!r} holds a {type(loaded).__name__}, not a "
            "mapping. Fix: write keys and values, e.g. session_description: ..."
        )
    return loaded


def _start_time(value: Any) -> datetime.datetime:
    if value is None:
        return datetime.datetime.now(datetime.timezone.utc)
    when = value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value)
    return when if when.tzinfo is not None else when.astimezone()


def _nwbfile(meta: Mapping[str, Any], timestamps: bool) -> Any:
    from pynwb import NWBFile
    from pynwb.file import Subject

    session = {
        key: meta[key]
        for key in (
            "experimenter",
            "lab",
            "institution",
            "experiment_description",
            "session_id",
            "keywords",
            "notes",
        )
        if key in meta
    }
    nwbfile = NWBFile(
        session_description=meta.get("session_description", "a live acquisition, by h5live"),
        identifier=str(meta.get("identifier", uuid.uuid4())),
        session_start_time=_start_time(meta.get("session_start_time")),
        timestamps_reference_time=(
            _start_time(meta["timestamps_reference_time"])
            if "timestamps_reference_time" in meta
            else (_EPOCH if timestamps else None)
        ),
        **session,
    )
    subject = dict(meta.get("subject") or {})
    missing = [k for k in ("subject_id", "sex", "species") if k not in subject]
    if "age" not in subject and "date_of_birth" not in subject:
        missing.append("age")
    if missing:
        logger.warning(
            "no subject %s given: the NWB file says unknown. Fix: add them under 'subject' in "
            "the metadata (e.g. sex: F, species: Mus musculus, age: P90D)",
            ", ".join(missing),
        )
    subject.setdefault("subject_id", "unknown")
    subject.setdefault("sex", "U")  # NWB's "unknown"
    if "age" in missing:
        subject["age"] = "P0D/"  # an open range: "at least 0 days", i.e. not known
    nwbfile.subject = Subject(**subject)
    return nwbfile


def _series(
    nwbfile: Any,
    kind: str,
    frames: Any,
    times: Any,
    rate: float | None,
    meta: Mapping[str, Any],
    frame_shape: tuple[int, ...],
) -> Any:
    """The series holding the frames, with what its type needs (plane, electrodes)."""
    from pynwb import TimeSeries
    from pynwb.ecephys import ElectricalSeries
    from pynwb.image import ImageSeries
    from pynwb.ophys import OpticalChannel, TwoPhotonSeries

    if kind == "auto":
        kind = "ImageSeries" if len(frame_shape) >= 2 else "TimeSeries"
    wanted = {"ImageSeries": 2, "TwoPhotonSeries": 2, "ElectricalSeries": 1}
    if kind in wanted and len(frame_shape) not in (wanted[kind], wanted[kind] + 1):
        raise ValueError(
            f"a {kind} needs frames of {wanted[kind]} dims, but the source's have shape "
            f"{frame_shape}. Fix: series_type='TimeSeries', or the right data_path."
        )
    spec = dict(meta.get("series") or {})
    name = spec.pop("name", "detector" if kind != "ElectricalSeries" else "ElectricalSeries")
    timing = {"timestamps": times} if times is not None else {"rate": float(rate or 0.0)}
    common = {"name": name, "data": frames, **timing}
    description = spec.pop("description", "frames of a live acquisition, converted by h5live")
    if kind == "ElectricalSeries":
        device = nwbfile.create_device(**{"name": "probe", **dict(meta.get("device") or {})})
        layout = dict(meta.get("electrodes") or {})
        group = nwbfile.create_electrode_group(
            name=layout.get("group_name", "electrodes"),
            description=layout.get("description", "the source's channels"),
            location=layout.get("location", "unknown"),
            device=device,
        )
        for _ in range(frame_shape[0]):
            nwbfile.add_electrode(group=group, location=layout.get("location", "unknown"))
        region = nwbfile.create_electrode_table_region(
            region=list(range(frame_shape[0])), description="every channel of the source"
        )
        series = ElectricalSeries(electrodes=region, description=description, **common, **spec)
    elif kind == "TwoPhotonSeries":
        device = nwbfile.create_device(**{"name": "microscope", **dict(meta.get("device") or {})})
        plane = dict(meta.get("imaging_plane") or {})
        channel = OpticalChannel(
            name="channel",
            description="the detector",
            emission_lambda=plane.pop("emission_lambda", float("nan")),
        )
        imaging_plane = nwbfile.create_imaging_plane(
            name=plane.pop("name", "imaging_plane"),
            optical_channel=channel,
            description=plane.pop("description", "the imaging plane"),
            device=device,
            excitation_lambda=plane.pop("excitation_lambda", float("nan")),
            indicator=plane.pop("indicator", "unknown"),
            location=plane.pop("location", "unknown"),
            imaging_rate=plane.pop("imaging_rate", float(rate) if rate else float("nan")),
            **plane,
        )
        unit = spec.pop("unit", "n.a.")
        series = TwoPhotonSeries(
            imaging_plane=imaging_plane, unit=unit, description=description, **common, **spec
        )
    elif kind == "ImageSeries":
        unit = spec.pop("unit", "counts")
        series = ImageSeries(unit=unit, description=description, **common, **spec)
    elif kind == "TimeSeries":
        unit = spec.pop("unit", "counts")
        series = TimeSeries(unit=unit, description=description, **common, **spec)
    else:
        raise ValueError(
            f"series_type {kind!r} is not one of {', '.join(SERIES_TYPES)}. Fix: pass one of them."
        )
    nwbfile.add_acquisition(series)
    return series


def _timestamps_path(conversion: Conversion, frames_path: str) -> str | None:
    """A float dataset of one value per frame that grows with the scan (e.g. flush times),
    in the frames' group first (a master file may show several detectors, each with its own)."""
    group = frames_path.rsplit("/", 1)[0]
    paths = data_datasets(conversion.source_file, conversion.follower)
    for path in sorted(paths, key=lambda p: p.rsplit("/", 1)[0] != group):
        dataset = conversion.source_file[path]
        if path != frames_path and dataset.ndim == 1 and dataset.dtype.kind == "f":
            return path
    return None


def check_one_time_axis(follower: Any, source: str) -> None:
    """Refuse a grid scan: an NWB series has one time axis (a scan rank of 0, keys of one
    frame, is a stack of one).

    Raises
    ------
    NWBSourceError
        Naming the source, its keys and the fix.
    """
    if follower.scan_rank > 1:
        raise NWBSourceError(
            f"{source!r} is a grid scan (scan rank {follower.scan_rank}, keys "
            f"{[source_path(k) for k in follower.key_datasets]}); an NWB series has one time "
            "axis. Fix: convert it with copy_live (h5live copy), or have the writer write a "
            "stack of frames."
        )


def check_series_values(frames: Any, source: str) -> None:
    """Refuse frames that an NWB series cannot hold as hdmf writes it: compound values (hdmf
    writes no compound array from an iterator; it failed deep inside with 'Size must be
    positive').

    Raises
    ------
    NWBSourceError
        Naming the dataset, its type and the fix.
    """
    if frames.dtype.kind == "V":
        raise NWBSourceError(
            f"dataset {source_path(frames)!r} of {source!r} holds compound values "
            f"({frames.dtype}); an NWB series holds numbers (or text). Fix: pass the frames' "
            "dataset (data_path=, --data), or copy the file with copy_live (h5live copy), "
            "which keeps any type."
        )


def to_nwb(
    source: str | os.PathLike[str],
    nwbfile_path: str | os.PathLike[str],
    *,
    data_path: str | None = None,
    series_type: str = "auto",
    rate: float | None = None,
    timestamps_path: str | None = None,
    metadata: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    compression: Compression = None,
    compression_opts: Any = None,
    stages: Sequence[Stage] | None = None,
    options: ConversionOptions | None = None,
    **keywords: Any,
) -> ConversionResult:
    """Convert a live acquisition into an NWB file, incrementally.

    Parameters
    ----------
    source, nwbfile_path
        The file being written, and the NWB file.
    data_path
        The frames (default: the dataset with the largest frames that grows with the scan).
    series_type
        ``"auto"``, ``"ImageSeries"``, ``"TwoPhotonSeries"``, ``"TimeSeries"`` or
        ``"ElectricalSeries"``.
    rate, timestamps_path
        Timing: frames per second, or a timestamp dataset of the source (default: found).
    metadata
        A mapping or a YAML/JSON file: NWBFile fields (``session_description``,
        ``session_start_time``, ``identifier``, ``experimenter``, ...), ``subject``,
        ``series`` (``name``, ``unit``, ``description``, ...), ``device``,
        ``imaging_plane``, ``electrodes``.
    compression, compression_opts
        As for :func:`h5live.copy_live`, except that the default is no compression.
    stages
        Processing stages (:class:`h5live.Stage`) applied to the frames before they are
        written; the series holds their output (``"auto"`` chooses the series type by it).
    options, **keywords
        How to follow the source and write the file: a :class:`h5live.ConversionOptions`,
        and any of its fields as keywords overriding it (``key_paths``, ``chunk_shape``,
        ``max_latency_s``, ``timeout``, ``resume``, ``overwrite``, ...), as for
        :func:`h5live.copy_live`.

    Returns
    -------
    ConversionResult

    Raises
    ------
    ValueError
        A grid scan (NWB series are time series), frames that do not suit the series type, no
        timing, or unreadable metadata.
    TypeError, OutputExistsError, OutputError, KeyboardInterrupt
        As for :func:`h5live.copy_live`.
    """
    from h5live._write.live_nwb import LiveNWBHDF5IO

    meta = load_metadata(metadata)
    given = ConversionOptions.of(options, keywords, "to_nwb")
    with Conversion.of(source, nwbfile_path, NWB_LAYOUT, given) as conversion:
        live_options = LiveOptions.of(given)
        check_one_time_axis(conversion.follower, conversion.source_path)
        frames_path = data_path or _largest(conversion)
        times_path = timestamps_path
        if rate is None and times_path is None:
            times_path = _timestamps_path(conversion, frames_path)
            if times_path is None:
                raise ValueError(
                    f"{conversion.source_path!r} has no timestamp dataset growing with its "
                    "scan. Fix: pass rate= (--rate) or timestamps_path= (--timestamps)."
                )
        sources = conversion.live_datasets([frames_path] + ([times_path] if times_path else []))
        # checked before the destination is touched; through links, the paths in the source
        live = [source_path(dataset) for dataset in sources]
        check_series_values(sources[0], conversion.source_path)
        if stages:
            live_options = dataclasses.replace(live_options, stages={live[0]: list(stages)})
        live_options, filters = conversion_filters(
            live_options, compression, compression_opts, False, sources
        )
        conversion.check_options(sources, live_options)
        if given.resume and Path(nwbfile_path).exists():
            conversion.open_destination()
            return conversion.write(conversion.resume_iterators(live_options, sources))
        # The NWB objects are made (and the metadata checked) before the destination is touched.
        iterators = conversion.live_iterators(sources, live_options)
        from hdmf.backends.hdf5.h5_utils import H5DataIO

        with warnings.catch_warnings():  # plugin filters are what the caller asked for
            warnings.filterwarnings("ignore", "[0-9]+ compression may not be available")
            frames = H5DataIO(iterators[0], **filters[0])
            # timestamps: small, uncompressed unless they keep the source's filters
            times_filters = filters[-1] if compression == SOURCE else {}
            times = H5DataIO(iterators[1], **times_filters) if times_path else None
        try:
            nwbfile = _nwbfile(meta, times is not None)
            _series(nwbfile, series_type, frames, times, rate, meta, iterators[0].frame_shape)
        except (TypeError, ValueError) as exc:
            where = (
                f"the metadata {os.fspath(metadata)!r}"
                if isinstance(metadata, (str, os.PathLike))
                else "the metadata"
            )
            raise ValueError(
                f"{where} does not make a valid NWB file: {exc}. Fix: correct that field (see "
                "the pynwb documentation of NWBFile, Subject and the series type)."
            ) from exc
        conversion.open_destination(file_opener=create_live_file)
        with LiveNWBHDF5IO(file=conversion.file, mode="w", workers=conversion.workers) as io:
            try:
                io.write(nwbfile)
            finally:  # an output that exists is kept, also when the write stopped
                if io.live_write is not None:
                    conversion.output = io.live_write.output
            if io.live_write is None:  # pragma: no cover - the series holds live iterators
                raise RuntimeError("the NWB file was written without its live datasets")
            return conversion.result(io.live_write)


def _largest(conversion: Conversion) -> str:
    """The live dataset with the largest frames: the detector's."""
    paths = data_datasets(conversion.source_file, conversion.follower)
    if not paths:
        raise ValueError(
            f"no dataset of {conversion.source_path!r} grows with its scan. Fix: pass "
            "data_path= (--data)."
        )
    file = conversion.source_file
    datasets = [file[p] for p in paths]
    largest = largest_frames(datasets, conversion.follower.scan_rank)
    return paths[next(k for k, d in enumerate(datasets) if d is largest)]
