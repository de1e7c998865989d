"""
Read live frames
================

Knowing which frames are complete (tutorial 1) is half the job; the other half is reading
them. :class:`h5live.DataSource` pairs a :class:`h5live.KeyFollower` with one
:class:`h5live.FrameReader` per dataset and hands out the frames of every complete scan
point, with where they sit in the scan. It is the ``swmr_tools.DataSource`` API: programs
written for swmr_tools run on it by changing their imports.

Here a simulated detector runs a 2-D grid scan in another process. We reduce every frame to
one number while the scan runs and write the results into a new file that has the shape of
the scan, as the swmr_tools manual does. Then we do the same in batches, which reads each run
of complete frames with one read instead of one read per frame.
"""

# %%
# A live grid scan
# ----------------
# 15 rows of 20 points, a 24x32 image per point, LZ4-compressed, one image per chunk.
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers LZ4, Blosc, Zstd... with h5py for reading)
import matplotlib.pyplot as plt
import numpy as np

from h5live import DataSource
from h5live.testing import WriterProcess, frame_values

workdir = Path(tempfile.mkdtemp(prefix="h5live-tutorial-"))
source = workdir / "grid.h5"

# %%
writer = WriterProcess(
    source,
    scan_shape=(15, 20),
    frame_shape=(24, 32),
    compression="lz4",
    frame_rate_hz=2000,
    hold_at=0,
)
writer.start()
print("ready:", writer)

# %%
# Frame by frame, results written back
# ------------------------------------
# Each item is a dict of frames by name. A frame keeps its scan dims (here shape
# ``(1, 1, 24, 32)``) and ``item.slice_metadata`` says where it sits in the scan.
# ``create_dataset`` makes a result dataset with the scan's shape from the first result;
# ``append_data`` puts each later result in its place. Data is refreshed once per batch of new
# keys, after the keys are read and before the frames are: nothing ever sleeps a fixed time.
with (
    h5py.File(source, "r", libver="latest", swmr=True) as f,
    h5py.File(workdir / "sums.h5", "w") as out,
):
    frames = DataSource(
        [f["/entry/keys/key_0"]],
        {"data": f["/entry/data/data"]},
        timeout=10,
        finished_dataset=f["/entry/finished"],
    )
    writer.go()
    started = time.monotonic()
    read_at = np.zeros((15, 20))  # when each scan point was handed out, in ms
    sums = None
    for item in frames:
        read_at[item.slice_metadata] = (time.monotonic() - started) * 1e3
        total = item["data"].sum(dtype=np.int64)
        if sums is None:
            print("first frame", item["data"].shape, "at", item.slice_metadata)
            sums = frames.create_dataset(total, out, "sum")
        else:
            frames.append_data(total, item.slice_metadata, sums)
    print(frames, "finished:", frames.is_scan_finished())
    print("result shape", sums.shape)
    result = sums[...]
writer.wait()
writer.close()

# %%
# The result has the scan's shape
# -------------------------------
# One number per scan point, in its place in the 15x20 grid, written while the scan ran: the
# points were read in scan order, row by row, as the detector wrote them. The simulated
# detector's frames are known (:func:`h5live.testing.frame_values`), so we check every sum.
expected = [frame_values(i, (24, 32), "uint16").sum(dtype=np.int64) for i in range(300)]
assert np.array_equal(result.ravel(), expected)
fig, (when, what) = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
fig.colorbar(when.imshow(read_at, cmap="magma"), ax=when, label="ms after the first frame")
when.set_title("when each point was read")
fig.colorbar(what.imshow(result, cmap="viridis"), ax=what, label="sum of the frame")
what.set_title("the result dataset")
for ax in (when, what):
    ax.set_xlabel("scan column")
    ax.set_ylabel("scan row")
plt.show()

# %%
# In batches
# ----------
# ``batch_frames=n`` hands out up to ``n`` frames per item, each item one box of the scan grid:
# part of a row, or whole rows. Frames keep their scan dims, so a reduction over the frame
# dims gives results shaped like the box, and ``append_data`` places them in one write.
# ``use_direct_chunk=True`` reads whole-frame chunks with ``read_direct_chunk`` and decodes
# them in Python where that was measured faster than HDF5's filter pipeline for the codec and
# chunk size (here: uncompressed 1.5 KiB chunks, read directly); elsewhere it reads through h5py.
writer = WriterProcess(source, scan_shape=(15, 20), frame_shape=(24, 32), frame_rate_hz=3000)
print("ready:", writer.start())

# %%
# ``use_direct_chunk=True`` and ``batch_frames=64``: each item is one box of up to 64 frames.
with (
    h5py.File(source, "r", libver="latest", swmr=True) as f,
    h5py.File(workdir / "sums_batched.h5", "w") as out,
):
    frames = DataSource(
        [f["/entry/keys/key_0"]],
        {"data": f["/entry/data/data"]},
        finished_dataset=f["/entry/finished"],
        use_direct_chunk=True,
        batch_frames=64,
    )
    print(frames.frame_readers["data"])
    sums = frames.create_dataset(np.int64(0), out, "sum")
    boxes = []
    batch_of = np.zeros((15, 20), dtype=int)  # which batch each scan point came in
    for item in frames:
        totals = item["data"].sum(axis=(-2, -1), dtype=np.int64)  # shape of the box
        frames.append_data(totals, item.slice_metadata, sums)
        batch_of[item.slice_metadata] = len(boxes)
        boxes.append(totals.shape)
    print(len(boxes), "batches, the first ones shaped", boxes[:4])
    assert np.array_equal(sums[...].ravel(), expected)
writer.wait()
writer.close()
print("results in", workdir)

# %%
# Each batch is one box of the grid: the complete frames since the last one, cut where a row
# ends (part of a row, or whole rows), at most 64 frames.
fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
ax.imshow(batch_of % 10, cmap="tab10", interpolation="nearest")
ax.set_title(f"{len(boxes)} batches (colours repeat)")
ax.set_xlabel("scan column")
ax.set_ylabel("scan row")
plt.show()
