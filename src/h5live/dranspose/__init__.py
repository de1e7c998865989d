"""dranspose integration: stream live HDF5 files into dranspose (``pip install h5live[dranspose]``).

- :class:`H5LiveSource`: a source for ``dranspose replay -s h5live.dranspose:H5LiveSource``.
- :class:`H5LiveIngester`: an ingester for dranspose's distributed mode
  (``python -m h5live.dranspose``).
- :func:`parse_stins` and :func:`decode_bslz4`: worker-side decoding of the frames they send.
- :func:`load_config`: the streams to follow, from ``$H5LIVE_DRANSPOSE_CONFIG`` or a file.

Importing this package does not import dranspose; the ingester (a dranspose subclass) is
imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from h5live.dranspose.config import CONFIG_ENV, DransposeConfig, StreamConfig, load_config
from h5live.dranspose.decode import decode_bslz4, default_block_size, parse_stins
from h5live.dranspose.source import H5LiveSource

if TYPE_CHECKING:
    from h5live.dranspose.ingester import H5LiveIngester, H5LiveIngesterSettings

__all__ = [
    "CONFIG_ENV",
    "DransposeConfig",
    "H5LiveIngester",
    "H5LiveIngesterSettings",
    "H5LiveSource",
    "StreamConfig",
    "decode_bslz4",
    "default_block_size",
    "load_config",
    "parse_stins",
]

_LAZY = ("H5LiveIngester", "H5LiveIngesterSettings")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from h5live.dranspose import ingester

        return getattr(ingester, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
