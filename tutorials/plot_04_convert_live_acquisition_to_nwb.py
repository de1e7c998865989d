"""
Convert a live acquisition to NWB with ``h5live nwb``
=====================================================

:func:`h5live.to_nwb` (``h5live nwb`` on the command line) writes an acquisition into an NWB
file *while the detector is still writing it*: the frames become an ``ImageSeries``, the flush
time of each frame its timestamps, and a YAML file supplies the session, the subject and the
series. The NWB file can be opened with PyNWB during the acquisition, and it says itself how
many of its frames are complete. A converter that dies is continued with ``--resume``.

A simulated detector runs in one process and the converter in another, as at a rig or a
beamline; this script reads the NWB file as it grows, kills the converter, resumes it, and
checks the result.
"""

# %%
# The detector and the session metadata
# -------------------------------------
# :class:`h5live.testing.WriterProcess` writes 1000 frames of 32x32 pixels at 1 kHz, and the
# time each frame was flushed (``/entry/flush_time``, Unix time). ``hold_at=0`` holds it before
# the first frame until ``go()``. The metadata file holds NWB's file fields, a ``subject`` and
# the ``series``; what is left out gets a default that keeps the file valid.
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pynwb
from nwbinspector import inspect_nwbfile

from h5live.testing import WriterProcess, frame_values

workdir = Path(tempfile.mkdtemp(prefix="h5live-tutorial-"))
source, nwb_path = workdir / "acquisition.h5", workdir / "acquisition.nwb"

# %%
writer = WriterProcess(
    source, scan_shape=(1000,), frame_shape=(32, 32), frame_rate_hz=1000, timestamps=True, hold_at=0
)
print("ready:", writer.start())

# %%
metadata = workdir / "session.yaml"
metadata.write_text("""\
session_description: Widefield imaging of a head-fixed mouse, converted live by h5live
experiment_description: Spontaneous activity, 1 s at 1 kHz
session_start_time: "2025-03-14T09:30:00+01:00"
identifier: rig2-2025-03-14-run07
experimenter: ["Doe, Jane"]
institution: Example Institute
keywords: [widefield, live conversion]
subject:
  subject_id: M042
  species: Mus musculus
  sex: F
  age: P90D
series:
  name: camera
  unit: counts
  description: raw frames of the widefield camera, 32x32 pixels
""")
print(metadata.read_text())

# %%
# Start the converter
# -------------------
# ``h5live nwb`` finds the frames (the largest dataset growing with the scan), the keys, the
# finished flag and the timestamps by itself. ``--chunk-shape 50 32 32`` stores 50 frames per
# HDF5 chunk, and ``--max-latency 0.05`` writes the complete frames once the oldest of them has
# waited 50 ms (a chunk that is not full yet is written again as it fills), instead of waiting
# for a full buffer. Once every NWB
# object exists, the converter switches the file to SWMR mode: from then on readers may open it,
# and h5live's bookkeeping (``/scratch/h5live_*``) is there.
command = [
    sys.executable, "-m", "h5live", "nwb", str(source), str(nwb_path),
    "--metadata", str(metadata), "--chunk-shape", "50", "32", "32",
    "--max-latency", "0.05", "--json", "--no-progress",
]  # fmt: skip
converter = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def scratch(f: h5py.File, name: str) -> str | int:
    """One of h5live's values in /scratch of an NWB file."""
    value = f[f"/scratch/h5live_{name}"][()]
    return value.decode() if isinstance(value, bytes) else int(np.ravel(value)[0])


deadline = time.monotonic() + 30
while True:
    try:
        with h5py.File(nwb_path, "r", libver="latest", swmr=True) as f:
            print("converter:", scratch(f, "state"))
        break
    except (OSError, KeyError):  # no file yet, not yet in SWMR mode, or no bookkeeping yet
        if time.monotonic() > deadline or converter.poll() is not None:
            raise
        time.sleep(0.05)
writer.go()

