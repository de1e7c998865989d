"""Opening a live source: a picklable recipe, retries while the writer starts, layout discovery.

A :class:`SourceSpec` says where a source is and which datasets matter; it never holds an open
file, so it can be pickled and reopened in another process. :func:`open_source` opens the file
read-only in SWMR mode, retrying while the writer is still creating it, and turns the failures
HDF5 reports into errors that say what to do.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import h5py

from h5live._source.recover import missing_bytes
from h5live._source.virtual import is_virtual, load_source_filters, missing_sources
from h5live.errors import (
    DatasetNotFoundError,
    FinishedDatasetError,
    KeyDatasetError,
    SourceNotReadyError,
)

__all__ = [
    "KNOWN_LAYOUTS",
    "Layout",
    "SourceSpec",
    "check_virtual_sources",
    "get_dataset",
    "largest_frames",
    "object_identity",
    "open_source",
    "retry_until",
    "source_path",
    "walk_datasets",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class Layout(NamedTuple):
    """Where a family of writers puts its key group (or its one key dataset) and finished
    dataset."""

    name: str
    keys_group: str
    finished_path: str


#: Layouts searched, in order, when key datasets are not given.
KNOWN_LAYOUTS: tuple[Layout, ...] = (
    Layout("h5live", "/entry/keys", "/entry/finished"),
    Layout("diamond", "/entry/diamond_scan/keys", "/entry/diamond_scan/scan_finished"),
    Layout("solstice", "/entry/solstice_scan/keys", "/entry/solstice_scan/scan_finished"),
    # h5live's NWB outputs (ScratchData; keys_group may name the one key dataset itself)
    Layout("h5live-nwb", "/scratch/h5live_keys", "/scratch/h5live_finished"),
)

# The messages HDF5 gives for a contiguous dataset whose storage was allocated after the reader
# looked at it (HDF5 issue 5251).
_CONTIGUOUS_MARKERS = ("invalid dataset size",)


def is_contiguous_failure(exc: BaseException) -> bool:
    """Tell whether an h5py error is HDF5 refusing a contiguous dataset written live."""
    return any(marker in str(exc) for marker in _CONTIGUOUS_MARKERS)


def contiguous_message(role: str, path: str, filename: str) -> str:
    """The message for a contiguous key or finished dataset written under SWMR."""
    return (
        f"{role} dataset {path!r} in {filename!r} is contiguous and is being written: a SWMR "
        "reader cannot read a contiguous dataset whose storage the writer allocates while it "
        "is followed (HDF5 issue 5251). Fix: the writer must create it chunked, e.g. "
        "create_dataset(..., chunks=True), or write it before switching SWMR mode on."
    )


def is_unallocated_contiguous(dataset: Any) -> bool:
    """A contiguous dataset with no storage yet, in a file opened for SWMR reading.

    HDF5 cannot read such a dataset once its writer allocates the storage (it reports
    "invalid dataset size"); a contiguous dataset whose storage already exists stays readable.
    A virtual dataset (VDS) also has no chunks and no storage of its own, but it is not
    contiguous: its data live in its source datasets.
    """
    if getattr(dataset, "chunks", ()) is not None:
        return False
    try:
        if dataset.id.get_create_plist().get_layout() != h5py.h5d.CONTIGUOUS:
            return False
        file = dataset.file
        return bool(file.mode == "r" and file.swmr_mode and dataset.id.get_storage_size() == 0)
    except AttributeError:
        return False


def retry_until(
    action: Callable[[], T],
    *,
    timeout_s: float,
    retry_on: tuple[type[BaseException], ...],
    what: str,
    describe: Callable[[BaseException], str] = str,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> T:
    """Call ``action`` until it succeeds or ``timeout_s`` has passed.

    The delay between attempts grows from 5 ms to 250 ms, so a writer that is a few
    milliseconds from ready is caught quickly and a long wait costs little. The exception of
    the last attempt propagates once the deadline has passed.

    Parameters
    ----------
    action
        The call to attempt.
    timeout_s
        Seconds after the first attempt during which failures are retried.
    retry_on
        Exception types that mean "not ready yet"; anything else propagates at once.
    what
        A few words for the log line, e.g. ``"open 'scan.h5'"``.
    describe
        Why an attempt failed, in a few words for the log line (default: the error's text).
    clock, sleep
        Time functions, injectable for tests.

    Returns
    -------
    Whatever ``action`` returns.
    """
    deadline = clock() + timeout_s
    delay = 0.005
    attempt = 0
    while True:
        try:
            return action()
        except retry_on as exc:
            attempt += 1
            remaining = deadline - clock()
            if remaining <= 0:
                raise
            level = logging.WARNING if attempt == 1 else logging.DEBUG
            logger.log(
                level, "cannot %s yet (%s); retrying for %.1f s", what, describe(exc), remaining
            )
            sleep(min(delay, remaining))
            delay = min(delay * 2, 0.25)


class _SourceFile(h5py.File):  # type: ignore[misc]
    """A source opened by h5live: closing it also closes the datasets h5live reached through
    its external links. Those live in other files and outlive the master's ``close()``; a
    second handle on one of them, from the next follower of the same master, would then make
    refreshes read wrong data (see ``h5live._source.handles``)."""

    def close(self) -> None:
        for ref in self.__dict__.pop("_h5live_linked", ()):
            linked = ref()
            if linked is not None and linked.id.valid:
                linked.id.close()
        super().close()


def _remember_linked(file: Any, dataset: Any) -> None:
    """Have a :class:`_SourceFile` close ``dataset`` with it, if it lives in another file."""
    if isinstance(file, _SourceFile) and dataset.file.id != file.id:
        file.__dict__.setdefault("_h5live_linked", []).append(weakref.ref(dataset))


def _open_once(path: str) -> Any:
    return _SourceFile(path, "r", libver="latest", swmr=True)


def _open_failure_reason(exc: BaseException) -> str:
    """Why a source did not open yet, in a few words for the retry line."""
    text = str(exc)
    if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == errno.ENOENT:
        return "no file there yet"
    if isinstance(exc, BlockingIOError) or "unable to lock file" in text:
        return "locked by its writer, which has not switched SWMR mode on yet"
    if "file signature not found" in text:
        return "no HDF5 header yet"
    return text


def _explain_open_failure(path: str, exc: OSError, waited_s: float) -> str:
    text = str(exc)
    waited = f"after waiting {waited_s:.1f} s"
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        return (
            f"no file at {path!r} {waited}. Fix: check the path, start the writer first, or "
            "wait longer (open_timeout_s, --open-timeout)."
        )
    if isinstance(exc, BlockingIOError) or "unable to lock file" in text:
        return (
            f"{path!r} is locked by a writer that has not switched SWMR mode on ({waited}), so "
            "it cannot be read while it is written. Fix: the writer must create the file with "
            "libver='latest' and set swmr_mode = True once its datasets exist; if it is still "
            "creating them, wait longer (open_timeout_s, --open-timeout)."
        )
    if "file signature not found" in text:
        return (
            f"{path!r} is not an HDF5 file, or its writer has not written the header yet "
            f"({waited}). Fix: check the path, or wait longer (open_timeout_s, --open-timeout)."
        )
    if "truncated file" in text:
        return (
            f"{path!r} is truncated: it ends before the end its header records ({text}; "
            f"{waited}). It was cut short (a copy or transfer not finished, a full disk). Fix: "
            "copy it again whole; h5clear cannot restore missing bytes."
        )
    return (
        f"cannot open {path!r} for SWMR reading {waited}: {text}. Fix: check that it is an "
        "HDF5 file you may read, written with libver='latest' in SWMR mode."
    )


def open_source(
    path: str | os.PathLike[str],
    *,
    timeout_s: float = 10.0,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> Any:
    """Open a source read-only in SWMR mode, retrying while its writer is starting.

    Parameters
    ----------
    path
        The HDF5 file.
    timeout_s
        How long to keep retrying a file that is missing, locked or not yet valid.
    clock, sleep
        Time functions, injectable for tests.

    Returns
    -------
    h5py.File
        Opened with ``mode="r", libver="latest", swmr=True``.

    Raises
    ------
    SourceNotReadyError
        The file could not be opened before the deadline; the message says why and what to do.

    Examples
    --------
    >>> with open_source("scan.h5", timeout_s=30) as f:  # doctest: +SKIP
    ...     keys = f["/entry/keys/key_0"]
    """
    name = os.fspath(path)
    if os.path.isdir(name):  # a folder does not become a file: no retries
        raise SourceNotReadyError(
            f"{name!r} is a folder, not an HDF5 file. Fix: pass the path of the scan's file."
        )
    start = clock()
    try:
        file = retry_until(
            lambda: _open_once(name),
            timeout_s=timeout_s,
            retry_on=(OSError,),
            what=f"open {name!r}",
            describe=_open_failure_reason,
            clock=clock,
            sleep=sleep,
        )
    except OSError as exc:
        raise SourceNotReadyError(_explain_open_failure(name, exc, clock() - start)) from exc
    lacking = missing_bytes(name)
    if lacking:
        file.close()
        raise SourceNotReadyError(
            f"{name!r} is truncated: no writer has it open, and it ends {lacking} bytes before "
            "the end its header records, so its last frames are gone (a copy or transfer cut "
            "short, a full disk). Fix: copy it again whole; h5clear cannot restore the bytes."
        )
    return file


def _nearby(file: Any, path: str) -> list[str]:
    """Dataset paths next to ``path`` (in its deepest existing parent group), for messages."""
    parent = path.rstrip("/")
    while parent:
        parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
        group = file.get(parent or "/")
        if isinstance(group, h5py.Group):
            break
    else:
        group = file
    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and len(found) < 12:
            found.append(f"{group.name.rstrip('/')}/{name}")

    # A dangling link stops the walk; show what was found before it.
    with contextlib.suppress(KeyError, RuntimeError, OSError):
        group.visititems(visit)
    return found


class _LinkNotResolved(DatasetNotFoundError):
    """A link whose target does not exist yet: worth waiting for, unlike a wrong path."""


class _SourcesMissing(SourceNotReadyError):
    """A virtual dataset whose source files or datasets are not there (yet): HDF5 would read
    them as fill values."""


#: The attribute that records, on an h5py dataset h5live resolved, its path in the file it was
#: resolved in (a dataset reached through an external link has its own file's path as name).
_PATH_ATTRIBUTE = "_h5live_path"


def source_path(dataset: Any) -> str:
    """The path of ``dataset`` in the source file it was found in (through links, the master's
    path, not the linked file's ``dataset.name``); the name of a dataset h5live did not
    resolve."""
    path = getattr(dataset, _PATH_ATTRIBUTE, None)
    return str(path) if path else str(getattr(dataset, "name", None) or "")


def _absolute(path: str) -> str:
    return "/" + path.strip("/")


def check_virtual_sources(dataset: Any, path: str, role: str, filename: str) -> None:
    """Raise :class:`~h5live.errors.SourceNotReadyError` if ``dataset`` is virtual and some of
    its sources cannot be read yet (HDF5 would read them as fill values); register the plugin
    filters its sources need."""
    missing = missing_sources(dataset)
    if missing:
        raise _SourcesMissing(
            f"{role} dataset {path!r} in {filename!r} is a virtual dataset (VDS) whose sources "
            f"are not all there: {'; '.join(missing)}. HDF5 would read their frames as fill "
            "values. Fix: start the writers of those files first, check the file and dataset "
            "names the VDS maps (h5ls -v, or dataset.virtual_sources()), or wait longer "
            "(open_timeout_s, --open-timeout)."
        )
    if is_virtual(dataset):
        load_source_filters(dataset)


def _resolve(file: Any, path: str, role: str) -> Any:
    """The object at ``path`` (a dataset records ``path``: see :func:`source_path`), or an
    error saying why it cannot be had."""
    filename = file.filename
    link = file.get(path, getlink=True)
    if link is None:
        nearby = _nearby(file, path)
        hint = f" Datasets nearby: {nearby}." if nearby else ""
        raise DatasetNotFoundError(
            f"{role} dataset {path!r} not found in {filename!r}.{hint} Fix: pass the right path."
        )
    try:
        found = file[path]
    except KeyError as exc:
        if is_contiguous_failure(exc):
            error = KeyDatasetError if role == "key" else FinishedDatasetError
            raise error(contiguous_message(role, path, filename)) from exc
        raise _LinkNotResolved(
            f"{role} dataset {path!r} in {filename!r} is a {type(link).__name__} that cannot "
            "be resolved yet (the file or object it points to may not exist yet). Fix: wait "
            "for the writer (open_timeout_s, --open-timeout), or check the link target."
        ) from exc
    if isinstance(found, h5py.Dataset):
        setattr(found, _PATH_ATTRIBUTE, _absolute(path))
        _remember_linked(file, found)
        check_virtual_sources(found, _absolute(path), role, filename)
    return found


def _expand(file: Any, path: str, role: str) -> list[Any]:
    """The datasets at ``path``: the dataset itself, or every dataset in a group, sorted.

    A link in the group that does not resolve yet (a detector file not created yet) is an
    error that :meth:`SourceSpec.open_resolved` retries until its deadline.
    """
    obj = _resolve(file, path, role)
    if not isinstance(obj, h5py.Group):
        return [obj]
    base = _absolute(path).rstrip("/")  # through links: the path in this file, not obj.name
    members = [_resolve(file, f"{base}/{name}", role) for name in sorted(obj)]
    datasets = [member for member in members if isinstance(member, h5py.Dataset)]
    if not datasets:
        raise DatasetNotFoundError(
            f"{role} group {path!r} in {file.filename!r} holds no datasets. Fix: pass the "
            "dataset paths themselves."
        )
    return datasets


def get_dataset(
    file: Any,
    path: str,
    role: str,
    *,
    timeout_s: float = 0.0,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> Any:
    """Return the dataset at ``path``, or raise an error naming the file, path and fix.

    Parameters
    ----------
    file
        An open ``h5py.File``.
    path
        Dataset path inside it.
    role
        What the dataset is for (``"key"``, ``"finished"``, ``"data"``), for messages.
    timeout_s
        How long to wait for the source files of a virtual dataset (see ``h5live._source.virtual``).
    clock, sleep
        Time functions, injectable for tests.

    Returns
    -------
    h5py.Dataset
        It records ``path`` (:func:`source_path`).

    Raises
    ------
    DatasetNotFoundError
        Nothing at ``path``, a group instead of a dataset, or a link that does not resolve.
    KeyDatasetError, FinishedDatasetError
        A contiguous dataset HDF5 refuses to open while it is written.
    SourceNotReadyError
        A virtual dataset whose source files or datasets are still missing after ``timeout_s``.
    """
    found = retry_until(
        lambda: _resolve(file, path, role),
        timeout_s=timeout_s,
        retry_on=(_SourcesMissing,),
        what=f"read the sources of {path!r} in {file.filename!r}",
        clock=clock,
        sleep=sleep,
    )
    if not isinstance(found, h5py.Dataset):
        raise DatasetNotFoundError(
            f"{role} path {path!r} in {file.filename!r} is a group, not a dataset. Fix: pass "
            f"one of the datasets in it: {_nearby(file, path + '/')}."
        )
    return found


@dataclass(frozen=True)
class ResolvedLayout:
    """The key and finished datasets of an open source."""

    keys: list[Any]
    finished: Any | None


@dataclass(frozen=True)
class SourceSpec:
    """A picklable recipe for a live source: where it is and which datasets matter.

    Parameters
    ----------
    path
        The HDF5 file being written.
    key_paths
        Key dataset paths, or groups whose datasets are all keys. ``None``: the key group of the
        first matching layout in :data:`KNOWN_LAYOUTS`.
    finished_path
        Finished dataset path. ``None``: the first known layout's finished dataset that the
        file has, if any (also when ``key_paths`` are given).
    open_timeout_s
        How long to retry opening the file and resolving the datasets while the writer starts.
    """

    path: str
    key_paths: tuple[str, ...] | None = None
    finished_path: str | None = None
    open_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", os.fspath(self.path))
        if isinstance(self.key_paths, str):
            object.__setattr__(self, "key_paths", (self.key_paths,))
        elif self.key_paths is not None:
            object.__setattr__(self, "key_paths", tuple(self.key_paths))
            if not self.key_paths:
                raise ValueError(
                    f"key_paths for {self.path!r} is empty. Fix: pass at least one key dataset "
                    "path, or None to find them in a known layout."
                )
        if self.open_timeout_s < 0:
            raise ValueError(
                f"open_timeout_s must be >= 0, got {self.open_timeout_s!r}. Fix: pass the "
                "number of seconds to wait for the writer."
            )

    def resolve(self, file: Any) -> ResolvedLayout:
        """Find the key and finished datasets in an open file.

        Raises
        ------
        DatasetNotFoundError
            A given path is missing, or no key datasets were given and no known layout matches.
        """
        if self.key_paths is not None:
            keys = [ds for path in self.key_paths for ds in _expand(file, path, "key")]
        else:
            layout = next(
                (x for x in KNOWN_LAYOUTS if file.get(x.keys_group, getlink=True) is not None),
                None,
            )
            if layout is None:
                looked = ", ".join(x.keys_group for x in KNOWN_LAYOUTS)
                raise DatasetNotFoundError(
                    f"no key datasets given, and {file.filename!r} has none of the known key "
                    f"groups ({looked}). Datasets found: {_nearby(file, '/entry/keys')}. Fix: "
                    "pass key_paths=[...] (--keys on the command line)."
                )
            keys = _expand(file, layout.keys_group, "key")
            logger.info("%s: %s layout, %d key dataset(s)", file.filename, layout.name, len(keys))
        return ResolvedLayout(keys, self._find_finished(file))

    def _find_finished(self, file: Any) -> Any | None:
        if self.finished_path is not None:
            return get_dataset(file, self.finished_path, "finished")
        for layout in KNOWN_LAYOUTS:
            if file.get(layout.finished_path, getlink=True) is None:
                continue
            finished = get_dataset(file, layout.finished_path, "finished")
            if is_unallocated_contiguous(finished):
                logger.warning(
                    "%s: %s Following without it: stopping on the idle timeout instead.",
                    file.filename,
                    contiguous_message("finished", layout.finished_path, file.filename),
                )
                return None
            return finished
        return None

    def open_resolved(
        self, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> tuple[Any, ResolvedLayout]:
        """Open the file and resolve its datasets, retrying both while the writer starts.

        Key datasets that are links to files that do not exist yet (detector files a writer
        creates later), and virtual keys whose source files do not exist yet, are waited for:
        the file is reopened until the deadline so that new objects become visible. A path
        that is simply not in the file fails at once: a SWMR writer creates every object
        before readers can open the file.
        """
        start = clock()

        def attempt() -> tuple[Any, ResolvedLayout]:
            remaining = max(0.0, self.open_timeout_s - (clock() - start))
            file = open_source(self.path, timeout_s=remaining, clock=clock, sleep=sleep)
            try:
                return file, self.resolve(file)
            except BaseException:
                file.close()
                raise

        return retry_until(
            attempt,
            timeout_s=self.open_timeout_s,
            retry_on=(_LinkNotResolved, _SourcesMissing),
            what=f"find the datasets in {self.path!r}",
            clock=clock,
            sleep=sleep,
        )


def object_identity(obj: Any) -> tuple[Any, ...]:
    """What tells HDF5 objects apart across the files of a process: (file number, address)."""
    info = h5py.h5o.get_info(obj.id)
    return (info.fileno, info.addr)


def walk_datasets(file: Any, *, max_depth: int = 32) -> Iterator[tuple[str, Any]]:
    """Every dataset reachable from ``file``'s root, through hard and external links, as
    ``(path in file, dataset)``, each HDF5 object once (at its first path in sorted order).

    External links are followed into other files (a master file of several detector files);
    soft links and links that do not resolve (yet) are skipped. Each dataset records its path
    (:func:`source_path`). Do not keep the datasets beyond use: every one is an open handle.
    """
    seen: set[tuple[Any, ...]] = set()

    def walk(group: Any, base: str, depth: int) -> Iterator[tuple[str, Any]]:
        for name in sorted(group):
            path = f"{base}/{name}"
            if isinstance(group.get(name, getlink=True), h5py.SoftLink):
                continue
            try:
                obj = group[name]
            except (KeyError, OSError, RuntimeError):  # a dangling link
                continue
            identity = object_identity(obj)
            if identity in seen:
                continue
            seen.add(identity)
            if isinstance(obj, h5py.Dataset):
                setattr(obj, _PATH_ATTRIBUTE, path)
                _remember_linked(file, obj)
                yield path, obj
            elif isinstance(obj, h5py.Group) and depth < max_depth:
                yield from walk(obj, path, depth + 1)

    yield from walk(file, "", 0)


def largest_frames(datasets: Sequence[Any], scan_rank: int) -> Any:
    """The dataset whose frames (the dims after the ``scan_rank`` scan dims) are largest: the
    detector's; on a tie, ``/entry/data/data``."""
    return max(
        datasets,
        key=lambda d: (math.prod(d.shape[scan_rank:]), d.name == "/entry/data/data"),
    )
