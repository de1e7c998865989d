"""configure_and_write_nwbfile: neuroconv's last step, for NWBFiles holding live datasets.

Contract
--------
- Same signature as ``neuroconv.tools.nwb_helpers.configure_and_write_nwbfile`` and the same
  checks, but the configuration is :func:`h5live.neuroconv.get_default_backend_configuration`'s
  (live datasets of unknown length included) and is applied by
  :func:`h5live.neuroconv.configure_backend` (the live iterators follow the chunk and buffer
  shapes it gives).
- Every live dataset is written round-robin (``exhaust_dci=False``: one chunk of each in turn),
  so that several live sources (two interfaces of one converter, frames and timestamps) advance
  together instead of one after the other.
- HDF5: through :data:`HDF5_IO`, h5live's live write path (:class:`h5live.LiveNWBHDF5IO`):
  every object is made first, then the file enters SWMR mode with h5live's bookkeeping and the
  live datasets are written so that pynwb, h5py, ``h5live follow`` and swmr_tools read the file
  while it is written (extent truth, latency bound, bookkeeping: that path's). An NWBFile whose
  live datasets come from several sources (followers) is written by
  :data:`HDF5_IO_SEVERAL_SOURCES` (pynwb's NWBHDF5IO: complete and valid at the end, not
  followable while written): the live path keeps one count of complete frames per file and
  would cut every series to the shortest source.
- Zarr: through :class:`h5live.neuroconv.LiveNWBZarrIO`, with the configuration's
  ``number_of_jobs`` (workers started with ``spawn``: a forked worker would inherit this
  process's handles on the sources).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

from hdmf.data_utils import DataIO
from pynwb import NWBHDF5IO

from h5live._iterate.iterator import LiveDataChunkIterator
from h5live._write.conversion import check_not_a_source, files_read
from h5live._write.live_nwb import LiveNWBHDF5IO
from h5live.errors import BackendConfigurationError
from h5live.neuroconv._configuration import configure_backend, get_default_backend_configuration
from h5live.neuroconv._datasets import DATASET_FIELDS

__all__ = ["HDF5_IO", "HDF5_IO_SEVERAL_SOURCES", "configure_and_write_nwbfile", "write_nwbfile"]

logger = logging.getLogger(__name__)

#: The IO class of HDF5 writes: h5live's live write path (the file followable while written).
HDF5_IO: Any = LiveNWBHDF5IO
#: The IO class of HDF5 writes whose live datasets come from several sources (see the module).
HDF5_IO_SEVERAL_SOURCES: Any = NWBHDF5IO


def live_iterators(nwbfile: Any) -> list[LiveDataChunkIterator]:
    """The live datasets of ``nwbfile``, bare or in a DataIO."""
    found = []
    for neurodata_object in nwbfile.all_children():
        fields = getattr(neurodata_object, "fields", None)
        if not isinstance(fields, dict):
            continue
        for field in DATASET_FIELDS:
            value = fields.get(field)
            if isinstance(value, DataIO):
                value = value.data
            if isinstance(value, LiveDataChunkIterator):
                found.append(value)
    return found


def live_sources(nwbfile: Any) -> int:
    """How many sources (followers) the live datasets of ``nwbfile`` come from."""
    return len({id(iterator.follower) for iterator in live_iterators(nwbfile)})


def _check_not_a_source(nwbfile: Any, path: str) -> None:
    """Refuse to write over a file that a live dataset of ``nwbfile`` reads."""
    for iterator in live_iterators(nwbfile):
        source = iterator.source_file
        check_not_a_source(path, files_read(source, iterator.follower, [iterator.dataset]), source)


def _hdf5_io(nwbfile: Any) -> Any:
    sources = live_sources(nwbfile)
    if sources <= 1:
        return HDF5_IO
    logger.warning(
        "the NWB file holds live datasets of %d sources: it is written by pynwb's NWBHDF5IO, "
        "complete and valid at the end but not followable while written (h5live's live write "
        "path keeps one count of complete frames per file)",
        sources,
    )
    return HDF5_IO_SEVERAL_SOURCES


def _jobs(number_of_jobs: int) -> int:
    """neuroconv's ``number_of_jobs`` (negative: all CPUs but ``-1 - n``) as a count."""
    if number_of_jobs > 0:
        return number_of_jobs
    return max(1, (os.cpu_count() or 1) + 1 + number_of_jobs)


