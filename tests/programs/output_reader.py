"""A SWMR reader of an h5live output that trusts the shape, as h5py and pynwb users do.

``python output_reader.py OUTPUT DATA STATUS SCAN_RANK DTYPE [FRAME ...]``

It refreshes the data dataset again and again and compares every frame inside its extent with
the simulated writer's (:func:`h5live.testing.frame_values`). It prints one JSON line per new
extent (``{"extent": rows, "at": wall time}``, flushed, so that a test can wait for it), and,
once the output's state is no longer ``writing`` (read before the data, so the last look sees
everything), a JSON summary: looks, the extents seen, and the frames that differed.
"""

from __future__ import annotations

import json
import math
import sys
import time

import h5py
import numpy as np

from h5live.testing import frame_values


def main() -> int:
    path, data_path, status, rank_text, dtype = sys.argv[1:6]
    frame = tuple(int(n) for n in sys.argv[6:])
    rank = int(rank_text)
    wrong: list[list[int]] = []
    looks, seen = 0, 0
    expected = np.zeros((0, *frame), dtype)
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        data, state = f[data_path], f[status + "state"]
        while True:
            state.refresh()
            done = bytes(state[()]).rstrip(b"\0").decode() != "writing"
            data.refresh()
            rows = int(data.shape[0])
            looks += 1
            if rows:
                got = data[:rows]
                frames = got.reshape(-1, *frame)
                if len(expected) < len(frames):
                    more = range(len(expected), len(frames))
                    expected = np.concatenate(
                        [expected, *(frame_values(i, frame, dtype)[None] for i in more)]
                    )
                differ = np.flatnonzero(
                    (frames != expected[: len(frames)]).reshape(len(frames), -1).any(axis=1)
                )
                if differ.size and len(wrong) < 20:
                    wrong.append([looks, rows, int(differ[0]), int(differ.size)])
            if rows > seen:
                seen = rows
                print(json.dumps({"extent": rows, "at": time.time()}), flush=True)
            if done:
                break
            time.sleep(0.002)
    per_row = math.prod(data.shape[1:rank]) if rank > 1 else 1
    print(json.dumps({"looks": looks, "rows": seen, "frames": seen * per_row, "wrong": wrong}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
