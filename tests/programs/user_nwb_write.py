"""A user's own live NWB write: frames and their timestamps, two iterators sharing a follower.

``python user_nwb_write.py SOURCE OUTPUT [MODE]``: what the README's example does, with
:class:`h5live.LiveNWBHDF5IO` in place of ``NWBHDF5IO`` (``MODE`` ``"a"``: resume the output
of a run that was stopped). Prints the write's state at the end.
"""

from __future__ import annotations

import datetime
import sys

from hdmf.backends.hdf5.h5_utils import H5DataIO
from pynwb import NWBFile
from pynwb.image import ImageSeries

import h5live

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def main() -> int:
    source, output = sys.argv[1:3]
    mode = sys.argv[3] if len(sys.argv) > 3 else "w"
    frames = h5live.LiveDataChunkIterator(source, "/entry/data/data", timeout=60)
    times = h5live.LiveDataChunkIterator(
        frames.dataset.file["/entry/flush_time"], follower=frames.follower
    )
    nwbfile = NWBFile(
        session_description="a user's live write",
        identifier="user-live-write",
        session_start_time=datetime.datetime.now(datetime.timezone.utc),
        timestamps_reference_time=EPOCH,
    )
    nwbfile.add_acquisition(
        ImageSeries(
            name="detector",
            data=H5DataIO(frames, compression="gzip"),
            timestamps=H5DataIO(times),
            unit="counts",
        )
    )
    with h5live.LiveNWBHDF5IO(output, mode) as io:
        io.write(nwbfile)
        assert io.live_write is not None
        print(io.live_write.state, flush=True)
    times.close()
    frames.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
