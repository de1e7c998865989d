"""
Follow and copy a master file over several detector files
==========================================================

At a beamline one acquisition is often several files: each detector writer process (Odin's
frame processors) writes its own file in SWMR mode, frames dealt out in blocks, and a master
NeXus file stitches them together with *virtual datasets* (VDS) or external links. Point h5live
at the master: it follows, reads and copies it while every file is being written, and names
everything by the master's paths.

This tutorial runs such an acquisition with the simulator the tests use: two detector files,
each written by its own process, and the master written by a third.
"""

# %%
# Two detector files and a master, three processes
# ------------------------------------------------
# :class:`h5live.testing.MultiFileAcquisition` starts the master's writer (it creates the
# master before the detector files exist) and one writer per detector file. With
# ``layout="vds"`` the master interleaves the files in blocks of ``block`` frames, as
# fastcs-odin's VDS generator does, and its keys are a VDS of the files' ``uint64`` unique ids.
# ``hold_at=0``: the detectors wait for ``go()`` before their first frame.
import tempfile
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm  # a widget in Jupyter, text elsewhere

from h5live import KeyFollower, copy_live
from h5live.testing import MultiFileAcquisition, frame_values

workdir = Path(tempfile.mkdtemp(prefix="h5live-tutorial-"))
master = workdir / "scan.h5"

# %%
acquisition = MultiFileAcquisition(
    master,
    files=2,
    layout="vds",
    block=10,
    scan_shape=(400,),
    frame_shape=(32, 32),
    frame_rate_hz=2000,
    timestamps=True,
    hold_at=0,
)
acquisition.start()
print([Path(p).name for p in acquisition.detector_paths])

# %%
# What the master holds
# ---------------------
# The frames and the keys are virtual datasets: no storage of their own (``chunks`` is None),
# their data live in the detector files. h5py lists where each block comes from: each
# mapping selects blocks of 10 frames, every 20 frames (``start``, ``stride``, ``block``).
owner = np.zeros(400, dtype=int)  # which detector file holds each frame
with h5py.File(master, "r", libver="latest", swmr=True) as f:
    data = f["/entry/detector/data"]
    print(data.is_virtual, data.chunks, data.maxshape)
    for j, mapping in enumerate(data.virtual_sources()):
        start, stride, _, block = mapping.vspace.get_regular_hyperslab()
        print(mapping.file_name, mapping.dset_name, "start", start[0], "stride", stride[0])
        for first in range(start[0], 400, stride[0]):
            owner[first : first + block[0]] = j

# %%
# Follow it
# ---------
# :meth:`KeyFollower.from_path` finds the keys (``/entry/keys/uid``) and the finished flag,
# waits for source files that do not exist yet, and refreshes the keys' VDS on each poll (a
# refresh of a VDS reaches its source datasets). Frames come out once, in order, while the two
# writers write.
with KeyFollower.from_path(master, timeout=10) as follower:
    acquisition.go()
    complete = sum(1 for _ in follower)
    print(f"{complete} frames, stopped: {follower.stop_reason}")

# %%
# Copy it into one ordinary file
# ------------------------------
# :func:`h5live.copy_live` finds the live datasets (the frames' VDS and the flush times') and
# writes them under the master's paths into one file with no VDS and no links: it stands alone
# and is itself followable. ``display_progress=True`` shows its progress bar.
result = copy_live(
    master, workdir / "copy.h5", timeout=10, display_progress=True, progress_bar_class=tqdm
)
acquisition.wait()
acquisition.close()
print(result.state, result.frames_complete, result.chunk_copy)

# %%
with h5py.File(workdir / "copy.h5", "r") as copy:
    frames = copy["/entry/detector/data"][()]
    flushed = copy[acquisition.config.timestamp_paths[0]][()]
    wanted = np.stack([frame_values(i, (32, 32), "uint16") for i in range(400)])
    print("copy equals the frames written:", np.array_equal(frames, wanted))
    print("virtual:", copy["/entry/detector/data"].is_virtual)

# %%
# Two processes wrote at once
# ---------------------------
# The flush time of each frame, coloured by the detector file that holds it: each writer
# process flushed its own blocks of 10 frames, the two taking turns at the acquisition's pace,
# and the copy holds every frame in the master's order.
fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
for j in range(2):
    mine = np.flatnonzero(owner == j)
    ax.plot(mine, (flushed[mine] - flushed.min()) * 1e3, ".", markersize=3, label=f"file {j + 1}")
ax.set_xlabel("frame (master's index)")
ax.set_ylabel("flushed (ms after the first)")
ax.legend()
plt.show()
