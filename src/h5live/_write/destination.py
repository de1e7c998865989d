"""Creating a destination: its file (SWMR-ready), and its live datasets as hdmf would, but
with no rows yet.

hdmf's ``HDF5IO`` makes a dataset for a chunk iterator from its ``recommended_chunk_shape()``,
``recommended_data_shape()``, ``maxshape`` and ``dtype`` and the ``H5DataIO`` options. A live
dataset is made the same way except for its length: it starts with no rows and grows as frames
are written, so that its extent never covers a frame that is not written yet (hdmf would make
it as long as the frames complete in the source, which readers would take for frames).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import h5py
from hdmf.backends.hdf5.h5_utils import H5DataIO

from h5live._source.recover import clear_writer_flags, writer_flags
from h5live._write.output import LiveOutput, OutputLayout
from h5live.errors import OutputError, OutputExistsError

__all__ = [
    "OUTPUT_CHUNK_CACHE",
    "create_live_dataset",
    "create_live_file",
    "empty_shape",
    "open_live_output",
]

# Chunks smaller than HDF5IO's 32 MiB cache would be copied through it on their way out
# (measured in benchmarks/RESULTS.md); whole chunks are written once, so no cache is needed.
OUTPUT_CHUNK_CACHE = 1 << 20


def create_live_file(path: str | os.PathLike[str], mode: str = "w") -> h5py.File:
    """A new HDF5 file that can enter SWMR mode (``libver="latest"``), small chunk cache.

    ``"w"`` replaces an existing file by a new one (its readers keep the old one) unless a
    writer has it open; ``"w-"``/``"x"`` refuse an existing file.

    Raises
    ------
    OutputExistsError
        The file exists (``"w-"``/``"x"``), or a writer has it open.
    OutputError
        It cannot be created.
    """
    target = Path(path)
    if target.exists():
        if mode != "w":
            raise OutputExistsError(
                f"{os.fspath(target)!r} exists and mode {mode!r} does not replace a file. Fix: "
                "pass mode 'w' to replace it, or another path."
            )
        try:
            flags = writer_flags(os.fspath(target))
        except (OSError, ValueError):  # not HDF5: replaced like any file
            flags = 0
        if flags:
            raise OutputExistsError(
                f"{os.fspath(target)!r} is open for writing by another program, or by one that "
                "crashed (its superblock says so), so it is not replaced. Fix: stop that "
                f"writer first; if it is gone, run `h5clear -s -i {os.fspath(target)}`."
            )
    try:
        if target.exists():
            target.unlink()  # a new file, never truncated under its readers
        return h5py.File(target, "w", libver="latest", rdcc_nbytes=OUTPUT_CHUNK_CACHE)
    except OSError as exc:
        raise OutputError(
            f"cannot create {os.fspath(target)!r}: {exc}. Fix: check that the folder exists, "
            "is writable and has space, or pass another path."
        ) from exc


def empty_shape(iterator: Any) -> tuple[int, ...]:
    """The shape a live dataset starts with: no rows, the rest as the iterator's data."""
    return (0, *(int(n) for n in iterator.recommended_data_shape()[1:]))


def create_live_dataset(
    file: Any, path: str, iterator: Any, compression: dict[str, Any] | None = None
) -> Any:
    """Create the dataset at ``path`` of ``file`` for ``iterator``'s frames, with no rows.

    Parameters
    ----------
    file
        The destination, open for writing (before SWMR mode).
    path
        Where the dataset goes; missing groups are made.
    iterator
        A :class:`~h5live.LiveDataChunkIterator` (its chunk shape, maxshape and dtype).
    compression
        ``H5DataIO`` options (``compression``, ``compression_opts``, ``shuffle``, ``chunks``,
        ...), as for hdmf.
    """
    with warnings.catch_warnings():  # plugin filters are what the caller asked for
        warnings.filterwarnings("ignore", "[0-9]+ compression may not be available")
        settings = dict(H5DataIO(iterator, **(compression or {})).io_settings)
    settings.setdefault("chunks", iterator.recommended_chunk_shape())
    settings.setdefault("maxshape", iterator.maxshape)
    settings.setdefault("dtype", iterator.dtype)
    settings["shape"] = empty_shape(iterator)
    parent, name = path.rsplit("/", 1)
    group = file.require_group(parent or "/")
    return group.create_dataset(name, **settings)


def open_live_output(path: str | os.PathLike[str], layout: OutputLayout) -> h5py.File:
    """Open an output that h5live wrote, to continue it, beside the SWMR readers it may have.

    The file is opened without HDF5's file lock (SWMR readers hold one that would refuse this
    writer), after making sure that no other h5live writer of this host is alive and clearing
    the writer flags a killed one left.

    Raises
    ------
    OutputError
        No such file, or it cannot be opened for writing.
    OutputExistsError
        It is not an output of h5live (no bookkeeping at ``layout``), or another writer is
        alive.
    """
    where = os.fspath(path)
    if not Path(where).is_file():
        raise OutputError(
            f"cannot resume {where!r}: there is no such file. Fix: write it with mode 'w' first."
        )
    try:
        with h5py.File(where, "r", libver="latest", swmr=True) as peek:
            output = LiveOutput(peek, layout)
            alive, (pid, host) = output.writer_alive(), output.writer
    except (OSError, KeyError, ValueError) as exc:
        raise OutputExistsError(
            f"{where!r} is not an output of h5live (no {layout.keys} with its progress), so it "
            "cannot be resumed. Fix: mode 'w' to write it anew, or another path."
        ) from exc
    if alive is not None:
        raise OutputExistsError(
            f"{where!r} is still being written by process {pid} on {host!r}. Fix: wait for it or "
            f"stop it first; if it is gone, run `h5clear -s -i {where}` and try again."
        )
    clear_writer_flags(where)  # a writer killed while writing left them set
    try:
        return h5py.File(where, "a", libver="latest", rdcc_nbytes=OUTPUT_CHUNK_CACHE, locking=False)
    except OSError as exc:
        raise OutputError(
            f"cannot open {where!r} to resume it: {exc}. Fix: check that the file is whole and "
            "writable; if it is damaged, write it anew with mode 'w'."
        ) from exc
