"""The live datasets of an in-memory NWBFile: found, kept out of neuroconv's sight while it
walks the file, and rebuilt to a backend configuration's chunk and buffer shapes.

Contract
--------
- A live dataset is the ``data`` or ``timestamps`` field of a neurodata object that holds a
  bare :class:`h5live.LiveDataChunkIterator`. One that the user wrapped in a DataIO keeps the
  settings given there, as neuroconv does for any DataIO.
- :func:`set_aside` puts each live dataset in a plain DataIO for the duration of a ``with``
  block (neuroconv's default configuration skips datasets in a DataIO), so that neuroconv never
  takes a length of ``None`` for a number, and puts the iterators back after, whatever happens.
- :func:`follow_shapes` returns an iterator with the configuration's chunk and buffer shapes:
  the iterator itself if they are its own, else a new one over the same dataset and follower
  (no second handle on the source), with every other option of the old one. Along the first
  axis they are cut to the data's length when the iterator knows it (a configuration made while
  the source was live, applied once it has finished). neuroconv leaves
  the iterator's own buffers in place and gives only the destination the new chunk shape
  (0.10.2: "TODO: update buffer shape in iterator"); here both follow the configuration.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hdmf.data_utils import DataIO

from h5live._iterate.iterator import LiveDataChunkIterator
from h5live._iterate.shapes import rows_within
from h5live.errors import BackendConfigurationError, IteratorOptionError
from h5live.neuroconv._private import location_in_file

__all__ = ["LiveDataset", "follow_shapes", "live_datasets", "set_aside"]

logger = logging.getLogger(__name__)

#: The dataset fields of a neurodata object that a backend configuration describes (neuroconv's).
DATASET_FIELDS = ("data", "timestamps")

#: Keys of an iterator's pickling recipe (``_to_dict``) that say where the source is: a rebuilt
#: iterator reuses the old one's open dataset and follower instead.
_RECIPE_KEYS = ("path", "dataset_path", "key_paths", "finished_path")


@dataclass(frozen=True)
class LiveDataset:
    """A live dataset of an NWBFile: its neurodata object, field and iterator, and its location
    in the file (the key of its backend configuration entry)."""

    neurodata_object: Any
    field: str
    iterator: LiveDataChunkIterator
    location: str

    @property
    def label(self) -> str:
        """For messages: the location, and the source file and dataset."""
        it = self.iterator
        return f"{self.location!r} (frames of {it.dataset.name!r} in {it.dataset.file.filename!r})"


def live_datasets(nwbfile: Any) -> list[LiveDataset]:
    """The live datasets of ``nwbfile``, in the order of ``nwbfile.all_children()``."""
    found: list[LiveDataset] = []
    for neurodata_object in nwbfile.all_children():
        fields = getattr(neurodata_object, "fields", None)
        if not isinstance(fields, dict):
            continue
        for field in DATASET_FIELDS:
            value = fields.get(field)
            if isinstance(value, LiveDataChunkIterator):
                location = location_in_file(neurodata_object, field)
                found.append(LiveDataset(neurodata_object, field, value, location))
    return found


@contextlib.contextmanager
def set_aside(datasets: Sequence[LiveDataset]) -> Iterator[None]:
    """Within the block, each live dataset is wrapped in a plain DataIO (which neuroconv's walk
    skips); after it, the bare iterators are back."""
    try:
        for dataset in datasets:
            dataset.neurodata_object.fields[dataset.field] = DataIO(data=dataset.iterator)
        yield
    finally:
        for dataset in datasets:
            dataset.neurodata_object.fields[dataset.field] = dataset.iterator


def follow_shapes(
    dataset: LiveDataset,
    chunk_shape: Sequence[int] | None,
    buffer_shape: Sequence[int] | None,
) -> LiveDataChunkIterator:
    """An iterator of ``dataset`` whose chunk and buffer shapes are the ones given.

    Raises
    ------
    BackendConfigurationError
        No chunk shape (a live dataset grows: HDF5 needs chunks), an iterator that has handed
        out chunks already, or shapes it cannot take (hdmf's rules, and buffers of whole chunk
        rows while the length is unknown); the message names the location and the source.
    """
    old = dataset.iterator
    if chunk_shape is None:
        raise BackendConfigurationError(
            f"the backend configuration of {dataset.label} has chunk_shape None, but a live "
            "dataset grows while it is written, which needs chunks. Fix: set its chunk_shape "
            f"(e.g. {tuple(old.chunk_shape)}, the iterator's own)."
        )
    chunks = tuple(int(n) for n in chunk_shape)
    buffers = tuple(int(n) for n in buffer_shape) if buffer_shape is not None else None
    if buffers is None:  # whole chunks along the first axis, as many as the old buffer held
        rows = max(chunks[0], int(old.buffer_shape[0]) // chunks[0] * chunks[0])
        buffers = (rows, *chunks[1:])
    final = old.final_rows
    if final is not None and max(chunks[0], buffers[0]) > final:
        # A configuration made while the length was unknown, for an iterator made once it was
        # known (the source finished in between): as long as the data, as neuroconv's default
        # would be (hdmf and HDF5 refuse chunks longer than a dataset of fixed length).
        logger.info(
            "%s: the source has %d rows: chunk_shape %s and buffer_shape %s cut to them",
            dataset.location,
            final,
            chunks,
            buffers,
        )
        chunks = (rows_within(chunks[0], final), *chunks[1:])
        buffers = (rows_within(buffers[0], final), *buffers[1:])
    if chunks == tuple(old.chunk_shape) and buffers == tuple(old.buffer_shape):
        return old
    if old.frames_done:
        raise BackendConfigurationError(
            f"the iterator of {dataset.label} has handed out {old.frames_done} frames already, "
            f"so it cannot take chunk_shape {chunks} and buffer_shape {buffers}. Fix: configure "
            "the NWBFile before any write, or keep the iterator's shapes "
            f"{tuple(old.chunk_shape)} and {tuple(old.buffer_shape)}."
        )
    options = {k: v for k, v in old._to_dict().items() if k not in _RECIPE_KEYS}
    options.update(chunk_mb=None, buffer_gb=None, chunk_shape=chunks, buffer_shape=buffers)
    try:
        new = LiveDataChunkIterator(
            old.dataset,
            follower=old.follower,
            display_progress=old.display_progress,
            **options,
        )
    except IteratorOptionError as exc:
        raise BackendConfigurationError(
            f"the backend configuration of {dataset.label} asks for chunk_shape {chunks} and "
            f"buffer_shape {buffers}, which its iterator cannot take: {exc} Fix: a buffer_shape "
            "of whole chunks (each axis a multiple of chunk_shape's), within the frame shape "
            f"{tuple(old.maxshape[1:])} on the other axes."
        ) from exc
    logger.info(
        "%s follows its backend configuration: chunk_shape %s, buffer_shape %s",
        dataset.location,
        chunks,
        buffers,
    )
    return new
