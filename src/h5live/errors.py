"""Exceptions and warnings raised by h5live.

Every exception subclasses :class:`H5LiveError` and a builtin that already means the right thing,
so ``except OSError`` or ``except ValueError`` keep working in code that does not know h5live.
Messages name what failed, the value, the file and dataset, and the fix.
"""

from __future__ import annotations

__all__ = [
    "BackendConfigurationError",
    "DatasetNotFoundError",
    "DirectChunkError",
    "DirectWriteError",
    "DuplicateHandleError",
    "FinishedDatasetError",
    "FollowTimeout",
    "FrameIndexError",
    "FrameReadError",
    "H5LiveError",
    "H5LiveWarning",
    "IteratorOptionError",
    "KeyDatasetError",
    "KeyRegressionError",
    "KeyRegressionWarning",
    "NWBSourceError",
    "OutputError",
    "OutputExistsError",
    "ScanShapeError",
    "SourceNotReadyError",
    "StageError",
]


class H5LiveError(Exception):
    """Base class of every error raised by h5live."""


class SourceNotReadyError(H5LiveError, OSError):
    """The source file could not be opened for SWMR reading before the deadline.

    Raised when the file does not exist, is not HDF5, or is held by a writer that has not
    switched SWMR mode on.
    """


class DatasetNotFoundError(H5LiveError, KeyError):
    """A dataset path given (or expected in a default layout) is not in the source file."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written.
        return str(self.args[0]) if self.args else ""


class KeyDatasetError(H5LiveError, ValueError):
    """A key dataset cannot be followed: wrong dtype, inconsistent scan rank, unreadable."""


class KeyRegressionError(KeyDatasetError):
    """In strict mode: a key already seen non-zero went back to zero (a writer error)."""


class FinishedDatasetError(H5LiveError, ValueError):
    """The finished dataset cannot be read as a single number."""


class FollowTimeout(H5LiveError, TimeoutError):
    """A wait with an explicit deadline ended before the frame it waited for was complete."""


class H5LiveWarning(UserWarning):
    """Base class of every warning issued by h5live."""


class KeyRegressionWarning(H5LiveWarning):
    """A key already seen non-zero went back to zero; frames are not delivered twice."""


class FrameIndexError(H5LiveError, IndexError):
    """A frame index outside the data, even after refreshing it."""


class ScanShapeError(H5LiveError, ValueError):
    """A data dataset whose scan shape does not match the keys'."""


class DirectChunkError(H5LiveError, ValueError):
    """A chunk cannot be read with ``read_direct_chunk`` and decoded in Python.

    Raised when direct reads are required but a filter has no Python decoder or its package is
    missing, and when a chunk's bytes do not decode to a whole chunk.
    """


class DuplicateHandleError(H5LiveError, RuntimeError):
    """A dataset h5live would refresh is open more than once in this process.

    With HDF5 2.0 every handle on it would then read wrong data; see ``h5live._source.handles``.
    """


class FrameReadError(H5LiveError, OSError):
    """Frames that the keys mark complete could not be read (e.g. a filter plugin is missing)."""


class OutputExistsError(H5LiveError, FileExistsError):
    """The destination exists and neither ``resume`` nor ``overwrite`` was asked for, or it
    cannot be resumed (another source, another layout, or another converter still writes it)."""


class OutputError(H5LiveError, OSError):
    """Writing the destination failed (e.g. the disk is full); the output is left valid and
    marked ``failed`` with the message, and can be resumed once the cause is fixed."""


class IteratorOptionError(H5LiveError, ValueError, AssertionError):
    """An invalid shape or size option of :class:`h5live.LiveDataChunkIterator`.

    For the options it shares with hdmf's ``GenericDataChunkIterator`` (``buffer_gb``,
    ``buffer_shape``, ``chunk_mb``, ``chunk_shape``), whose checks are ``assert`` statements, the
    message is hdmf's own and the error is also an ``AssertionError``, so code written against
    either catches it.
    """


class StageError(H5LiveError, ValueError):
    """A processing stage does not fit its input, or returned data unlike what it declared."""


class DirectWriteError(H5LiveError, ValueError):
    """The chunks of a dataset cannot be encoded in Python into what HDF5's filter pipeline
    stores (a filter, option or dtype without an encoder in h5live, a library missing).

    The write path catches it and writes the dataset through HDF5's own pipeline.
    """


class NWBSourceError(H5LiveError, ValueError):
    """A source that cannot become the NWB series asked for (neuroconv integration): a grid
    scan (an NWB series has one time axis), no timing (neither a rate nor timestamps), frames
    that do not suit the series type, or metadata that contradicts it."""


class BackendConfigurationError(H5LiveError, ValueError):
    """A neuroconv backend configuration that a live dataset cannot follow (no entry for it, no
    chunks, or chunk and buffer shapes its iterator cannot take)."""
