"""StinsFeed: the complete frames of live sources as STINS messages, stream by stream.

Contract
--------
- Each stream is one dataset of a live source. Its messages are, in order: a header
  (``htype="header"``, ``msg_number`` 0), one image per complete frame, by flat frame index
  (``frame`` = index, ``msg_number`` = index + 1), and an end (``htype="series_end"``) once
  its source has stopped (finished flag, complete scan, or the idle timeout).
- Streams of one file share one open file and one :class:`h5live.KeyFollower` (HDF5 2.0 reads
  wrong chunks when a dataset is open twice in a process); each dataset is opened once.
- Order per frontier move, as for every h5live reader: the keys are read, then each dataset is
  refreshed once, then the frames up to that frontier are read without further refreshes.
- A frame stored as one bitshuffle-LZ4 chunk is sent as stored (``compression="bslz4"``, the
  HDF5 filter's 12-byte header included) without being decoded, when ``forward_compressed``;
  any other frame is read through h5live's :class:`h5live.FrameReader` and sent as raw bytes
  (``compression="none"``).
- Blocking calls (opening, waiting for frames) end with :class:`FeedStopped` soon after
  :meth:`StinsFeed.stop` is called from any thread. Everything else must run on one thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

import numpy as np

from h5live._closing import ClosingContext
from h5live._follow.follower import FollowPolicy, KeyFollower
from h5live._read.codecs import FILTER_BITSHUFFLE
from h5live._read.direct import _plain_dtype
from h5live._read.reader import FrameReader
from h5live._source.spec import SourceSpec, get_dataset
from h5live.dranspose.config import DransposeConfig, StreamConfig
from h5live.errors import H5LiveError

__all__ = ["FeedStopped", "StinsFeed", "is_bslz4_frame_chunked"]

logger = logging.getLogger(__name__)

_BITSHUFFLE_LZ4 = 2  # bitshuffle's compression code for LZ4 (cd_values[4])
READ_AHEAD = 64  # decoded frames read with one hyperslab read, at most


class FeedStopped(H5LiveError, RuntimeError):
    """The feed was stopped (by :meth:`StinsFeed.stop`) while it waited."""


def is_bslz4_frame_chunked(dataset: Any, scan_rank: int) -> bool:
    """Whether every chunk of ``dataset`` is one frame compressed by bitshuffle-LZ4 alone,
    with stored bytes that are the values (no type conversion)."""
    chunks = getattr(dataset, "chunks", None)
    frame_shape = tuple(dataset.shape[scan_rank:])
    if chunks is None or tuple(chunks) != (1,) * scan_rank + frame_shape:
        return False
    dcpl = dataset.id.get_create_plist()
    if dcpl.get_nfilters() != 1:
        return False
    code, _flags, cd_values, _name = dcpl.get_filter(0)
    dtype = np.dtype(dataset.dtype)
    return bool(
        code == FILTER_BITSHUFFLE
        and len(cd_values) > 4
        and cd_values[4] == _BITSHUFFLE_LZ4
        and cd_values[2] in (0, dtype.itemsize)
        and _plain_dtype(dataset, dtype)
    )


class _Stream:
    """One stream: its dataset's reader, its message counter, frames read ahead."""

    def __init__(self, config: StreamConfig, source: _Source, dataset: Any, raw: bool) -> None:
        self.config = config
        self.source = source
        self.reader = FrameReader(dataset, source.follower.scan_rank)
        self.dataset = dataset
        self.raw = raw
        self.dtype = np.dtype(dataset.dtype)
        self.frame_shape = list(self.reader.frame_shape)
        self.msg_number = 0
        self.fresh_upto = -1  # frames up to here were complete when the dataset was refreshed
        self.ahead: deque[tuple[int, bytes]] = deque()

    def image_header(self, index: int, compression: str) -> bytes:
        from dranspose.data.stream1 import Stream1Data

        self.msg_number += 1
        header = Stream1Data(
            msg_number=self.msg_number,
            frame=index,
            shape=self.frame_shape,
            type=str(self.dtype),
            compression=compression,
        )
        text: str = header.model_dump_json()
        return text.encode()

    def refresh(self, frontier: int) -> None:
        self.reader.refresh(frontier)
        self.fresh_upto = frontier
        self.ahead.clear()

    def position(self, index: int) -> tuple[int, ...]:
        """Where flat frame ``index`` sits in the scan (the first axis may grow)."""
        inner = self.reader.shape[1 : self.reader.scan_rank]
        position = []
        for n in reversed(inner):
            index, p = divmod(index, n)
            position.append(p)
        position.append(index)
        return tuple(reversed(position))

    def read_raw(self, index: int) -> bytes | None:
        """The stored bytes of frame ``index``'s chunk, if bitshuffle-LZ4 compressed them."""
        position = self.position(index)
        if position[0] >= self.reader.shape[0]:
            return None  # the reader raises the right error
        offset = position + (0,) * len(self.frame_shape)
        try:
            mask, chunk = self.dataset.id.read_direct_chunk(offset)
        # h5py raises MemoryError when HDF5 reports an unallocated chunk's size as 0 bytes.
        except (RuntimeError, OSError, ValueError, MemoryError):
            return None  # not allocated: the reader gives the fill value, or the error
        return None if mask else bytes(chunk)

    def read_decoded(self, index: int, frontier: int) -> bytes:
        """Frame ``index`` as raw bytes; reads up to :data:`READ_AHEAD` frames at once."""
        while self.ahead and self.ahead[0][0] < index:
            self.ahead.popleft()
        if not self.ahead or self.ahead[0][0] != index:
            self.ahead.clear()
            stop = min(frontier + 1, index + READ_AHEAD)
            for start, end in self.reader.boxes(index, stop):
                frames, _ = self.reader.read_frames(start, end)
                flat = frames.reshape((end - start, *self.frame_shape))
                self.ahead.extend((start + k, flat[k].tobytes()) for k in range(end - start))
        return self.ahead.popleft()[1]


