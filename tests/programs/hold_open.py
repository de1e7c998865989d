"""Holds an h5live output open for SWMR reading while it is resumed (what a reader does).

``python hold_open.py OUTPUT STATUS_GROUP FRAMES``: opens OUTPUT, prints ``open``, then looks at
``STATUS_GROUP + "frames_complete"`` once per line on stdin (the test paces it) until it holds
FRAMES, and prints that count.
"""

import sys

import h5py

path, status, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
with h5py.File(path, "r", libver="latest", swmr=True) as f:
    count = f[status + "frames_complete"]
    print("open", flush=True)
    while count[()] < frames:
        sys.stdin.readline()
        count.refresh()
    print(count[()], flush=True)