def write_nwbfile(nwbfile: Any, nwbfile_path: str | os.PathLike[str], configuration: Any) -> None:
    """Write a configured ``nwbfile`` with the IO of ``configuration``'s backend, every live
    dataset round-robin."""
    path = os.fspath(nwbfile_path)
    _check_not_a_source(nwbfile, path)
    if configuration.backend == "zarr":
        from h5live.neuroconv._zarr import LiveNWBZarrIO

        jobs = _jobs(int(configuration.number_of_jobs))
        with LiveNWBZarrIO(path, mode="w") as io:
            if nwbfile.read_io is not None:  # exporting, as neuroconv does
                nwbfile.set_modified()
                io.export(nwbfile=nwbfile, src_io=nwbfile.read_io, write_args={"link_data": False})
            else:
                io.write(
                    nwbfile,
                    exhaust_dci=False,
                    number_of_jobs=jobs,
                    multiprocessing_context="spawn" if jobs > 1 else None,
                )
        return
    if nwbfile.read_io is not None:  # exporting, as neuroconv does
        with NWBHDF5IO(path, mode="w") as io:
            nwbfile.set_modified()
            io.export(nwbfile=nwbfile, src_io=nwbfile.read_io, write_args={"link_data": False})
        return
    with _hdf5_io(nwbfile)(path, mode="w") as io:
        io.write(nwbfile, exhaust_dci=False)


def configure_and_write_nwbfile(
    nwbfile: Any,
    nwbfile_path: str | os.PathLike[str] | None = None,
    backend: Literal["hdf5", "zarr"] | None = None,
    backend_configuration: Any | None = None,
) -> None:
    """Write an NWB file with a backend or backend configuration, live datasets included.

    Same signature as ``neuroconv.tools.nwb_helpers.configure_and_write_nwbfile``; use this one
    when ``nwbfile`` holds :class:`h5live.LiveDataChunkIterator` data of a source whose length
    is not known yet (neuroconv's refuses it), or when the iterators must follow an edited
    ``buffer_shape``/``chunk_shape`` (neuroconv's leaves their own buffers in place).

    Parameters
    ----------
    nwbfile
        The in-memory ``pynwb.NWBFile``.
    nwbfile_path
        Where to write it.
    backend
        ``"hdf5"`` or ``"zarr"``: its default configuration is used (if no
        ``backend_configuration``).
    backend_configuration
        The configuration to apply, e.g. from
        :func:`h5live.neuroconv.get_default_backend_configuration`, edited.

    Raises
    ------
    ValueError
        No ``nwbfile_path``, or ``backend`` and ``backend_configuration`` conflict (neuroconv's
        checks, as ``BackendConfigurationError``).
    BackendConfigurationError
        A live dataset the configuration does not describe, or whose shapes its iterator
        cannot take; raised before the file is created.

    Examples
    --------
    >>> nwbfile = converter.create_nwbfile(metadata=metadata)  # doctest: +SKIP
    >>> configuration = get_default_backend_configuration(nwbfile, backend="hdf5")  # doctest: +SKIP
    >>> configure_and_write_nwbfile(
    ...     nwbfile, nwbfile_path="session.nwb", backend_configuration=configuration
    ... )  # doctest: +SKIP
    """
    if nwbfile_path is None:
        raise BackendConfigurationError(
            "The 'nwbfile_path' parameter must be specified. Fix: pass where to write the file, "
            "e.g. nwbfile_path='session.nwb'."
        )
    if (
        backend is not None
        and backend_configuration is not None
        and backend != backend_configuration.backend
    ):
        raise BackendConfigurationError(
            "Both `backend` and `backend_configuration` were specified and are conflicting: "
            f"backend={backend!r}, backend_configuration.backend="
            f"{backend_configuration.backend!r}. Fix: pass one of them, or make them agree."
        )
    if backend_configuration is None:
        backend_configuration = get_default_backend_configuration(
            nwbfile, backend=backend or "hdf5"
        )
    configure_backend(nwbfile=nwbfile, backend_configuration=backend_configuration)
    write_nwbfile(nwbfile, nwbfile_path, backend_configuration)
