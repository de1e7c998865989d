"""ConversionOptions: the options every live conversion shares, in one frozen object.

``copy_live`` and ``to_nwb`` take ``options=ConversionOptions(...)`` and, as before, each of
its fields as a keyword (a keyword overrides the field): ``copy_live(src, dst, timeout=30)``
and ``copy_live(src, dst, options=ConversionOptions(timeout=30))`` are the same. What differs
between the outputs (compression and its default, stages, the NWB metadata) stays a keyword of
each function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ConversionOptions"]


@dataclass(frozen=True)
class ConversionOptions:
    """How a live conversion follows its source and writes its destination.

    Parameters
    ----------
    key_paths, finished_path
        The source's keys and finished flag (default: found in the known layouts).
    chunk_mb, chunk_shape, buffer_gb, buffer_shape
        As for :class:`~h5live.LiveDataChunkIterator`, for the first live dataset (default:
        chunks of whole frames of about 10 MB, buffers of 128 MB); the others get chunks of
        whole chunk rows of it.
    max_latency_s
        A frame complete in the source is in the destination within about this long
        (``None``: whole buffers only, each chunk written once).
    timeout, poll_interval_s, open_timeout_s
        Idle timeout of the source, its poll interval, how long to wait for it to appear.
    resume, overwrite
        Continue an existing output of this source, or replace an existing file by a new one.
    display_progress, progress_bar_class, progress_bar_options
        A tqdm progress bar (frames, MB/s, lag behind the writer).
    workers
        Threads that encode the chunks of a compressed destination, written in order with
        ``write_direct_chunk`` (``None``: one per core this process may use; ``0``: HDF5's
        filter pipeline encodes them, on one core). Chunks copied raw need none.
    """

    key_paths: Sequence[str] | None = None
    finished_path: str | None = None
    chunk_mb: float | None = None
    chunk_shape: tuple[int, ...] | None = None
    buffer_gb: float | None = None
    buffer_shape: tuple[int, ...] | None = None
    max_latency_s: float | None = 1.0
    timeout: float | None = 10.0
    poll_interval_s: float = 0.001
    open_timeout_s: float = 10.0
    resume: bool = False
    overwrite: bool = False
    display_progress: bool = False
    progress_bar_class: Callable[..., Any] | None = None
    progress_bar_options: dict[str, Any] | None = None
    workers: int | None = None

    @classmethod
    def of(
        cls, options: ConversionOptions | None, keywords: Mapping[str, Any], caller: str
    ) -> ConversionOptions:
        """``options`` (or the defaults) with the fields given as ``keywords`` replaced.

        Raises
        ------
        TypeError
            A keyword that is no field, as for any unexpected keyword of ``caller``.
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(keywords) - fields)
        if unknown:
            raise TypeError(
                f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}. "
                f"Fix: use one of its own or a field of h5live.ConversionOptions "
                f"({', '.join(sorted(fields))})."
            )
        return dataclasses.replace(options or cls(), **keywords)
