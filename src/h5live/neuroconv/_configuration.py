"""neuroconv backend configurations that hold live datasets of unknown length.

Contract
--------
- neuroconv 0.10 takes a dataset's full shape from ``get_data_shape`` (the iterator's
  ``maxshape``) into a pydantic field of integers, so a live source of unknown length
  (``maxshape`` ``(None, ...)``) fails its default configuration before anything is written.
  :func:`get_default_backend_configuration` (same signature as neuroconv's) lets neuroconv
  configure every other dataset, then adds one :class:`LiveHDF5DatasetIOConfiguration` (or
  :class:`LiveZarrDatasetIOConfiguration`) per live dataset: neuroconv's own entry with
  neuroconv's own defaults (the iterator's chunk and buffer shapes, gzip; shuffle for
  timestamps) whose ``full_shape`` may hold ``None`` on the growing axis. Its shape checks are
  neuroconv's, with ``None`` taken as a length without end.
- :func:`configure_backend` (same signature as neuroconv's) applies a configuration: each live
  dataset gets an iterator that follows its entry's chunk *and* buffer shapes
  (:func:`~h5live.neuroconv._datasets.follow_shapes`) wrapped in the backend's DataIO with the
  entry's chunks and compression; neuroconv's ``configure_backend`` does the rest. Every live
  entry is checked before anything is changed, so a refused configuration leaves the NWBFile
  as it was.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Literal

from neuroconv.tools.nwb_helpers import (
    HDF5BackendConfiguration,
    HDF5DatasetIOConfiguration,
    ZarrBackendConfiguration,
    ZarrDatasetIOConfiguration,
    get_default_dataset_io_configurations,
)
from neuroconv.tools.nwb_helpers import configure_backend as neuroconv_configure_backend
from neuroconv.tools.nwb_helpers import (
    get_default_backend_configuration as neuroconv_default_backend_configuration,
)
from neuroconv.tools.nwb_helpers._configuration_models._base_dataset_io import (
    DatasetIOConfiguration,
)
from neuroconv.utils.str_utils import human_readable_size
from pydantic import Field, model_validator

from h5live.errors import BackendConfigurationError
from h5live.neuroconv._datasets import follow_shapes, live_datasets, set_aside

__all__ = [
    "LiveHDF5DatasetIOConfiguration",
    "LiveZarrDatasetIOConfiguration",
    "configure_backend",
    "get_default_backend_configuration",
]

Backend = Literal["hdf5", "zarr"]
BackendConfiguration = HDF5BackendConfiguration | ZarrBackendConfiguration

_FULL_SHAPE = Field(
    description=(
        "The maximum shape of the entire dataset; None on an axis that grows while a live "
        "source is written (its final length is not known yet)."
    ),
    frozen=True,
)


def _check_shapes(values: Any) -> Any:
    """neuroconv's shape checks, with a ``None`` axis of ``full_shape`` taken as endless."""
    full = values.get("full_shape") if isinstance(values, dict) else None
    if full is None:
        return DatasetIOConfiguration.validate_all_shapes(values)
    endless = tuple(sys.maxsize if n is None else n for n in full)
    try:
        DatasetIOConfiguration.validate_all_shapes({**values, "full_shape": endless})
    except ValueError as exc:  # say None where the check saw a length without end
        raise ValueError(str(exc).replace(str(sys.maxsize), "None")) from None
    return values


def _full_size(full_shape: tuple[int | None, ...], dtype: Any) -> int | None:
    """Bytes of a dataset of ``full_shape``, None if an axis is of unknown length."""
    if any(n is None for n in full_shape):
        return None
    return math.prod(n for n in full_shape if n is not None) * int(dtype.itemsize)


def _describe(configuration: Any) -> str:
    """neuroconv's printout of a dataset configuration, with an unknown length said so."""
    size = configuration.full_size_in_bytes
    text = (
        f"\n{configuration.location_in_file}"
        f"\n{'-' * len(configuration.location_in_file)}"
        f"\n  dtype : {configuration.dtype}"
        f"\n  full shape of source array : {configuration.full_shape}"
        "\n  full size of source array : "
        + ("unknown: a live source, still growing" if size is None else human_readable_size(size))
        + "\n"
        f"\n  buffer shape : {configuration.buffer_shape}"
        "\n  expected RAM usage : "
        f"{human_readable_size(configuration.maximum_ram_usage_per_iteration_in_bytes)}"
        "\n"
    )
    if configuration.chunk_shape is not None:
        text += (
            f"\n  chunk shape : {configuration.chunk_shape}"
            "\n  disk space usage per chunk : "
            f"{human_readable_size(configuration.disk_space_usage_per_chunk_in_bytes)}\n"
        )
    if configuration.compressors is not None:
        text += f"\n  compressors : {configuration.compressors}"
    if configuration.compressor_options is not None:
        text += f"\n  compressor options : {configuration.compressor_options}"
    if configuration.compressors is not None or configuration.compressor_options is not None:
        text += "\n"
    return text


class LiveHDF5DatasetIOConfiguration(HDF5DatasetIOConfiguration):  # type: ignore[misc]
    """neuroconv's HDF5 dataset configuration, for a live dataset whose length may be unknown
    (``full_shape`` ``(None, ...)``). Edit ``chunk_shape``, ``buffer_shape``,
    ``compressors`` and ``compressor_options`` as for any dataset: the live iterator follows
    them (:func:`h5live.neuroconv.configure_backend`)."""

    full_shape: tuple[int | None, ...] = _FULL_SHAPE

    @model_validator(mode="before")
    @classmethod
    def validate_all_shapes(cls, values: Any) -> Any:
        return _check_shapes(values)

    @property
    def full_size_in_bytes(self) -> int | None:
        """The size of the whole dataset, or None while its length is unknown."""
        return _full_size(self.full_shape, self.dtype)

    def __str__(self) -> str:
        return _describe(self)


