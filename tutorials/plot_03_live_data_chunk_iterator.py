"""
Convert a live acquisition to NWB
=================================

hdmf's :class:`~hdmf.data_utils.GenericDataChunkIterator` hands a large dataset to a writer
one *buffer* at a time, each buffer made of whole HDF5 *chunks* of the destination: every chunk
is then compressed and written once, and memory stays bounded. :class:`h5live.LiveDataChunkIterator`
is one over a file that a detector is still writing. It releases a buffer only once every frame
in it is complete (all its keys are set), and it does not pretend to know the length of an
acquisition that is still running.

We follow the steps of hdmf's GenericDataChunkIterator tutorial on a simulated detector running
in another process: the iterator's defaults, buffers sized in GB and chunks in MB, explicit
shapes, and a write into an NWB file through ``H5DataIO`` while the frames arrive. We end by
reading the NWB file back with PyNWB.
"""

# %%
# A live source
# -------------
# :class:`h5live.testing.WriterProcess` writes 600 images of 32x32 pixels at 2 kHz, growing
# ``/entry/data/data`` frame by frame. ``hold_at=0`` holds it before the first frame until
# ``go()``, so that we look at the iterator before anything is written.
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pynwb
from hdmf.backends.hdf5.h5_utils import H5DataIO
from pynwb import NWBHDF5IO, NWBFile
from pynwb.image import ImageSeries
from tqdm.auto import tqdm  # a widget in Jupyter, text elsewhere

from h5live import LiveDataChunkIterator
from h5live.testing import WriterProcess, frame_values

workdir = Path(tempfile.mkdtemp(prefix="h5live-tutorial-"))
source = workdir / "scan.h5"

# %%
writer = WriterProcess(
    source, scan_shape=(600,), frame_shape=(32, 32), frame_rate_hz=2000, hold_at=0
)
print("ready:", writer.start())

# %%
# The defaults
# ------------
# Given the file and the frames' dataset, the iterator opens the file for SWMR reading and
# finds the keys and the finished flag. By default a chunk holds whole frames, as many as fit
# in ``chunk_mb=10`` MB, and a buffer whole chunks within ``buffer_gb=1`` GB. The length is
# unknown while the writer runs, so ``maxshape`` is ``None`` on the frame axis and
# ``num_buffers`` is ``None``; ``recommended_data_shape()`` is what is complete so far. Here
# one buffer would hold the whole acquisition and come only once the writer is done, but
# ``max_latency_s`` (1 s for a live source) releases the complete frames of a buffer once the
# oldest of them has waited that long, ending inside a chunk if need be (that chunk is written
# again as it fills).
with LiveDataChunkIterator(source, "/entry/data/data") as frames:
    print("chunk_shape", frames.chunk_shape, "buffer_shape", frames.buffer_shape)
    print("maxshape", frames.maxshape, "num_buffers", frames.num_buffers)
    print("recommended_data_shape", frames.recommended_data_shape())

# %%
# Buffers in GB, chunks in MB
# ---------------------------
# Smaller sizes show the buffers as they come. A frame is 2 KiB: 0.05 MB holds 24 frames per
# chunk and 0.2 MB four chunks per buffer. Each buffer is released when its last frame is
# complete, so the writer is always a little ahead; the last buffer is what completed of the
# tail. Iterating yields :class:`~hdmf.data_utils.DataChunk` objects, each with its selection.
releases = []  # (last frame of the buffer, frames complete when it was released)
with LiveDataChunkIterator(source, "/entry/data/data", chunk_mb=0.05, buffer_gb=0.0002) as frames:
    print(frames)
    writer.go()
    for j, buffer in enumerate(frames, start=1):
        rows = buffer.selection[0]
        complete = frames.recommended_data_shape()[0]
        releases.append((rows.stop, complete))
        print(f"buffer {j}: frames {rows.start}:{rows.stop} ({complete} complete at release)")
    print("stop reason:", frames.stop_reason, "frames done:", frames.frames_done)
writer.wait()
writer.close()

