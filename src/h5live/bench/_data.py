"""The data ``h5live bench`` measures: its shape, and complete sources in h5live's layout.

Contract
--------
- :class:`DataSpec` says what is benchmarked: scan shape, frame shape, dtype, the source's chunk
  shape and its compressed variant's filters, simulated or taken from a user's file.
- :func:`make_source` writes a complete source (keys set, finished flag set, shape ``(1,)``
  so that swmr_tools reads it too): simulated detector-like frames (Poisson counts, which
  compress like real ones) or the first frames of the user's dataset, with the source's chunks,
  uncompressed or with the spec's filters.
- :func:`scan_block` turns "so many frames" into the leading block of a chunk or buffer shape
  (a grid scan fills its fast axis first).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from h5live._read.filters import PLUGIN_FILTERS, filter_options, source_compression
from h5live._source.spec import get_dataset
from h5live.errors import H5LiveError

__all__ = [
    "DATA",
    "FINISHED",
    "KEYS",
    "DataSpec",
    "check_compression",
    "default_compression",
    "file_spec",
    "h5py_filters",
    "make_source",
    "scan_block",
    "simulated_spec",
]

DATA = "/entry/data/data"
KEYS = "/entry/keys/key_0"
FINISHED = "/entry/finished"

#: Simulated data: about this many bytes unless ``--frames`` says otherwise.
DEFAULT_DATA_BYTES = 256 << 20

#: Plugin filter ids the simulated writer knows by name (for live runs of a user's file).
_WRITER_NAMES = {32008: "bitshuffle", 32015: "zstd", 32004: "lz4", 32001: "blosc", 32026: "blosc2"}


@dataclass(frozen=True)
class DataSpec:
    """What is benchmarked.

    Attributes
    ----------
    scan_shape, frame_shape, dtype
        The data: ``(*scan_shape, *frame_shape)`` of ``dtype``.
    chunks
        The source's chunk shape (a detector's: one frame per chunk).
    compression
        A label for the compressed variant (``"bitshuffle"``, ``"source filters (32008)"``), or
        ``None`` when only uncompressed data is measured.
    filters
        h5py ``create_dataset`` options of the compressed variant.
    writer_compression
        The name the simulated writer of live runs compresses with (``None``: uncompressed).
    origin
        ``"simulated"`` or the user's file and dataset.
    source_path, data_path
        The user's file and dataset, if any.
    """

    scan_shape: tuple[int, ...]
    frame_shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    compression: str | None
    filters: dict[str, Any] = field(default_factory=dict)
    writer_compression: str | None = None
    origin: str = "simulated"
    source_path: str | None = None
    data_path: str | None = None

    @property
    def frames(self) -> int:
        return math.prod(self.scan_shape)

    @property
    def frame_bytes(self) -> int:
        return math.prod(self.frame_shape) * np.dtype(self.dtype).itemsize

    @property
    def data_bytes(self) -> int:
        return self.frames * self.frame_bytes

    @property
    def chunk_frames(self) -> int:
        """Frames per source chunk."""
        return math.prod(self.chunks[: len(self.scan_shape)])

    def describe(self) -> str:
        scan = "x".join(map(str, self.scan_shape))
        frame = "x".join(map(str, self.frame_shape)) or "scalar"
        return (
            f"{self.frames} frames (scan {scan}) of {frame} {self.dtype} "
            f"({self.data_bytes / 1e6:.0f} MB), source chunks {self.chunks}, {self.origin}"
        )


def default_compression() -> str:
    """bitshuffle-LZ4 (detectors' usual filter) if hdf5plugin is installed, else gzip."""
    try:
        import hdf5plugin  # noqa: F401
    except ImportError:
        return "gzip"
    return "bitshuffle"


def check_compression(name: str) -> None:
    """Raise ``ValueError`` for a name h5live does not know, ``H5LiveError`` when its plugin
    is not installed."""
    if name in PLUGIN_FILTERS:
        try:
            import hdf5plugin  # noqa: F401
        except ImportError as exc:
            raise H5LiveError(
                f"compression {name!r} needs hdf5plugin, which is not installed. Fix: pip "
                "install 'h5live[compression]', or pass --compression gzip or none."
            ) from exc
    filter_options(name)


def simulated_spec(
    *,
    frames: int | None,
    frame_shape: tuple[int, ...],
    dtype: str,
    compression: str | None,
    scan_shape: tuple[int, ...] | None = None,
) -> DataSpec:
    """Simulated detector data: one frame per chunk, ``compression`` for the compressed variant
    (``None``: uncompressed only)."""
    frame_bytes = math.prod(frame_shape) * np.dtype(dtype).itemsize
    if scan_shape is None:
        default = int(min(max(DEFAULT_DATA_BYTES // max(frame_bytes, 1), 64), 10**7))
        scan_shape = (frames if frames is not None else default,)
    filters = {} if compression is None else filter_options(compression)
    return DataSpec(
        scan_shape=tuple(scan_shape),
        frame_shape=tuple(frame_shape),
        dtype=dtype,
        chunks=(*(1,) * len(scan_shape), *frame_shape),
        compression=compression,
        filters=filters,
        writer_compression=compression,
    )


def _scan_rank(file: Any) -> int:
    """The scan rank of a file with keys in a known layout; 1 otherwise."""
    from h5live._follow.follower import KeyFollower
    from h5live._source.spec import SourceSpec

    try:
        found = SourceSpec(file.filename, open_timeout_s=0).resolve(file)
        return max(1, int(KeyFollower(found.keys, timeout=0).scan_rank))
    except (H5LiveError, OSError, ValueError, KeyError):
        return 1


def _largest_dataset(file: Any) -> str:
    found: list[tuple[int, str]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 1 and obj.dtype.kind in "iufb":
            found.append((obj.size * obj.dtype.itemsize, obj.name))

    file.visititems(visit)
    if not found:
        raise H5LiveError(
            f"{file.filename!r} holds no numeric dataset of rank >= 1 to benchmark. Fix: pass "
            "--data naming the frames' dataset."
        )
    return max(found)[1]


def file_spec(
    path: str | os.PathLike[str], data_path: str | None, frames: int | None, compression: str | None
) -> DataSpec:
    """The shape, dtype, chunks and filters of a user's dataset (at most ``frames`` frames, by
    default about 256 MB of them).

    Raises
    ------
    FileNotFoundError, SourceNotReadyError
        No such file, or not HDF5.
    DatasetNotFoundError
        ``data_path`` is not a dataset of the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"--source {path!r} does not exist. Fix: pass the path of an HDF5 file, or leave "
            "--source out to benchmark simulated data."
        )
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise OSError(
            f"--source {path!r} cannot be opened as HDF5 ({exc}). Fix: pass an HDF5 file."
        ) from exc
    with file:
        name = data_path or _largest_dataset(file)
        dataset = get_dataset(file, name, "data")
        rank = min(_scan_rank(file), dataset.ndim)
        shape = tuple(int(n) for n in dataset.shape)
        chunks = tuple(int(n) for n in dataset.chunks) if dataset.chunks else None
        inner = math.prod(shape[1:rank])
        frame_bytes = math.prod(shape[rank:]) * dataset.dtype.itemsize
        wanted = frames if frames is not None else DEFAULT_DATA_BYTES // max(frame_bytes, 1)
        rows = max(1, min(shape[0], -(-wanted // max(inner, 1))))
        if shape[0] == 0 or inner == 0:
            raise H5LiveError(
                f"dataset {dataset.name!r} of {path!r} is empty (shape {shape}). Fix: pass a "
                "dataset holding frames (--data)."
            )
        try:
            filters = h5py_filters(source_compression(dataset))
        except ValueError:
            filters = {}
        label: str | None
        writer: str | None = None
        if filters:
            code = filters.get("compression")
            label = f"source filters ({code})"
            writer = code if code in ("gzip", "lzf") else _WRITER_NAMES.get(int(code or 0))
        else:
            label = compression
            filters = {} if compression is None else filter_options(compression)
            writer = compression
        if chunks is None:
            chunks = (*(1,) * rank, *shape[rank:])
        return DataSpec(
            scan_shape=(rows, *shape[1:rank]),
            frame_shape=shape[rank:],
            dtype=str(dataset.dtype),
            chunks=(min(chunks[0], rows), *chunks[1:]),
            compression=label,
            filters=filters,
            writer_compression=writer,
            origin=f"{path}:{dataset.name}",
            source_path=path,
            data_path=dataset.name,
        )


def h5py_filters(options: dict[str, Any]) -> dict[str, Any]:
    """``H5DataIO`` options as h5py ``create_dataset`` options."""
    options = dict(options)
    options.pop("allow_plugin_filters", None)
    if isinstance(options.get("compression"), int):
        import hdf5plugin  # noqa: F401  (registers the filters with HDF5)
    return options


def scan_block(scan_shape: tuple[int, ...], frames: int) -> tuple[int, ...] | None:
    """The leading (scan) block of ``frames`` frames: along a stack, ``(frames,)``; in a grid,
    part of one row or whole rows. ``None`` if no block holds exactly that many frames."""
    if frames < 1:
        return None
    if len(scan_shape) == 1:
        return (frames,) if frames <= scan_shape[0] else None
    inner = math.prod(scan_shape[1:])
    if frames < inner:  # part of one row: along the fast axis only
        fast = scan_shape[-1]
        return (*(1,) * (len(scan_shape) - 1), frames) if frames <= fast else None
    if frames % inner or frames // inner > scan_shape[0]:
        return None
    return (frames // inner, *scan_shape[1:])


def _poisson_pool(frame_shape: tuple[int, ...], dtype: str, count: int) -> np.ndarray:
    """A few detector-like frames (Poisson counts, mean 3), cycled through the source."""
    rng = np.random.default_rng(1)
    values = rng.poisson(3.0, size=(count, *frame_shape))
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return values.astype(dt)
    if dt.kind == "b":
        return (values % 2).astype(dt)
    return np.minimum(values, np.iinfo(dt).max).astype(dt)


def make_source(path: Path, spec: DataSpec, *, compressed: bool) -> None:
    """Write a complete source for ``spec`` at ``path`` (overwritten)."""
    rank = len(spec.scan_shape)
    shape = (*spec.scan_shape, *spec.frame_shape)
    filters = dict(spec.filters) if compressed else {}
    with h5py.File(path, "w", libver="latest") as f:
        data = f.create_dataset(
            DATA,
            shape=shape,
            maxshape=(None, *shape[1:]),
            chunks=spec.chunks,
            dtype=spec.dtype,
            **filters,
        )
        rows_per_block = max(1, (64 << 20) // max(spec.frame_bytes * math.prod(shape[1:rank]), 1))
        if spec.source_path is not None and spec.data_path is not None:
            with h5py.File(spec.source_path, "r") as user:
                frames = user[spec.data_path]
                for lo in range(0, shape[0], rows_per_block):
                    hi = min(lo + rows_per_block, shape[0])
                    data[lo:hi] = frames[lo:hi]
        else:
            pool = _poisson_pool(spec.frame_shape, spec.dtype, 16)
            flat = data.shape[0] * math.prod(shape[1:rank])
            per_row = math.prod(shape[1:rank])
            for lo in range(0, shape[0], rows_per_block):
                hi = min(lo + rows_per_block, shape[0])
                index = np.arange(lo * per_row, min(hi * per_row, flat)) % len(pool)
                data[lo:hi] = pool[index].reshape(hi - lo, *shape[1:])
        f.create_dataset(
            KEYS,
            data=np.ones(spec.scan_shape, dtype="int32"),
            chunks=tuple(min(n, 1024) for n in spec.scan_shape),
            maxshape=(None, *spec.scan_shape[1:]),
        )
        f.create_dataset(FINISHED, data=np.ones(1, dtype="int32"), maxshape=(1,), chunks=(1,))