class LiveZarrDatasetIOConfiguration(ZarrDatasetIOConfiguration):  # type: ignore[misc]
    """neuroconv's Zarr dataset configuration, for a live dataset whose length may be unknown
    (as :class:`LiveHDF5DatasetIOConfiguration`)."""

    full_shape: tuple[int | None, ...] = _FULL_SHAPE

    @model_validator(mode="before")
    @classmethod
    def validate_all_shapes(cls, values: Any) -> Any:
        return _check_shapes(values)

    @property
    def full_size_in_bytes(self) -> int | None:
        """The size of the whole dataset, or None while its length is unknown."""
        return _full_size(self.full_shape, self.dtype)

    def __str__(self) -> str:
        return _describe(self)


LIVE_DATASET_CONFIGURATIONS: dict[str, Any] = {
    "hdf5": LiveHDF5DatasetIOConfiguration,
    "zarr": LiveZarrDatasetIOConfiguration,
}


def get_default_backend_configuration(nwbfile: Any, backend: Backend = "hdf5") -> Any:
    """neuroconv's default backend configuration, live datasets of unknown length included.

    Same signature and result as ``neuroconv.tools.nwb_helpers.get_default_backend_configuration``;
    each dataset holding a bare :class:`h5live.LiveDataChunkIterator` gets a
    :class:`LiveHDF5DatasetIOConfiguration` (``backend="zarr"``:
    :class:`LiveZarrDatasetIOConfiguration`) with neuroconv's defaults for an iterator: its
    chunk and buffer shapes, gzip (and shuffle for timestamps).

    Parameters
    ----------
    nwbfile
        The in-memory ``pynwb.NWBFile``.
    backend
        ``"hdf5"`` or ``"zarr"``.

    Returns
    -------
    HDF5BackendConfiguration or ZarrBackendConfiguration

    Examples
    --------
    >>> configuration = get_default_backend_configuration(nwbfile, backend="hdf5")  # doctest: +SKIP
    >>> entry = configuration.dataset_configurations["acquisition/camera/data"]  # doctest: +SKIP
    >>> entry.chunk_shape = (8, 64, 64); entry.buffer_shape = (64, 64, 64)  # doctest: +SKIP
    """
    if backend not in LIVE_DATASET_CONFIGURATIONS:
        raise BackendConfigurationError(
            f"backend {backend!r} is not one of 'hdf5', 'zarr'. Fix: pass backend='hdf5' or "
            "backend='zarr'."
        )
    live = live_datasets(nwbfile)
    with set_aside(live):
        configuration = neuroconv_default_backend_configuration(nwbfile=nwbfile, backend=backend)
    model = LIVE_DATASET_CONFIGURATIONS[backend]
    for dataset in live:
        entry = model.from_neurodata_object_with_defaults(
            neurodata_object=dataset.neurodata_object, dataset_name=dataset.field
        )
        configuration.dataset_configurations[entry.location_in_file] = entry
    return configuration


def configure_backend(nwbfile: Any, backend_configuration: Any) -> None:
    """Apply a backend configuration to ``nwbfile``; live datasets follow their entries.

    Same signature as ``neuroconv.tools.nwb_helpers.configure_backend``. Each live dataset's
    iterator is rebuilt, if needed, with its entry's chunk and buffer shapes, and wrapped in the
    backend's DataIO with the entry's chunks and compression; neuroconv configures the rest.
    An entry is found by location (``acquisition/camera/data``), as neuroconv remaps a
    configuration made from another NWBFile of the same structure. Datasets in a DataIO
    already (configured before, or wrapped by the user) are left as they are, as neuroconv's
    default configuration leaves them, so applying a configuration twice is harmless.

    Raises
    ------
    BackendConfigurationError
        A live dataset without an entry, or with shapes its iterator cannot take; nothing of
        ``nwbfile`` has changed then.
    """
    entries = backend_configuration.dataset_configurations
    by_object = {(e.object_id, e.dataset_name): e for e in entries.values()}
    live = live_datasets(nwbfile)
    planned = []
    for dataset in live:
        entry = entries.get(dataset.location) or by_object.get(
            (dataset.neurodata_object.object_id, dataset.field)
        )
        if entry is None:
            raise BackendConfigurationError(
                f"the backend configuration has no entry for the live dataset {dataset.label}. "
                "Fix: make the configuration from this NWBFile with "
                "h5live.neuroconv.get_default_backend_configuration(nwbfile, backend=...)."
            )
        planned.append(
            (dataset, entry, follow_shapes(dataset, entry.chunk_shape, entry.buffer_shape))
        )
    data_io_class = backend_configuration.data_io_class
    for dataset, entry, iterator in planned:
        kwargs = entry.get_data_io_kwargs()
        kwargs["chunks"] = tuple(iterator.chunk_shape)  # the entry's, as the data allows
        dataset.neurodata_object.fields[dataset.field] = iterator
        dataset.neurodata_object.set_data_io(
            dataset_name=dataset.field, data_io_class=data_io_class, data_io_kwargs=kwargs
        )
    # What neuroconv would configure now (the live datasets are in a DataIO by now, and so are
    # datasets configured before): the rest of the entries, by location.
    open_to_configuration = {
        entry.location_in_file
        for entry in get_default_dataset_io_configurations(
            nwbfile=nwbfile, backend=backend_configuration.backend
        )
    }
    rest = {key: entry for key, entry in entries.items() if key in open_to_configuration}
    neuroconv_configure_backend(
        nwbfile=nwbfile,
        backend_configuration=backend_configuration.model_copy(
            update={"dataset_configurations": rest}
        ),
    )