# %%
# Each buffer ends on a chunk boundary (every 24 frames, 4 chunks a buffer), and it is released
# once its frames are complete: the writer is then a few frames further on, never behind.
stops, complete = np.array(releases).T
fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
ax.step(np.arange(1, len(stops) + 1), stops, where="mid", label="end of the buffer")
ax.plot(np.arange(1, len(stops) + 1), complete, ".", label="frames complete at its release")
ax.set_xlabel("buffer")
ax.set_ylabel("frames")
ax.legend()
plt.show()

# %%
# Explicit shapes, written into an NWB file while the detector runs
# -----------------------------------------------------------------
# As in hdmf's tutorial, ``chunk_shape`` must divide ``buffer_shape``: each buffer then covers
# whole chunks of the NWB dataset and each chunk is compressed once. Wrapped in ``H5DataIO``,
# the iterator gives HDF5IO the chunks, compression and ``maxshape`` of the new dataset, which
# grows as buffers arrive.
#
# This detector also records when each frame was flushed (``/entry/flush_time``, Unix time).
# The timestamps' iterator shares the frames' :class:`h5live.KeyFollower` and file: HDF5 2.0
# reads wrong data when one dataset is open twice in a process, so h5live refuses that
# (``DuplicateHandleError``). ``exhaust_dci=False`` writes the two iterators in turn.
source = workdir / "camera.h5"
writer = WriterProcess(
    source, scan_shape=(400,), frame_shape=(32, 32), frame_rate_hz=2000, timestamps=True, hold_at=0
)
print("ready:", writer.start())
nwbfile = NWBFile(
    session_description="live acquisition from a simulated detector",
    identifier="h5live-tutorial-3",
    session_start_time=datetime.now(timezone.utc),
    timestamps_reference_time=datetime.fromtimestamp(0, timezone.utc),  # flush times: Unix time
)

# %%
# The frames' iterator shows a progress bar (``display_progress=True``): frames, MB/s and the
# lag behind the writer. ``progress_bar_class=tqdm`` from ``tqdm.auto`` draws it as a widget in
# Jupyter and as text in a terminal.
frames = LiveDataChunkIterator(
    source,
    "/entry/data/data",
    chunk_shape=(32, 32, 32),
    buffer_shape=(128, 32, 32),
    display_progress=True,
    progress_bar_class=tqdm,
)
times = LiveDataChunkIterator(
    frames.dataset.file["/entry/flush_time"],
    follower=frames.follower,
    chunk_shape=(64,),
    buffer_shape=(128,),
)
print(frames)
print(times)

# %%
# The write: it returns once the writer has set its finished flag and every complete frame is
# in the NWB file.
nwbfile.add_acquisition(
    ImageSeries(
        name="detector",
        data=H5DataIO(frames, compression="gzip"),
        timestamps=H5DataIO(times),
        unit="counts",
    )
)
writer.go()
with NWBHDF5IO(workdir / "scan.nwb", "w") as io:
    io.write(nwbfile, exhaust_dci=False)
print("stop reason:", frames.stop_reason, "frames done:", frames.frames_done)
print("timestamps done:", times.frames_done)
frames.close()  # closes the source file (the timestamps' iterator shares it)
writer.wait()
writer.close()

# %%
# Read it back with PyNWB
# -----------------------
# The NWB file holds exactly the frames the detector wrote, in 32-frame gzip chunks, and the
# flush time of each. ``frame_values`` gives what the simulated detector writes at each index.
with h5py.File(source, "r") as f:
    flushed = f["/entry/flush_time"][...]
with NWBHDF5IO(workdir / "scan.nwb", "r") as io:
    series = io.read().acquisition["detector"]
    data = series.data
    print("NWB data", data.shape, data.dtype, "chunks", data.chunks, data.compression)
    print("maxshape", data.maxshape, "timestamps", series.timestamps.shape)
    expected = np.stack([frame_values(i, (32, 32), "uint16") for i in range(400)])
    assert np.array_equal(data[:], expected)
    assert np.array_equal(series.timestamps[:], flushed)
    print("frames and timestamps equal the source's")
print("pynwb.validate:", pynwb.validate(path=str(workdir / "scan.nwb")))
print("files in", workdir)
