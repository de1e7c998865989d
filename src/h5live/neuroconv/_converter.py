"""LiveNWBConverter and LiveConverterPipe: neuroconv's converters, written live.

neuroconv's ``NWBConverter.run_conversion`` hands the NWBFile its interfaces filled to its
module-level ``configure_and_write_nwbfile``, which refuses a live source of unknown length
and writes iterators one after the other. These subclasses keep every check, the metadata and
conversion-option validation and the temporal alignment of neuroconv's ``run_conversion``, and
write through :func:`h5live.neuroconv.configure_and_write_nwbfile`: live datasets of unknown
length, configurations followed, every live dataset round-robin (two live sources advance
together). :class:`h5live.neuroconv.LiveHDF5Interface` sessions are closed at the end.
"""

from __future__ import annotations

from typing import Any, Literal

from neuroconv import ConverterPipe, NWBConverter

from h5live.neuroconv._configuration import get_default_backend_configuration
from h5live.neuroconv._private import LiveWriting

__all__ = ["LiveConverterPipe", "LiveNWBConverter"]


class _LiveConversion(LiveWriting):
    """What the live converters add to neuroconv's."""

    data_interface_objects: dict[str, Any]

    def _filled_nwbfile(
        self, nwbfile: Any | None, metadata: dict[str, Any], conversion_options: dict[str, Any]
    ) -> Any:
        converter: Any = self
        if nwbfile is not None:
            converter.add_to_nwbfile(
                nwbfile=nwbfile, metadata=metadata, conversion_options=conversion_options
            )
            return nwbfile
        return converter.create_nwbfile(metadata=metadata, conversion_options=conversion_options)

    def run_conversion(self, nwbfile_path: Any, *args: Any, **kwargs: Any) -> None:
        """neuroconv's ``run_conversion`` (same arguments and checks), written by
        :func:`h5live.neuroconv.configure_and_write_nwbfile`."""
        try:
            super().run_conversion(nwbfile_path, *args, **kwargs)  # type: ignore[misc]
        finally:
            self.close()

    @staticmethod
    def get_default_backend_configuration(
        nwbfile: Any, backend: Literal["hdf5", "zarr"] = "hdf5"
    ) -> Any:
        """:func:`h5live.neuroconv.get_default_backend_configuration` (live datasets of
        unknown length included)."""
        return get_default_backend_configuration(nwbfile, backend=backend)

    def close(self) -> None:
        """Close the sessions of the live interfaces (idempotent)."""
        from h5live.neuroconv._interface import LiveHDF5Interface

        for interface in self.data_interface_objects.values():
            if isinstance(interface, (LiveHDF5Interface, _LiveConversion)):
                interface.close()


class LiveNWBConverter(_LiveConversion, NWBConverter):  # type: ignore[misc]
    """neuroconv's ``NWBConverter``, whose ``run_conversion`` writes live sources of unknown
    length and follows an edited backend configuration. Subclass it as you would
    ``NWBConverter`` (``data_interface_classes = dict(...)``)."""


class LiveConverterPipe(_LiveConversion, ConverterPipe):  # type: ignore[misc]
    """neuroconv's ``ConverterPipe`` (a list or dict of interfaces), whose ``run_conversion``
    writes live sources of unknown length round-robin and follows an edited backend
    configuration.

    Examples
    --------
    >>> converter = LiveConverterPipe([LiveHDF5Interface("a.h5", rate=30.0),  # doctest: +SKIP
    ...                                LiveHDF5Interface("b.h5", rate=100.0)])
    >>> converter.run_conversion("session.nwb", metadata=metadata)  # doctest: +SKIP
    """
