"""bench_dranspose.py compares like with like: its polling baseline yields the events
H5LiveSource yields. (tests/test_benchmarks.py runs its ``--quick`` mode, as every benchmark's.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from h5live.dranspose import H5LiveSource

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_dranspose


def summary(events) -> list[tuple[int, str, bytes | None]]:
    """(event number, STINS htype, frame bytes) of each event of stream "det"."""
    rows = []
    for event in events:
        frames = event.streams["det"].frames
        header = json.loads(frames[0])
        rows.append((event.event_number, header["htype"], frames[1] if len(frames) > 1 else None))
    return rows


@pytest.mark.parametrize("presized", [False, True], ids=["growing", "presized"])
def test_the_polling_baseline_yields_what_h5live_yields(simulated_writer, monkeypatch, presized):
    writer = simulated_writer(scan_shape=(40,), frame_shape=(6, 5), n_keys=3, presized=presized)
    writer.append(25)
    writer.flush_keys()
    writer.finish()  # an aborted scan: 25 of 40 frames
    writer.close()
    monkeypatch.setenv("H5LIVE_DRANSPOSE_CONFIG", json.dumps({"streams": {"det": writer.path}}))
    ours = summary(H5LiveSource().events())
    theirs = summary(bench_dranspose.PollingSource().events())
    assert [row[:2] for row in ours] == [
        (0, "header"),
        *[(i + 1, "image") for i in range(25)],
        (26, "series_end"),
    ]
    assert theirs == ours
