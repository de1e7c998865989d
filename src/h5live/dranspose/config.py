"""What h5live streams into dranspose: which datasets of which live files, as which streams.

The replay source and the ingester take no constructor arguments in dranspose's own tools
(``dranspose replay -s module:Class``), so they read this configuration from the environment
variable :data:`CONFIG_ENV`: a JSON or YAML file, or JSON text itself::

    # streams.yaml; H5LIVE_DRANSPOSE_CONFIG=streams.yaml dranspose replay -s ...
    timeout_s: 10                       # stop after 10 s without a new frame (no finished flag)
    streams:
      eiger: scan.h5                    # frames in /entry/data/data, keys in a known layout
      pilatus:
        path: other.h5
        dataset: /entry/instrument/pilatus/data
        key_paths: [/entry/keys/pilatus]
        finished_path: /entry/finished
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_ENV", "DransposeConfig", "StreamConfig", "load_config"]

#: The environment variable that holds the configuration (a file path, or JSON text).
CONFIG_ENV = "H5LIVE_DRANSPOSE_CONFIG"

_DEFAULT_DATASET = "/entry/data/data"
_STREAM_KEYS = ("path", "dataset", "key_paths", "finished_path")
_TOP_KEYS = ("streams", "timeout_s", "open_timeout_s", "poll_interval_s", "forward_compressed")


@dataclass(frozen=True)
class StreamConfig:
    """One dranspose stream: the frames of one dataset of a live source.

    Parameters
    ----------
    name
        The stream name dranspose knows it by (e.g. ``"eiger"``).
    path
        The source file.
    dataset
        The frames: a dataset whose leading dims are the scan.
    key_paths
        Key datasets (or groups of them); ``None``: a known layout's (``/entry/keys``, ...).
    finished_path
        The finished dataset; ``None``: the layout's, if the file has one.
    """

    name: str
    path: str
    dataset: str = _DEFAULT_DATASET
    key_paths: tuple[str, ...] | None = None
    finished_path: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", os.fspath(self.path))
        if isinstance(self.key_paths, str):
            object.__setattr__(self, "key_paths", (self.key_paths,))
        elif self.key_paths is not None:
            object.__setattr__(self, "key_paths", tuple(self.key_paths))
        if not self.name or ":" in self.name:
            raise ValueError(
                f"stream name {self.name!r} (file {self.path!r}) is empty or contains ':'. "
                "Fix: name streams as dranspose does, e.g. 'eiger'."
            )

    @property
    def source_key(self) -> tuple[str, tuple[str, ...] | None, str | None]:
        """Streams with equal keys are read from one open file, following one set of keys."""
        return (os.path.abspath(self.path), self.key_paths, self.finished_path)


@dataclass(frozen=True)
class DransposeConfig:
    """The streams to follow and how to follow them.

    Parameters
    ----------
    streams
        One or more streams; several may come from one file (read through one handle).
    timeout_s
        Idle timeout: a stream ends when no frame has completed for this long, if its file
        has not set its finished flag before. ``None``: wait for the flag only.
    open_timeout_s
        How long to wait for a source file to appear and become readable.
    poll_interval_s
        While waiting for a frame, poll the keys at most this often.
    forward_compressed
        Send bitshuffle-LZ4 chunks that hold one frame as they are stored
        (``compression="bslz4"``), without decoding them; ``False``: always decoded frames.
    """

    streams: tuple[StreamConfig, ...]
    timeout_s: float | None = 10.0
    open_timeout_s: float = 30.0
    poll_interval_s: float = 0.001
    forward_compressed: bool = True
    _by_name: dict[str, StreamConfig] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", tuple(self.streams))
        if not self.streams:
            raise ValueError(
                "no streams configured. Fix: give at least one, e.g. "
                '{"streams": {"eiger": "scan.h5"}}.'
            )
        names = [s.name for s in self.streams]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"stream names {doubled} are given twice. Fix: name each once.")
        if self.timeout_s is not None and not (
            self.timeout_s >= 0 and math.isfinite(self.timeout_s)
        ):
            raise ValueError(
                f"timeout_s must be None or a finite number of seconds >= 0, got "
                f"{self.timeout_s!r}."
            )
        if not self.open_timeout_s >= 0:
            raise ValueError(f"open_timeout_s must be >= 0, got {self.open_timeout_s!r}.")
        object.__setattr__(self, "_by_name", {s.name: s for s in self.streams})

    @property
    def names(self) -> list[str]:
        """The stream names, in configuration order."""
        return [s.name for s in self.streams]

    def stream(self, name: str) -> StreamConfig:
        """The stream called ``name``.

        Raises
        ------
        KeyError
            No such stream; the message lists the configured ones.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"stream {name!r} is not configured (configured: {self.names}). Fix: add it to "
                f"the streams of ${CONFIG_ENV}, or use one of those names in the trigger map."
            ) from None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DransposeConfig:
        """Build from the parsed JSON/YAML (see the module docstring).

        Raises
        ------
        ValueError
            Unknown keys, or values of the wrong kind.
        """
        unknown = sorted(set(raw) - set(_TOP_KEYS))
        if unknown:
            raise ValueError(
                f"unknown configuration keys {unknown}. Fix: use only {list(_TOP_KEYS)}."
            )
        streams_raw = raw.get("streams")
        if not isinstance(streams_raw, Mapping):
            raise ValueError(
                f"'streams' must map stream names to files, got {streams_raw!r}. Fix: e.g. "
                '{"streams": {"eiger": "scan.h5"}}.'
            )
        streams = []
        for name, value in streams_raw.items():
            if isinstance(value, (str, os.PathLike)):
                streams.append(StreamConfig(str(name), os.fspath(value)))
                continue
            if not isinstance(value, Mapping) or "path" not in value:
                raise ValueError(
                    f"stream {name!r} must be a file path or a mapping with 'path', got {value!r}."
                )
            bad = sorted(set(value) - set(_STREAM_KEYS))
            if bad:
                raise ValueError(
                    f"stream {name!r} has unknown keys {bad}. Fix: use only {list(_STREAM_KEYS)}."
                )
            streams.append(StreamConfig(str(name), **value))
        options = {k: raw[k] for k in _TOP_KEYS if k in raw and k != "streams"}
        return cls(tuple(streams), **options)