class _Source:
    """One open source file and its follower, shared by its streams."""

    def __init__(self, file: Any, follower: KeyFollower) -> None:
        self.file = file
        self.follower = follower


class StinsFeed(ClosingContext):
    """STINS messages of the configured streams, as their frames become complete.

    Parameters
    ----------
    config
        The streams and how to follow them.
    streams
        The names of the streams to serve (default: all configured).

    Examples
    --------
    >>> with StinsFeed(load_config({"streams": {"eiger": "scan.h5"}})) as feed:  # doctest: +SKIP
    ...     header = feed.header("eiger")
    ...     first = feed.frame("eiger", 0)  # [image header JSON, frame bytes], or None
    """

    def __init__(self, config: DransposeConfig, streams: list[str] | None = None) -> None:
        self.config = config
        names = config.names if streams is None else list(streams)
        self._configs = {name: config.stream(name) for name in names}
        self._stop = threading.Event()
        self._sources: dict[Any, _Source] = {}
        self._streams: dict[str, _Stream] = {}
        self._closed = False

    # ------------------------------------------------------------------ waiting

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(max(seconds, 0.0)):
            raise FeedStopped("the h5live feed was stopped while it waited for the writer")

    def stop(self) -> None:
        """Make a blocked call raise :class:`FeedStopped` soon; callable from any thread."""
        self._stop.set()

    # ------------------------------------------------------------------ opening

    def _open_source(self, stream: StreamConfig) -> _Source:
        key = stream.source_key
        source = self._sources.get(key)
        if source is not None:
            return source
        spec = SourceSpec(
            stream.path,
            key_paths=stream.key_paths,
            finished_path=stream.finished_path,
            open_timeout_s=self.config.open_timeout_s,
        )
        file, layout = spec.open_resolved(sleep=self._sleep)
        try:
            policy = FollowPolicy(poll_interval_s=self.config.poll_interval_s)
            follower = KeyFollower(
                layout.keys,
                self.config.timeout_s,
                layout.finished,
                policy=policy,
                sleep=self._sleep,
            )
        except BaseException:
            file.close()
            raise
        source = self._sources[key] = _Source(file, follower)
        logger.info("%s: following %r", stream.path, follower)
        return source

    def _stream(self, name: str) -> _Stream:
        found = self._streams.get(name)
        if found is not None:
            return found
        if self._closed:
            raise ValueError("this StinsFeed is closed. Fix: make a new one.")
        try:
            config = self._configs[name]
        except KeyError:
            raise KeyError(
                f"stream {name!r} is not served by this feed (it serves {list(self._configs)})."
            ) from None
        source = self._open_source(config)
        dataset = get_dataset(source.file, config.dataset, "data")
        rank = source.follower.scan_rank
        raw = self.config.forward_compressed and is_bslz4_frame_chunked(dataset, rank)
        logger.info(
            "stream %r: %s %s, frames %s sent %s",
            name,
            config.path,
            config.dataset,
            tuple(dataset.shape[rank:]),
            "as stored (bslz4)" if raw else "decoded",
        )
        found = self._streams[name] = _Stream(config, source, dataset, raw)
        return found

    # ------------------------------------------------------------------ messages

    def header(self, name: str) -> list[bytes]:
        """The start message of stream ``name`` (opening its file, waiting for the writer).

        Raises
        ------
        SourceNotReadyError, DatasetNotFoundError
            The file or a dataset is not there in time.
        FeedStopped
            :meth:`stop` was called meanwhile.
        """
        from dranspose.data.stream1 import Stream1Start

        stream = self._stream(name)
        stream.msg_number = 0
        start = Stream1Start(
            msg_number=0,
            filename=stream.config.path,
            dataset=stream.config.dataset,
            frame_shape=stream.frame_shape,
            type=str(stream.dtype),
        )
        return [start.model_dump_json().encode()]

    def frame(self, name: str, index: int) -> list[bytes] | None:
        """The image message of frame ``index`` of stream ``name``, once it is complete.

        Returns
        -------
        list of bytes or None
            ``[image header JSON, frame bytes]``; None if the source stopped before that frame
            was complete (then send :meth:`end`).

        Raises
        ------
        FeedStopped
            :meth:`stop` was called while waiting.
        """
        stream = self._stream(name)
        follower = stream.source.follower
        if index > follower.current_max and not follower.wait_for(index):
            return None
        if index > stream.fresh_upto:
            stream.refresh(follower.current_max)
        if stream.raw:
            chunk = stream.read_raw(index)
            if chunk is not None:
                return [stream.image_header(index, "bslz4"), chunk]
        payload = stream.read_decoded(index, follower.current_max)
        return [stream.image_header(index, "none"), payload]

    def end(self, name: str) -> list[bytes]:
        """The end message of stream ``name``."""
        from dranspose.data.stream1 import Stream1End

        stream = self._stream(name)
        stream.msg_number += 1
        follower = stream.source.follower
        end = Stream1End(
            msg_number=stream.msg_number,
            frames=follower.current_max + 1,
            stop_reason=follower.stop_reason,
        )
        return [end.model_dump_json().encode()]

    def stop_reason(self, name: str) -> str | None:
        """Why stream ``name``'s source stopped (``"finished"``, ``"complete"``,
        ``"timeout"``), or None while it is followed."""
        return self._stream(name).source.follower.stop_reason

    # ------------------------------------------------------------------ resources

    def close(self) -> None:
        """Close the files (idempotent); call it on the thread that reads."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._streams.clear()
        for source in self._sources.values():
            source.follower.close()
            source.file.close()
        self._sources.clear()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"open files={len(self._sources)}"
        return f"<StinsFeed streams={list(self._configs)} {state}>"
