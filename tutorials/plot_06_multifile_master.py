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
import numpy as np

from h5live import KeyFollower, copy_live
from h5live.testing import MultiFileAcquisition, frame_values

workdir = Path(tempfile.mkdtemp(prefix="h5live-tutorial-"))
master = workdir / "scan.h5"

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
# their data live in the detector files. h5py lists where each block comes from.
with h5py.File(master, "r", libver="latest", swmr=True) as f:
    data = f["/entry/detector/data"]
    print(data.is_virtual, data.chunks, data.maxshape)
    for mapping in data.virtual_sources():
        print(mapping.file_name, mapping.dset_name)

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
# and is itself followable.
result = copy_live(master, workdir / "copy.h5", timeout=10)
acquisition.wait()
acquisition.close()
print(result.state, result.frames_complete, result.chunk_copy)
with h5py.File(workdir / "copy.h5", "r") as copy:
    frames = copy["/entry/detector/data"][()]
    wanted = np.stack([frame_values(i, (32, 32), "uint16") for i in range(400)])
    print("copy equals the frames written:", np.array_equal(frames, wanted))
    print(copy["/entry/detector/data"].is_virtual)