def _parse_text(text: str, what: str, yaml: bool) -> Any:
    if yaml:
        try:
            import yaml as pyyaml
        except ImportError as exc:
            raise ValueError(
                f"{what} is YAML, but PyYAML is not installed. Fix: `pip install pyyaml`, or "
                "write the configuration as JSON."
            ) from exc
        return pyyaml.safe_load(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}.") from exc


def load_config(
    source: DransposeConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
) -> DransposeConfig:
    """Read a :class:`DransposeConfig`.

    Parameters
    ----------
    source
        A config (returned as is), a mapping (as parsed JSON/YAML), JSON text (starting with
        ``{``), or the path of a ``.json``, ``.yaml`` or ``.yml`` file. ``None``: the value of
        the environment variable :data:`CONFIG_ENV`.

    Raises
    ------
    ValueError
        Nothing configured, an unreadable or invalid configuration; the message says which.
    """
    if isinstance(source, DransposeConfig):
        return source
    if isinstance(source, Mapping):
        return DransposeConfig.from_dict(source)
    what = "the configuration"
    if source is None:
        source = os.environ.get(CONFIG_ENV)
        what = f"${CONFIG_ENV}"
        if not source:
            raise ValueError(
                f"no h5live dranspose configuration: ${CONFIG_ENV} is not set. Fix: set it to "
                'a JSON or YAML file, or to JSON text such as {"streams": {"eiger": "scan.h5"}}.'
            )
    text = os.fspath(source)
    if text.lstrip().startswith("{"):
        raw = _parse_text(text, what, yaml=False)
    else:
        path = Path(text)
        try:
            content = path.read_text()
        except OSError as exc:
            raise ValueError(
                f"cannot read the configuration file {text!r} ({what}): {exc}. Fix: check the path."
            ) from exc
        raw = _parse_text(content, repr(text), yaml=path.suffix.lower() in (".yaml", ".yml"))
    if not isinstance(raw, Mapping):
        raise ValueError(f"{what} must hold a mapping with 'streams', got {raw!r}.")
    return DransposeConfig.from_dict(raw)
