"""Errors of h5live's neuroconv integration (both an h5live error and a ``ValueError``)."""

from __future__ import annotations

from h5live.errors import H5LiveError

__all__ = ["BackendConfigurationError", "NWBSourceError"]


class NWBSourceError(H5LiveError, ValueError):
    """A source that cannot become the NWB series asked for: a grid scan (an NWB series has
    one time axis), no timing (neither a rate nor timestamps), frames that do not suit the
    series type, or metadata that contradicts it."""


class BackendConfigurationError(H5LiveError, ValueError):
    """A backend configuration that a live dataset cannot follow (no entry for it, no chunks,
    or chunk and buffer shapes its iterator cannot take)."""
