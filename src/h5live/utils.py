"""Helpers with the names, signatures and results of ``swmr_tools.utils`` (0.9).

Scan positions (raster and snake), row slices, creating and appending to result datasets,
NeXus groups, and a readability check. Differences from swmr_tools are bug fixes, listed in
the README: ``append_data`` compares shapes per axis and accepts lists, ``create_dataset``
accepts a list ``scan_maxshape``, ``check_file_readable`` accepts one dataset path as a string.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from h5live._follow.keys import refresh_dataset

__all__ = [
    "append_data",
    "check_file_readable",
    "convert_stack_to_grid",
    "copy_nexus_axes",
    "create_dataset",
    "create_nxdata",
    "create_nxentry",
    "get_position",
    "get_position_snake",
    "get_position_snake_row",
    "get_row_slice",
    "refresh_dataset",
]

logger = logging.getLogger(__name__)


def get_position(index: int, shape: Sequence[int], scan_rank: int) -> tuple[int, ...]:
    """The scan position of flat (C-order) frame ``index`` in a dataset of ``shape``.

    Parameters
    ----------
    index
        Flat frame index.
    shape
        Shape of the dataset (or of the scan); only the first ``scan_rank`` dims are used.
    scan_rank
        Number of scan dims.

    Returns
    -------
    tuple of int
        One coordinate per scan dim.

    Raises
    ------
    ValueError
        ``index`` is outside the scan.

    Examples
    --------
    >>> get_position(7, (3, 4, 5), 2)
    (1, 3)
    """
    scan_shape = tuple(int(n) for n in shape[:scan_rank])
    size = math.prod(scan_shape)
    if not 0 <= index < size:
        raise ValueError(
            f"frame index {index!r} is outside a scan of shape {scan_shape} ({size} frames). "
            "Fix: refresh the dataset before reading, or check the index."
        )
    position: list[int] = []
    rest = int(index)
    for n in reversed(scan_shape):
        rest, coordinate = divmod(rest, n)
        position.append(coordinate)
    return tuple(reversed(position))


def get_position_snake_row(
    index: int, shape: Sequence[int], scan_rank: int
) -> tuple[tuple[int, ...], bool]:
    """The position of frame ``index`` in a snake scan, and whether its fast row runs backwards.

    A snake scan reverses an axis whenever the sum of the coordinates before it is odd.

    Examples
    --------
    >>> get_position_snake_row(5, (3, 4), 2)
    ((1, 2), True)
    """
    raster = get_position(index, shape, scan_rank)
    position = list(raster)
    reversed_row = False
    total = raster[0] if raster else 0
    for axis in range(1, len(position)):
        if total % 2 == 1:
            position[axis] = int(shape[axis]) - raster[axis] - 1
            if axis == len(position) - 1:
                reversed_row = True
        total += position[axis]
    return tuple(position), reversed_row


def get_position_snake(index: int, shape: Sequence[int], scan_rank: int) -> tuple[int, ...]:
    """The position of frame ``index`` in a snake scan (see :func:`get_position_snake_row`).

    Examples
    --------
    >>> get_position_snake(5, (3, 4), 2)
    (1, 2)
    """
    return get_position_snake_row(index, shape, scan_rank)[0]


def get_row_slice(index: int, shape: Sequence[int], scan_rank: int) -> tuple[slice, ...]:
    """Scan slices selecting the whole fast row that holds frame ``index``.

    Examples
    --------
    >>> get_row_slice(5, (3, 4, 5), 2)
    (slice(1, 2, None), slice(None, None, None))
    """
    position = get_position(index, shape, scan_rank)
    slices = [slice(p, p + 1) for p in position]
    slices[scan_rank - 1] = slice(None)
    return tuple(slices)


def create_dataset(
    data: Any, scan_maxshape: Sequence[int | None], fh: Any, path: str, **kwargs: Any
) -> Any:
    """Create a dataset for per-frame results, holding ``data`` as the first frame.

    Parameters
    ----------
    data
        The result for the first scan point (array or scalar).
    scan_maxshape
        Maximum scan shape, e.g. ``(1000,)`` for a stack or ``(None, 100)`` for a growing grid;
        a list works too.
    fh
        h5py File or Group to create the dataset in.
    path
        Dataset path in ``fh``.
    **kwargs
        Passed to ``create_dataset`` (``chunks``, ``compression``, ...). Without ``chunks``,
        a chunk is one result (or, for results of fewer than 10 elements, a whole scan row).

    Returns
    -------
    h5py.Dataset
        Of shape ``(1,) * scan_rank + data.shape``; grow it with :func:`append_data`.
    """
    array = np.asarray(data)
    scan = tuple(scan_maxshape)
    maxshape = scan + array.shape
    shape = (1,) * len(scan) + array.shape
    if "chunks" not in kwargs:
        if array.size < 10:
            kwargs["chunks"] = tuple(1 if n is None else n for n in maxshape)
        else:
            kwargs["chunks"] = shape
    return fh.create_dataset(path, data=array.reshape(shape), maxshape=maxshape, **kwargs)


def append_data(data: Any, slice_metadata: Sequence[slice], dataset: Any) -> None:
    """Write ``data`` at ``slice_metadata`` in ``dataset``, growing it where needed.

    Parameters
    ----------
    data
        The result for the scan points in ``slice_metadata``, with its scan dims
        (e.g. shape ``(1, 1, 5)`` for one point of a grid scan).
    slice_metadata
        Scan slices (tuple or list), as given by :class:`h5live.DataSource`.
    dataset
        A dataset made by :func:`create_dataset`.
    """
    array = np.asarray(data)
    scan = tuple(slice_metadata)
    if array.ndim + len(scan) == dataset.ndim:  # one result, without its scan dims
        frame_dims = array.shape
    elif array.ndim == dataset.ndim:  # results with their scan dims (a batch)
        frame_dims = array.shape[len(scan) :]
    else:
        raise ValueError(
            f"cannot place data of shape {array.shape} at {scan} in dataset "
            f"{getattr(dataset, 'name', '?')!r} of shape {tuple(dataset.shape)}. Fix: pass one "
            "result shaped like the first one given to create_dataset, or a batch of results "
            "with their scan dims."
        )
    full = scan + tuple(slice(0, n, 1) for n in frame_dims)
    current = tuple(int(n) for n in dataset.shape)
    grown = tuple(
        old if s.stop is None else max(old, int(s.stop))
        for s, old in zip(full, current, strict=True)
    )
    if grown != current:
        dataset.resize(grown)
    dataset[full] = array


def copy_nexus_axes(
    nxd_in: Any, nxd_out: Any, scan_rank: int, frame_axes: Sequence[str] | None = None
) -> None:
    """Copy the scan axes (datasets and ``*_indices`` attributes) of one NXdata to another.

    Parameters
    ----------
    nxd_in, nxd_out
        Input and output NXdata groups.
    scan_rank
        Number of scan dims.
    frame_axes
        Axis names for the frame dims of the output (default: none).
    """
    axes: list[str] = ["."] * scan_rank + list(frame_axes or [])
    if "axes" in nxd_in.attrs:
        names = nxd_in.attrs["axes"]
        for axis in range(scan_rank):
            raw = names[axis]
            name = raw.decode("utf-8") if hasattr(raw, "decode") else str(raw)
            axes[axis] = name
            if name in nxd_in:
                nxd_out.copy(nxd_in[name], nxd_out, name)
                indices = name + "_indices"
                if indices in nxd_in.attrs:
                    nxd_out.attrs[indices] = nxd_in.attrs[indices]
    nxd_out.attrs["axes"] = axes


def _create_nexus_group(parent: Any, name: str, nx_class: str, default: bool) -> Any:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    if default:
        parent.attrs["default"] = name
    return group


def create_nxdata(e: Any, name: str, default: bool = True) -> Any:
    """Create an NXdata group in ``e``; ``default``: make it the parent's default."""
    return _create_nexus_group(e, name, "NXdata", default)


