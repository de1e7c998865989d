"""neuroconv integration: live acquisitions converted where NWB users already work
(``pip install h5live[neuroconv]``).

- :class:`LiveHDF5Interface`: a neuroconv DataInterface over a file another process is writing
  (SWMR); its ``run_conversion`` works on a source of unknown length and writes while the
  acquisition runs.
- :func:`get_default_backend_configuration`, :func:`configure_backend` and
  :func:`configure_and_write_nwbfile`: neuroconv's functions of the same names and signatures,
  for NWBFiles holding :class:`h5live.LiveDataChunkIterator` data; use them where neuroconv's
  refuse a live source of unknown length (``'>' not supported between instances of 'int' and
  'NoneType'``) or where the iterators must follow an edited ``buffer_shape``/``chunk_shape``.
- :class:`LiveConverterPipe`, :class:`LiveNWBConverter`: neuroconv's converters, written so.
- :class:`LiveNWBZarrIO`: hdmf-zarr's NWBZarrIO that writes live sources completely, also in
  parallel (``number_of_jobs=N``); importable without neuroconv.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from h5live.errors import BackendConfigurationError, NWBSourceError

if TYPE_CHECKING:
    from h5live.neuroconv._configuration import (
        LiveHDF5DatasetIOConfiguration,
        LiveZarrDatasetIOConfiguration,
        configure_backend,
        get_default_backend_configuration,
    )
    from h5live.neuroconv._converter import LiveConverterPipe, LiveNWBConverter
    from h5live.neuroconv._interface import LiveHDF5Interface
    from h5live.neuroconv._write import configure_and_write_nwbfile
    from h5live.neuroconv._zarr import LiveNWBZarrIO

__all__ = [
    "BackendConfigurationError",
    "LiveConverterPipe",
    "LiveHDF5DatasetIOConfiguration",
    "LiveHDF5Interface",
    "LiveNWBConverter",
    "LiveNWBZarrIO",
    "LiveZarrDatasetIOConfiguration",
    "NWBSourceError",
    "configure_and_write_nwbfile",
    "configure_backend",
    "get_default_backend_configuration",
]

# Where each name lives: imported when first used, so that LiveNWBZarrIO does not need
# neuroconv. The errors live with h5live's others (h5live.errors) and are named here too.
_HOMES = {
    "LiveNWBZarrIO": "_zarr",
    "LiveHDF5DatasetIOConfiguration": "_configuration",
    "LiveZarrDatasetIOConfiguration": "_configuration",
    "configure_backend": "_configuration",
    "get_default_backend_configuration": "_configuration",
    "configure_and_write_nwbfile": "_write",
    "LiveConverterPipe": "_converter",
    "LiveNWBConverter": "_converter",
    "LiveHDF5Interface": "_interface",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'h5live.neuroconv' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"h5live.neuroconv.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
