"""H5LiveSource: a ``dranspose replay`` source that follows live HDF5 files.

Contract
--------
- The class has what ``dranspose replay -s module:Class`` needs: a constructor that works
  without arguments (it reads :data:`h5live.dranspose.CONFIG_ENV`) and
  ``get_source_generators()``.
- It returns ONE generator that carries every configured stream. dranspose's replay loop
  (``dranspose/replay.py``) calls ``next()`` on every generator and ends the whole replay at the
  first ``StopIteration``: with one generator per stream, the messages a longer stream still
  had would be dropped without a word.
- Events are numbered as dranspose's controller numbers them (``MappingSequence`` puts a
  reserved start event before the trigger map and an end event after it): event 0 holds every
  stream's header; event ``i + 1`` holds frame ``i`` (flat index) of every stream that has it,
  yielded as soon as it is complete in every file it comes from; the last event,
  ``n + 1`` for ``n`` frames in the longest stream, holds every stream's end message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from h5live.dranspose._feed import StinsFeed
from h5live.dranspose.config import DransposeConfig, load_config

__all__ = ["H5LiveSource"]

logger = logging.getLogger(__name__)


class H5LiveSource:
    """STINS events from live HDF5 files, for ``dranspose replay -s``.

    Parameters
    ----------
    config
        The streams to follow (see :func:`h5live.dranspose.load_config`); ``None`` (what
        dranspose passes): read from the environment variable ``H5LIVE_DRANSPOSE_CONFIG``.

    Raises
    ------
    ValueError
        No configuration, or an invalid one.

    Examples
    --------
    Shell::

        H5LIVE_DRANSPOSE_CONFIG='{"streams": {"eiger": "scan.h5"}}' \\
            dranspose replay -w worker:MyWorker -r reducer:MyReducer \\
            -s h5live.dranspose:H5LiveSource

    Python:

    >>> from dranspose.replay import replay  # doctest: +SKIP
    >>> os.environ["H5LIVE_DRANSPOSE_CONFIG"] = "streams.yaml"  # doctest: +SKIP
    >>> replay("worker:MyWorker", "reducer:MyReducer", None,
    ...        "h5live.dranspose:H5LiveSource", None)  # doctest: +SKIP
    """

    def __init__(
        self, config: DransposeConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None
    ) -> None:
        self.config = load_config(config)

    def get_source_generators(self) -> list[Iterator[Any]]:
        """One generator of ``dranspose.event.InternalWorkerMessage`` for all the streams."""
        return [self.events()]

    def events(self) -> Iterator[Any]:
        """Yield the events of every stream as their frames become complete (see the module
        docstring for the numbering); the files are opened on the first ``next()``."""
        from dranspose.event import InternalWorkerMessage, StreamData

        def message(event: int, frames: dict[str, list[bytes]]) -> Any:
            streams = {name: StreamData(typ="STINS", frames=f) for name, f in frames.items()}
            return InternalWorkerMessage(event_number=event, streams=streams)

        names = self.config.names
        with StinsFeed(self.config) as feed:
            yield message(0, {name: feed.header(name) for name in names})
            live = list(names)
            index = 0
            while live:
                frames = {}
                for name in list(live):
                    found = feed.frame(name, index)
                    if found is None:
                        live.remove(name)
                        logger.info(
                            "stream %r ended after %d frame(s) (%s)",
                            name,
                            index,
                            feed.stop_reason(name),
                        )
                    else:
                        frames[name] = found
                if not frames:
                    break
                yield message(index + 1, frames)
                index += 1
            yield message(index + 1, {name: feed.end(name) for name in names})

    def __repr__(self) -> str:
        streams = ", ".join(f"{s.name}={s.path}:{s.dataset}" for s in self.config.streams)
        return f"<H5LiveSource {streams}>"
