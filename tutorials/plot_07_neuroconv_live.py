"""
Convert a live acquisition with neuroconv
=========================================

`neuroconv <https://neuroconv.readthedocs.io>`_ converts recordings to NWB through
*DataInterfaces*, combined in a converter, and a *backend configuration* that sets the chunks
and compression of each dataset. :class:`h5live.neuroconv.LiveHDF5Interface` is such an
interface for a file that another process is still writing: its series is written while the
detector writes it, and the conversion ends when the detector sets its finished flag.

Here a simulated camera writes frames and their flush times; the interface is combined with one
of neuroconv's own interfaces (trials from a CSV file); the backend configuration is edited; the
conversion runs while the camera writes, and the NWB file is read with PyNWB meanwhile; at the
end it is checked with PyNWB and the NWB Inspector. Needs ``pip install "h5live[neuroconv]"``.
"""

# %%
# The camera
# ----------
# :class:`h5live.testing.WriterProcess` writes 600 frames of 32x32 pixels at 300 frames per
# second, and the time each frame was flushed (``/entry/flush_time``, Unix time). It holds
# before the first frame until ``go()``, so that everything below starts while nothing is
# written yet: the length of the acquisition is not known.
import json
import tempfile
import threading
import time
import warnings
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pynwb
from neuroconv.datainterfaces import CsvTimeIntervalsInterface
from neuroconv.tools import nwb_helpers
from nwbinspector import inspect_nwbfile

from h5live.neuroconv import (
    LiveConverterPipe,
    LiveHDF5Interface,
    configure_and_write_nwbfile,
    configure_backend,
    get_default_backend_configuration,
)
from h5live.testing import WriterProcess, frame_values

workdir = Path(tempfile.mkdtemp(prefix="h5live-tutorial-"))
source, nwb_path = workdir / "camera.h5", workdir / "session.nwb"
writer = WriterProcess(
    source, scan_shape=(600,), frame_shape=(32, 32), frame_rate_hz=300, timestamps=True, hold_at=0
)
print("ready:", writer.start())

# %%
# The interface and its metadata
# ------------------------------
# The interface opens the file for SWMR reading, finds the frames (the largest dataset that
# grows with the scan), the keys, the finished flag and the flush times, and closes it again.
# A missing file or dataset, a source without timing or a grid scan would be refused here,
# before any NWB file exists. ``get_metadata`` says what the source knows; the session's
# start, description and subject are for you to add, as with any neuroconv interface.
camera = LiveHDF5Interface(source)
print(camera)
metadata = camera.get_metadata()
print(json.dumps({k: metadata[k] for k in ("LiveHDF5", "Devices")}, indent=1))

# %%
metadata["NWBFile"].update(
    session_start_time="2026-03-04T09:30:00+01:00",
    session_description="Widefield imaging of a head-fixed mouse, converted live",
    experimenter=["Doe, Jane"],
    institution="Example Institute",
)
metadata["Subject"] = {"subject_id": "M042", "species": "Mus musculus", "sex": "F", "age": "P90D"}
metadata["LiveHDF5"][camera.metadata_key]["name"] = "widefield"
metadata["LiveHDF5"][camera.metadata_key]["description"] = "raw widefield frames, 32x32 pixels"

# %%
# One of neuroconv's own interfaces beside it
# -------------------------------------------
# The trials of the session come from a CSV file. :class:`~h5live.neuroconv.LiveConverterPipe`
# is neuroconv's ``ConverterPipe``; it fills one NWBFile from both interfaces.
trials = workdir / "trials.csv"
trials.write_text("start_time,stop_time,stimulus\n0.2,0.7,grating\n1.0,1.5,blank\n")
converter = LiveConverterPipe([camera, CsvTimeIntervalsInterface(file_path=trials)])
nwbfile = converter.create_nwbfile(metadata=metadata)
print(nwbfile.acquisition["widefield"])

# %%
# The backend configuration
# -------------------------
# neuroconv's own default configuration takes each dataset's full shape from its ``maxshape``;
# the camera's length is not known yet (``None``), and neuroconv refuses it:
try:
    nwb_helpers.get_default_backend_configuration(nwbfile, backend="hdf5")
except TypeError as error:
    print("neuroconv:", error)

# %%
# :func:`h5live.neuroconv.get_default_backend_configuration` has the same signature and the
# same defaults; a live dataset's full shape has ``None`` on its growing axis. Edit it as any
# neuroconv configuration: here chunks of 30 frames, buffers of 60, shuffle and gzip. The live
# iterators will follow these chunk and buffer shapes.
configuration = get_default_backend_configuration(nwbfile, backend="hdf5")
frames = configuration.dataset_configurations["acquisition/widefield/data"]
frames.chunk_shape = (30, 32, 32)
frames.buffer_shape = (60, 32, 32)
frames.compressors = ["shuffle", "gzip"]
print(frames)
print(configuration.dataset_configurations["intervals/trials/stimulus/data"])

