"""Public test helpers: a simulated SWMR writer (one file, or a multi-file acquisition with a
master file), a fake clock.

Hypothesis strategies live in :mod:`h5live.testing.strategies` (they need ``hypothesis``).
"""

from __future__ import annotations

from h5live.testing._clock import FakeClock
from h5live.testing._multifile import AcquisitionConfig, MultiFileAcquisition
from h5live.testing._process import ProcessGroup, WriterProcess
from h5live.testing._waiting import StallError, wait_for_progress
from h5live.testing._writer import CRASH_EXIT_CODE, SimulatedWriter, WriterConfig, frame_values

__all__ = [
    "CRASH_EXIT_CODE",
    "AcquisitionConfig",
    "FakeClock",
    "MultiFileAcquisition",
    "ProcessGroup",
    "SimulatedWriter",
    "StallError",
    "WriterConfig",
    "WriterProcess",
    "frame_values",
    "wait_for_progress",
]
