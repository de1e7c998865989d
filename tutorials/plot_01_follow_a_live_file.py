"""
Follow a live file
==================

A detector writes frames into an HDF5 file in SWMR mode. After each frame's data is flushed, it
sets that frame's *key* (a non-zero integer in a dataset shaped like the scan, fill value 0),
and once the acquisition is over it sets a *finished* flag. :class:`h5live.KeyFollower` tells
you, while the writer is still going, which frames are complete: every frame up to the
*frontier* has all its keys set.

This tutorial runs a simulated detector in another process (the same one the tests use) and
follows it four ways: frame by frame, in ranges, by polling, and by waiting for one frame. It
then shows what happens when the writer dies, and how gaps in the keys are handled.
"""

# %%
# A simulated detector in another process
# ---------------------------------------
# :class:`h5live.testing.WriterProcess` starts a real SWMR writer. It lays the file out like
# real detectors do: frames in ``/entry/data/data``, keys in ``/entry/keys/``, and a finished
# flag in ``/entry/finished``; ``timestamps=True`` also records when each frame was flushed
# (``/entry/flush_time``, Unix time). ``hold_at=0`` makes it wait for ``go()`` before the
# first frame, so that we are following before anything is written.
import tempfile
import time
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np

from h5live import FollowPolicy, KeyFollower
from h5live.testing import WriterProcess

workdir = Path(tempfile.mkdtemp(prefix="h5live-tutorial-"))
source = workdir / "scan.h5"

# %%
writer = WriterProcess(
    source,
    scan_shape=(600,),  # a stack of 600 frames...
    frame_shape=(32, 32),  # ...of 32x32 pixels
    frame_rate_hz=2000,
    n_keys=2,  # two key datasets, flushed in random order
    key_order="random",
    timestamps=True,
    hold_at=0,
)
writer.start()
print("the writer is ready, holding before its first frame:", writer)

# %%
# Frame by frame
# --------------
# :meth:`KeyFollower.from_path` opens the file read-only in SWMR mode (retrying while the
# writer creates it) and finds the keys and the finished flag in the known layouts. Iterating
# yields the flat index of each complete frame, once and in order, and stops when the
# finished flag is set (reading the keys once more first, because the writer sets the last
# keys just before the flag). We note when each frame became complete.
complete_at = np.full(600, np.nan)
with KeyFollower.from_path(source, timeout=10) as follower:
    print(follower)
    writer.go()
    data = follower.key_datasets[0].file["/entry/data/data"]
    for index in follower:
        complete_at[index] = time.time()
        if index % 150 == 0:
            data.refresh()  # refresh before trusting a shape or reading new data
            print(f"frame {index} is complete; its sum is {data[index].sum()}")
    print(follower, "stopped because:", follower.stop_reason)
writer.wait()
writer.close()

# %%
# How long each frame waited
# --------------------------
# The writer flushes a frame's data, then sets its keys; the follower sees the frame complete
# at its next poll. Most frames are handed out a millisecond or two after their flush (a poll
# interval, ``FollowPolicy.poll_interval_s``, plus the poll itself); the first ones may wait
# longer while this process starts reading and printing.
with h5py.File(source, "r") as f:
    flushed = f["/entry/flush_time"][...]
latency_ms = (complete_at - flushed) * 1e3
p50, p99 = np.percentile(latency_ms, [50, 99])
fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
ax.plot(flushed - flushed[0], latency_ms, ".", markersize=3)
ax.axhline(p50, color="black", linestyle="--", label=f"p50 {p50:.2f} ms")
ax.axhline(p99, color="black", linestyle=":", label=f"p99 {p99:.2f} ms")
ax.set_xlabel("time since the first frame (s)")
ax.set_ylabel("flush to complete (ms)")
ax.legend()
plt.show()

# %%
# In ranges, for consumers that work in batches
# ---------------------------------------------
# :meth:`KeyFollower.iter_ranges` yields ``(start, stop)`` for the frames that became complete
# since the last step: one hyperslab read instead of one read per frame. ``max_frames`` caps
# the batch size.
writer = WriterProcess(source, scan_shape=(20, 30), frame_shape=(16,), frame_rate_hz=3000)
writer.start()
with KeyFollower.from_path(source) as follower:
    print("a grid scan: scan rank", follower.scan_rank, "maxshape", follower.maxshape)
    data = follower.key_datasets[0].file["/entry/data/data"]
    batches = []
    for start, stop in follower.iter_ranges(max_frames=128):
        data.refresh()
        first_row, end_row = start // 30, (stop - 1) // 30 + 1  # the scan rows of this batch
        rows = data[first_row:end_row].reshape(-1, 16)  # one hyperslab read
        spectra = rows[start - first_row * 30 : stop - first_row * 30]
        batches.append(len(spectra))
    print(f"{sum(batches)} frames in {len(batches)} batches of at most 128")
writer.wait()
writer.close()

# %%
# Polling and waiting for one frame
# ---------------------------------
# :meth:`KeyFollower.poll` reads the keys once without blocking and returns the frontier;
# :meth:`KeyFollower.wait_for` blocks until a given frame is complete. An idle poll reads only
# a small window of the keys after the frontier, so it costs the same whether the scan has a
# thousand frames or ten million (see ``benchmarks/RESULTS.md``).
writer = WriterProcess(source, scan_shape=(1000,), frame_shape=(), frame_rate_hz=4000, hold_at=0)
writer.start()
with KeyFollower.from_path(source) as follower:
    print("before the writer starts, the frontier is", follower.poll())
    writer.go()
    print("frame 800 complete:", follower.wait_for(800, timeout_s=30))
    print("frontier now", follower.poll())
writer.wait()
writer.close()

# %%
# When the writer dies
# --------------------
# Without the finished flag, the follower stops after ``timeout`` seconds without a new frame,
# having delivered every complete frame; ``stop_reason`` says why. Frames the writer never
# finished are never handed out: fill values are never presented as data.
writer = WriterProcess(source, scan_shape=(500,), frame_rate_hz=4000, crash_after=321)
writer.start()
with KeyFollower.from_path(source, timeout=0.5) as follower:
    delivered = list(follower)
print(f"{len(delivered)} frames delivered; stop reason: {follower.stop_reason!r}")
print("writer exit code:", writer.wait())
writer.close()

# %%
# Gaps in the keys
# ----------------
# A key left at 0 (a dropped frame) blocks the frontier, as in swmr_tools. With
# ``FollowPolicy(gaps="skip")``, a gap that stays open for ``gap_timeout_s`` while later
# frames are complete is skipped and reported.
writer = WriterProcess(source, scan_shape=(300,), frame_rate_hz=3000, gaps=(42, 43))
writer.start()
policy = FollowPolicy(gaps="skip", gap_timeout_s=0.1)
with KeyFollower.from_path(source, policy=policy) as follower:
    delivered = list(follower)
print(f"{len(delivered)} frames delivered, skipped: {follower.skipped}")
print("delivered mask at 40..45:", follower.delivered_mask()[40:46])
writer.wait()
writer.close()

# %%
# The file the writer left behind is an ordinary HDF5 file.
with h5py.File(source, "r") as f:
    print("finished flag:", f["/entry/finished"][()], "keys:", list(f["/entry/keys"]))
