"""LiveNWBHDF5IO: pynwb's ``NWBHDF5IO`` in mode ``"w"``, writing every live chunk iterator live.

The same as :class:`h5live.LiveHDF5IO` (see :mod:`h5live._write.live_io`) for NWB files:
h5live's bookkeeping is ``ScratchData`` in ``/scratch``
(:data:`~h5live._write.output.NWB_LAYOUT`), so the file stays valid NWB, and pynwb reads it
while it is written. Importing this module imports pynwb.
"""

from __future__ import annotations

from pynwb import NWBHDF5IO

from h5live._write.live_io import LiveWriting
from h5live._write.output import NWB_LAYOUT

__all__ = ["LiveNWBHDF5IO"]


class LiveNWBHDF5IO(LiveWriting, NWBHDF5IO):  # type: ignore[misc]
    """pynwb's ``NWBHDF5IO`` for new files, writing live chunk iterators live.

    A drop-in for ``NWBHDF5IO(path, "w")``: every ``H5DataIO(LiveDataChunkIterator(...))`` of
    the NWB file (several, from one source or several) is written while its source is, the file
    in SWMR mode before the first frame lands, with h5live's bookkeeping as ``ScratchData``
    (``/scratch/h5live_keys``, ``h5live_finished``, ``h5live_frames_complete``,
    ``h5live_state``, ...), so that pynwb, h5py, ``h5live follow`` and swmr_tools read it while
    it is written. ``write`` returns once every source has stopped.

    Parameters
    ----------
    path
        The NWB file to write.
    mode
        ``"w"`` (replace an existing file by a new one, never truncating it under its
        readers), ``"w-"`` or ``"x"`` (refuse an existing file).
    manager, file, comm, driver, herd_path
        As for ``NWBHDF5IO``; a ``file`` given must be made with ``libver="latest"``.
    workers
        As for :class:`h5live.LiveHDF5IO`: threads encoding compressed live datasets.

    Attributes
    ----------
    live_write
        The last write's :class:`~h5live._write.loop.LiveWrite` (``state``, ``output``,
        ``bytes_written``, ``chunk_copy``), or None.

    Raises
    ------
    ValueError
        Another mode, or a file that cannot enter SWMR mode.
    OutputExistsError
        The file exists (``"w-"``, ``"x"``) or a writer has it open.

    Examples
    --------
    >>> frames = LiveDataChunkIterator("scan.h5", "/entry/data/data")  # doctest: +SKIP
    >>> series = ImageSeries(name="detector", data=H5DataIO(frames), rate=100.0,
    ...     unit="counts")  # doctest: +SKIP
    >>> nwbfile.add_acquisition(series)  # doctest: +SKIP
    >>> with h5live.LiveNWBHDF5IO("session.nwb", "w") as io:  # doctest: +SKIP
    ...     io.write(nwbfile)  # returns when the scan has ended
    """

    live_layout = NWB_LAYOUT

    def __repr__(self) -> str:
        state = None if self.live_write is None else self.live_write.state
        return f"<LiveNWBHDF5IO {self.source!r} live_state={state!r}>"
