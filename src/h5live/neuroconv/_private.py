"""neuroconv's private names that h5live relies on, in one place (neuroconv 0.10.2).

- ``_find_location_in_memory_nwbfile``: where a neurodata object's dataset will be in the
  file (``acquisition/<name>/data``): the key of a backend configuration's entries.
- ``_add_device_to_nwbfile``: neuroconv's way to add a device of ``metadata["Devices"]``
  (idempotent on the name, models and device types included).
- ``BaseDataInterface._write_nwbfile`` and ``NWBConverter._write_nwbfile`` (and their
  ``_append_nwbfile``): what ``run_conversion`` calls to write a new file (respectively to
  append), after its checks and the metadata validation. :class:`LiveWriting` overrides them,
  so that a conversion keeps every check of neuroconv's ``run_conversion`` and writes through
  :func:`h5live.neuroconv.configure_and_write_nwbfile`.

``tests/test_neuroconv.py`` checks that these names exist with the signatures assumed here.
"""

from __future__ import annotations

from typing import Any

from neuroconv.tools.nwb_helpers import _add_device_to_nwbfile
from neuroconv.tools.nwb_helpers._configuration_models._base_dataset_io import (
    _find_location_in_memory_nwbfile,
)

from h5live.errors import NWBSourceError

__all__ = ["ASSUMED_NEUROCONV", "LiveWriting", "add_device", "location_in_file"]

#: The neuroconv release whose private names this module was written against.
ASSUMED_NEUROCONV = "0.10.2"


def location_in_file(neurodata_object: Any, field_name: str) -> str:
    """Where ``neurodata_object``'s ``field_name`` will be in the file, as neuroconv names it
    (``"acquisition/camera/data"``)."""
    return str(
        _find_location_in_memory_nwbfile(neurodata_object=neurodata_object, field_name=field_name)
    )


def add_device(nwbfile: Any, metadata: dict[str, Any], metadata_key: str) -> Any:
    """The device ``metadata["Devices"][metadata_key]``, added to ``nwbfile`` unless a device
    of its name is there already (neuroconv's own helper)."""
    return _add_device_to_nwbfile(nwbfile, metadata=metadata, metadata_key=metadata_key)


class LiveWriting:
    """Mixin for a neuroconv ``BaseDataInterface`` or ``NWBConverter``: ``run_conversion``
    writes a new file through :func:`h5live.neuroconv.configure_and_write_nwbfile` (live
    sources of unknown length, the configuration's shapes followed, every live dataset
    written round-robin) and refuses to append a live source to a file on disk.

    The class it is mixed into says how it fills an NWBFile (:meth:`_filled_nwbfile`).
    """

    def _filled_nwbfile(
        self, nwbfile: Any | None, metadata: dict[str, Any], conversion_options: dict[str, Any]
    ) -> Any:
        raise NotImplementedError  # pragma: no cover - the classes below say how

    def _write_nwbfile(
        self,
        nwbfile_path: Any,
        nwbfile: Any | None,
        metadata: dict[str, Any],
        backend: Any,
        backend_configuration: Any,
        conversion_options: dict[str, Any] | None,
    ) -> None:
        from h5live.neuroconv._write import configure_and_write_nwbfile

        filled = self._filled_nwbfile(nwbfile, metadata, conversion_options or {})
        configure_and_write_nwbfile(
            nwbfile=filled,
            nwbfile_path=nwbfile_path,
            backend=backend,
            backend_configuration=backend_configuration,
        )

    def _append_nwbfile(self, nwbfile_path: Any, *args: Any, **kwargs: Any) -> None:
        raise NWBSourceError(
            f"cannot append a live source to the NWB file {str(nwbfile_path)!r} on disk: a live "
            "write creates every object before its first frame, in a new file. Fix: write a "
            "new file (append_on_disk_nwbfile=False, overwrite=True to replace it), or append "
            "once the source has finished, with neuroconv's own interfaces."
        )
