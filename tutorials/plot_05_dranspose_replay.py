"""
Replay a live acquisition through dranspose
===========================================

`dranspose <https://pypi.org/project/dranspose/>`_ (MAX IV) distributes detector streams
over workers, map-reduce style: each *event* (one trigger: a frame of every stream) goes to a
worker, whose result goes to one reducer. Analyses are developed with ``dranspose replay``,
which runs the worker and reducer classes in one process on recorded streams, or on a *source*
class that yields the events.

:class:`h5live.dranspose.H5LiveSource` is such a source for HDF5 files **being written**: it
follows the file's keys with h5live and yields each frame as a STINS image event the moment it
is complete, so a worker sees the acquisition live, as it would at the beamline. Frames that
the detector stored bitshuffle-LZ4 compressed are sent as stored (``compression="bslz4"``),
never decoded and re-encoded; :func:`h5live.dranspose.parse_stins` decodes them in the worker.

Here a simulated detector writes compressed frames in another process; a worker computes each
frame's total and centre of mass, a reducer collects them into arrays. Install the extra
first: ``pip install h5live[dranspose]``.
"""

# %%
# A live acquisition
# ------------------
# 300 frames of 48x64 pixels at 1000 frames/s, compressed with HDF5's bitshuffle-LZ4 filter,
# one frame per chunk. ``hold_at=0``: the detector waits for ``go()``, so the replay starts
# before the first frame is written.
import json
import os
import tempfile
import threading
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from h5live.dranspose import H5LiveSource, parse_stins
from h5live.testing import WriterProcess, frame_values

workdir = Path(tempfile.mkdtemp(prefix="h5live-tutorial-"))
source = workdir / "scan.h5"

# %%
writer = WriterProcess(
    source,
    scan_shape=(300,),
    frame_shape=(48, 64),
    compression="bitshuffle",
    frame_rate_hz=1000,
    hold_at=0,
)
print("ready:", writer.start())

# %%
# A worker and a reducer
# ----------------------
# dranspose calls ``process_event`` on a worker for every event; ``event.streams`` holds the
# STINS messages of each stream (here one, ``"detector"``). :func:`~h5live.dranspose.parse_stins`
# turns one into a packet: a ``header`` (event 0), an ``image`` with ``packet.data`` decoded
# (events 1..n: frame ``i`` in event ``i + 1``) or the ``series_end`` (event n + 1). The
# reducer receives each result, in whatever order the workers finish.
rows, cols = np.indices((48, 64))


class CentreWorker:
    def __init__(self, parameters=None, context=None, state=None):
        pass

    def process_event(self, event, parameters=None, tick=False):
        packet = parse_stins(event.streams["detector"])
        if packet.htype != "image":
            return None
        image = packet.data.astype(np.float64)
        total = image.sum()
        centre = ((rows * image).sum() / total, (cols * image).sum() / total)
        return {
            "frame": packet.frame,
            "total": total,
            "centre": centre,
            "codec": packet.compression,
        }


class CentreReducer:
    def __init__(self, parameters=None, context=None, state=None):
        self.publish = {"total": np.full(300, np.nan), "centre": np.full((300, 2), np.nan)}
        self.codecs = set()

    def process_result(self, result, parameters=None):
        frame = result.payload["frame"]
        self.publish["total"][frame] = result.payload["total"]
        self.publish["centre"][frame] = result.payload["centre"]
        self.codecs.add(result.payload["codec"])


# %%
# The source's configuration
# --------------------------
# ``dranspose replay -s module:Class`` creates the source without arguments, so
# :class:`~h5live.dranspose.H5LiveSource` reads its configuration from the environment
# variable ``H5LIVE_DRANSPOSE_CONFIG``: a JSON or YAML file, or JSON text. Each stream names a
# file (and optionally its dataset, default ``/entry/data/data``, key and finished datasets;
# by default those of a known layout). ``timeout_s`` ends a stream that stops growing without
# setting its finished flag. Several streams, from one file or several, come out of one
# generator: dranspose's replay stops at the first generator that runs out, so one generator
# per stream would lose the end of the longer ones.
os.environ["H5LIVE_DRANSPOSE_CONFIG"] = json.dumps(
    {"streams": {"detector": {"path": str(source), "dataset": "/entry/data/data"}}, "timeout_s": 10}
)
print(H5LiveSource())

# %%
# Replay, live
# ------------
# From a shell this is::
#
#     H5LIVE_DRANSPOSE_CONFIG=streams.json dranspose replay \
#         -w analysis:CentreWorker -r analysis:CentreReducer -s h5live.dranspose:H5LiveSource
#
# Here we call the same function in this process (``__main__`` is this script). The detector
# starts a moment after the replay, which yields each frame as soon as its key is set, and ends
# when the file's finished flag is set.
from dranspose.replay import replay  # the dranspose extra

threading.Timer(0.5, writer.go).start()
replay(
    "__main__:CentreWorker", "__main__:CentreReducer", None, "h5live.dranspose:H5LiveSource", None
)
writer.wait()
writer.close()

# %%
# The results
# -----------
# Every frame reached the reducer, sent as stored (bslz4) and decoded by the worker. The
# simulated detector's frames are a known ramp (:func:`h5live.testing.frame_values`), so we
# can check each total.
import dranspose.replay

reducer = dranspose.replay.reducer
totals = reducer.publish["total"]
print("frames reduced:", int(np.isfinite(totals).sum()), "codecs:", reducer.codecs)
expected = [frame_values(i, (48, 64), "uint16").sum(dtype=np.float64) for i in range(300)]
assert np.array_equal(totals, expected)
print("centre of mass of frame 0 and 299:", reducer.publish["centre"][[0, -1]].round(2).tolist())

# %%
# What the reducer published, frame by frame: the simulated frames are a ramp that shifts with
# the frame index (and wraps around in ``uint16``), so the total and the centre of mass move
# from frame to frame.
fig, (total_ax, centre_ax) = plt.subplots(2, 1, figsize=(7, 4.5), sharex=True, layout="constrained")
total_ax.plot(totals, ".", markersize=3)
total_ax.set_ylabel("total")
centre_ax.plot(reducer.publish["centre"][:, 0], ".", markersize=3, label="row")
centre_ax.plot(reducer.publish["centre"][:, 1], ".", markersize=3, label="column")
centre_ax.set_ylabel("centre of mass (px)")
centre_ax.set_xlabel("frame")
centre_ax.legend()
plt.show()

# %%
# In distributed mode
# -------------------
# At the beamline the same worker and reducer run in dranspose's distributed mode (a
# controller, workers and a reducer sharing a redis server). There
# :class:`h5live.dranspose.H5LiveIngester` plays the part of the detector's ingester, with the
# same configuration::
#
#     REDIS_URL=redis://localhost:6379/0 H5LIVE_DRANSPOSE_CONFIG=streams.json \
#         python -m h5live.dranspose
#
# and a trigger map with one event per frame of stream ``detector``. It follows the file on a
# thread of its own, so dranspose's event loop keeps serving the workers while it waits for the
# detector.
print("files in", workdir)