# %%
# Read the NWB file while it is written
# -------------------------------------
# Open it with h5py in SWMR mode and hand the file to PyNWB. You read the file as it was when
# you opened it: open it again for news, one file object at a time (HDF5 reads wrong data when
# a dataset is open twice in a process; h5live raises ``DuplicateHandleError`` instead). The
# converter writes a chunk of frames, then the chunk of their timestamps, so the frames may be
# a chunk ahead and PyNWB warns that the lengths differ. ``h5live_frames_complete`` counts the
# frames written with their timestamps: read it first, and use the frames up to it.
started = time.monotonic()
samples = []  # (seconds since the detector started, frames complete in the NWB file)
complete = 0
while complete < 300 and converter.poll() is None:
    time.sleep(0.1)
    with h5py.File(nwb_path, "r", libver="latest", swmr=True) as f:
        complete, state = scratch(f, "frames_complete"), scratch(f, "state")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "ImageSeries 'camera': Length of data")
            with pynwb.NWBHDF5IO(file=f, mode="r") as io:
                camera = io.read().acquisition["camera"]
                stored = f"{camera.data.shape[0]} frames, {len(camera.timestamps)} timestamps"
    samples.append((time.monotonic() - started, complete))
    print(f"{state}: {complete} frames complete; PyNWB sees {stored}")

# %%
# A converter that dies, resumed
# ------------------------------
# ``kill()`` sends SIGKILL: the converter cannot record anything, so the file still says
# ``writing``, and it keeps every frame counted as complete. ``--resume`` continues it: it
# checks that the file was written by h5live from the same source and that no other converter
# still writes it, clears the flags the killed HDF5 writer left in the file, and starts again
# at the last chunk row that frames and timestamps both hold completely (rows written twice
# hold the same data). Without ``--resume`` or ``--overwrite`` an existing file is refused.
converter.kill()
converter.communicate()  # reap it and close its pipes
killed_at = time.monotonic() - started
with h5py.File(nwb_path, "r", libver="latest", swmr=True) as f:
    print(f"killed: {scratch(f, 'frames_complete')} frames complete, {scratch(f, 'state')!r}")

# %%
resumed = subprocess.Popen(
    [*command, "--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
)
resumed_at = time.monotonic() - started

# %%
# When the acquisition ends
# -------------------------
# The converter stops once the detector has set its finished flag and every frame is written,
# with exit code 0 and, with ``--json``, a summary on stdout: ``resumed_from`` is the first
# frame this run wrote. Meanwhile we keep reading how many frames the NWB file holds.
while resumed.poll() is None:
    time.sleep(0.1)
    try:
        with h5py.File(nwb_path, "r", libver="latest", swmr=True) as f:
            samples.append((time.monotonic() - started, scratch(f, "frames_complete")))
    except (OSError, KeyError):  # the resumed converter is reopening the file
        pass
writer.wait()
writer.close()
out, err = resumed.communicate(timeout=60)
print("exit code", resumed.returncode, "stderr", repr(err))
print(json.dumps(json.loads(out), indent=1))

# %%
# The NWB file grew while the detector wrote and held still while no converter ran: after the
# kill, and while the resumed converter started (a new Python process importing PyNWB takes
# about a second). Then it caught up at once: the frames the detector had written meanwhile
# were waiting in its file.
seconds, frames_complete = np.array(samples).T
fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
ax.step(seconds, frames_complete, where="post", label="frames complete in the NWB file")
ax.axvline(killed_at, color="tab:red", linestyle="--", label="converter killed")
ax.axvline(resumed_at, color="tab:green", linestyle="--", label="resumed")
ax.set_xlabel("seconds since the detector started")
ax.set_ylabel("frames")
ax.legend()
plt.show()

# %%
# Check the NWB file
# ------------------
# PyNWB reads back every frame the detector wrote and its flush time; ``h5live_finished`` is 1.
# ``pynwb.validate`` checks the file against the NWB schema, and the NWB Inspector checks best
# practices: its one suggestion here asks for a ``description`` under ``subject``.
with h5py.File(source, "r") as f:
    flushed = f["/entry/flush_time"][...]
expected = np.stack([frame_values(i, (32, 32), "uint16") for i in range(1000)])
with pynwb.NWBHDF5IO(nwb_path, "r") as io:
    nwbfile = io.read()
    camera = nwbfile.acquisition["camera"]
    print(type(camera).__name__, camera.data.shape, "chunks", camera.data.chunks, camera.unit)
    print("subject", nwbfile.subject.subject_id, nwbfile.subject.species, nwbfile.subject.age)
    assert np.array_equal(camera.data[:], expected)
    assert np.array_equal(camera.timestamps[:], flushed)
    print("frames and timestamps equal the source's")
with h5py.File(nwb_path, "r") as f:
    print("finished", scratch(f, "finished"), "state", scratch(f, "state"))
print("pynwb.validate:", pynwb.validate(path=str(nwb_path)))
for message in inspect_nwbfile(nwbfile_path=nwb_path):
    print(f"nwbinspector: {message.importance.name} at {message.location}: {message.message}")
print("files in", workdir)
