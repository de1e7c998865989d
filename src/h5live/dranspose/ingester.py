"""H5LiveIngester: a dranspose ingester that follows live HDF5 files (distributed mode).

Contract
--------
- For each trigger map, every active stream yields, in the order dranspose assigns events:
  its STINS header (the reserved start event), one image per frame as it becomes complete, and
  its end message once the source has stopped (the reserved end event). The trigger map must
  have one event per frame.
- Streams of one file share one open file and one follower (see ``h5live.dranspose._feed``),
  created afresh for each trigger map, so a new scan written to the same path is followed
  from its start.
- No h5py call and no wait runs on the event loop: they run on one worker thread of the
  ingester (h5py serialises threads anyway, and one thread keeps the file handles to one
  thread). A new trigger map or ``close()`` stops a thread that waits for the writer within a
  poll interval.
- Run it with ``python -m h5live.dranspose`` (dranspose's ``dranspose ingester`` only runs
  subclasses of its own ingesters), configured by the environment: ``REDIS_URL``,
  ``INGESTER_URL``, ``INGESTER_STREAMS`` (default: every configured stream) and
  ``H5LIVE_DRANSPOSE_CONFIG``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from dranspose.event import StreamData
from dranspose.ingester import Ingester, IngesterSettings

from h5live.dranspose._feed import StinsFeed
from h5live.dranspose.config import DransposeConfig, load_config

__all__ = ["H5LiveIngester", "H5LiveIngesterSettings"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class H5LiveIngesterSettings(IngesterSettings):  # type: ignore[misc]
    """dranspose's ingester settings, plus ``h5live_dranspose_config``
    (environment variable ``H5LIVE_DRANSPOSE_CONFIG``): a file path or JSON text."""

    h5live_dranspose_config: str | None = None


class H5LiveIngester(Ingester):  # type: ignore[misc]
    """Feed the frames of live HDF5 files to dranspose workers as STINS streams.

    Parameters
    ----------
    settings
        dranspose's settings (default: from the environment).
    config
        The streams to follow (default: ``settings.h5live_dranspose_config``, else
        ``$H5LIVE_DRANSPOSE_CONFIG``).

    Raises
    ------
    ValueError
        No configuration, or an ingester stream that it does not configure.

    Examples
    --------
    >>> ingester = H5LiveIngester(  # doctest: +SKIP
    ...     H5LiveIngesterSettings(ingester_streams=["eiger"]),
    ...     config={"streams": {"eiger": "scan.h5"}},
    ... )
    >>> await ingester.run()  # doctest: +SKIP
    """

    def __init__(
        self,
        settings: H5LiveIngesterSettings | None = None,
        *,
        config: DransposeConfig | dict[str, Any] | str | None = None,
    ) -> None:
        if settings is None:
            settings = H5LiveIngesterSettings()
        self.config = load_config(
            config if config is not None else settings.h5live_dranspose_config
        )
        missing = [s for s in settings.ingester_streams if s not in self.config.names]
        if missing:
            raise ValueError(
                f"ingester streams {missing} are not in the h5live configuration (it has "
                f"{self.config.names}). Fix: configure them, or set INGESTER_STREAMS to "
                "configured streams."
            )
        super().__init__(settings=settings)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="h5live-ingester")
        self._feed: StinsFeed | None = None
        self._feed_mapping: Any = None

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking h5py work on the ingester's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _retire_feed(self) -> None:
        """Stop the current feed now and close it on the reading thread, in order."""
        if self._feed is not None:
            self._feed.stop()
            self._executor.submit(self._feed.close)
            self._feed = None

    def _feed_for_mapping(self) -> StinsFeed:
        """The feed of the current trigger map, shared by its streams."""
        if self._feed is None or self._feed_mapping != self.state.mapping_uuid:
            self._retire_feed()
            self._feed = StinsFeed(self.config, list(self.active_streams))
            self._feed_mapping = self.state.mapping_uuid
        return self._feed

    async def run_source(self, stream: str) -> AsyncIterator[StreamData]:
        """Yield the header, the frames as they become complete, then the end of ``stream``."""
        feed = self._feed_for_mapping()
        try:
            yield StreamData(typ="STINS", frames=await self._call(feed.header, stream))
            index = 0
            while (frames := await self._call(feed.frame, stream, index)) is not None:
                yield StreamData(typ="STINS", frames=frames)
                index += 1
            reason = await self._call(feed.stop_reason, stream)
            self._logger.info("stream %r ended after %d frame(s) (%s)", stream, index, reason)
            yield StreamData(typ="STINS", frames=await self._call(feed.end, stream))
        except Exception:
            self._logger.exception("h5live could not follow stream %r", stream)
            raise
        self._logger.warning(
            "stream %r: the trigger map asks for more events than the source had frames; "
            "waiting for the next trigger map",
            stream,
        )
        await asyncio.Event().wait()

    async def stop_source(self, stream: str) -> None:
        """Stop following (a new trigger map, or closing); the files are closed in order."""
        self._retire_feed()

    async def close(self) -> None:
        """Stop following, close the files, then dranspose's part."""
        await super().close()
        self._retire_feed()
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    def __repr__(self) -> str:
        return f"<H5LiveIngester {self.state.name!r} streams={self.config.names}>"