def create_nxentry(fh: Any, name: str, default: bool = True) -> Any:
    """Create an NXentry group in ``fh``; ``default``: make it the file's default."""
    return _create_nexus_group(fh, name, "NXentry", default)


def check_file_readable(
    path: str | os.PathLike[str],
    datasets: Sequence[str] | str,
    timeout: float = 10,
    retrys: int = 5,
) -> bool:
    """Whether ``path`` opens in SWMR mode with every dataset in ``datasets`` reachable.

    Used when a file links to datasets in other files that may not exist yet. Retries every
    ``timeout / retrys`` seconds until ``timeout``.

    Parameters
    ----------
    path
        The HDF5 file.
    datasets
        Dataset paths to resolve, or one path as a string.
    timeout, retrys
        Total seconds to keep trying, and into how many pauses to divide them.

    Returns
    -------
    bool
        True once everything could be opened; False (with an error logged) after ``timeout``.
    """
    import h5py

    names = [datasets] if isinstance(datasets, str) else list(datasets)
    start = time.monotonic()
    while True:
        try:
            with h5py.File(path, "r", libver="latest", swmr=True) as fh:
                for name in names:
                    fh[name]
            return True
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            logger.debug("cannot read %r yet (%s); retrying", os.fspath(path), exc)
        if time.monotonic() - start >= timeout:
            break
        time.sleep(timeout / max(retrys, 1))
    logger.error("could not read %s from %r within %s s", names, os.fspath(path), timeout)
    return False


def convert_stack_to_grid(
    slices: Sequence[slice], scan_shape: Sequence[int], snake: bool = False
) -> list[slice]:
    """Turn the slices of one frame of a flat stack into slices of a grid scan.

    Parameters
    ----------
    slices
        Slices of the stack: the first selects the frame (its ``start`` is the flat index),
        the rest select within the frame.
    scan_shape
        Shape of the grid.
    snake
        Whether the grid was scanned as a snake.

    Returns
    -------
    list of slice
        One single-point slice per grid dim, followed by ``slices[1:]``.
    """
    index = slices[0].start
    if snake:
        position = get_position_snake(index, scan_shape, len(scan_shape))
    else:
        position = get_position(index, scan_shape, len(scan_shape))
    return [slice(p, p + 1, 1) for p in position] + list(slices[1:])