# %%
# :func:`h5live.neuroconv.configure_backend` applies it: each live dataset gets an iterator
# with the configuration's chunk and buffer shapes, in an ``H5DataIO`` with its compression.
configure_backend(nwbfile, configuration)
iterator = nwbfile.acquisition["widefield"].data.data  # the live iterator, inside its H5DataIO
print(iterator)

# %%
# Convert while the camera writes, and read the NWB file meanwhile
# ----------------------------------------------------------------
# :func:`h5live.neuroconv.configure_and_write_nwbfile` (which would apply the configuration if
# we had not) writes the file and returns when the camera has finished. It runs in a thread
# here, so that we can read the file while it is written: h5live's live write path creates
# every NWB object first, then switches the file to SWMR mode, with its bookkeeping in
# ``/scratch`` (``h5live_frames_complete``, ``h5live_state``). Open it with h5py in SWMR mode
# and hand it to PyNWB; open it again for news, one file object at a time. A complete frame
# reaches the file within about a second (the latency bound). Frames may be a chunk ahead of
# their timestamps (PyNWB warns that the lengths differ): ``h5live_frames_complete`` counts the
# frames written with their timestamps.
failed = []  # what the conversion raised, raised again here once it has ended


def convert() -> None:
    try:
        configure_and_write_nwbfile(
            nwbfile=nwbfile, nwbfile_path=nwb_path, backend_configuration=configuration
        )
    except BaseException as exc:
        failed.append(exc)


conversion = threading.Thread(target=convert)
conversion.start()
writer.go()
started = time.monotonic()
samples = []  # (seconds, frames written by the camera, frames complete in the NWB file)
while conversion.is_alive():
    conversion.join(0.5)
    written = iterator.follower.current_max + 1
    try:
        with h5py.File(nwb_path, "r", libver="latest", swmr=True) as f:
            complete = int(f["/scratch/h5live_frames_complete"][()])
            state = f["/scratch/h5live_state"][()].decode()
            with warnings.catch_warnings(), pynwb.NWBHDF5IO(file=f, mode="r") as io:
                warnings.filterwarnings("ignore", "ImageSeries 'widefield': Length of data")
                frames_in_file = io.read().acquisition["widefield"].data.shape[0]
    except (OSError, KeyError):  # not in SWMR mode yet
        continue
    samples.append((time.monotonic() - started, written, complete))
    print(
        f"camera: {written} frames; NWB file ({state}): {complete} complete, PyNWB sees "
        f"{frames_in_file}"
    )
writer.wait()
writer.close()
converter.close()  # the sessions of the live interfaces
if failed:
    raise failed[0]

# %%
seconds, camera_frames, nwb_frames = np.array(samples).T
fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
ax.step(seconds, camera_frames, where="post", label="written by the camera")
ax.step(seconds, nwb_frames, where="post", label="complete in the NWB file")
ax.set_xlabel("seconds since the camera started")
ax.set_ylabel("frames")
ax.legend()
plt.show()

# %%
# Check the NWB file
# ------------------
# PyNWB reads back every frame the camera wrote, in chunks of 30 frames, compressed as
# configured; the timestamps are the flush times, in seconds after the session start. The
# trials are there too. ``pynwb.validate`` checks the file against the NWB schema and the NWB
# Inspector checks best practices.
with h5py.File(source, "r") as f:
    flushed = f["/entry/flush_time"][...]
session_start = np.datetime64("2026-03-04T08:30:00", "us").astype(float) / 1e6
with pynwb.NWBHDF5IO(nwb_path, "r") as io:
    read = io.read()
    widefield = read.acquisition["widefield"]
    data = widefield.data
    print(type(widefield).__name__, data.shape, "chunks", data.chunks, data.compression)
    assert np.array_equal(data[:], np.stack([frame_values(i, (32, 32), "u2") for i in range(600)]))
    assert np.allclose(widefield.timestamps[:], flushed - session_start, rtol=0, atol=1e-6)
    print("frames and timestamps equal the camera's")
    print(read.trials.to_dataframe())
print("pynwb.validate:", pynwb.validate(path=str(nwb_path)))
for message in inspect_nwbfile(nwbfile_path=nwb_path):
    print(f"nwbinspector: {message.importance.name} at {message.location}: {message.message}")
print("files in", workdir)
