"""Public test helpers: a simulated SWMR writer, a fake clock.

Hypothesis strategies live in :mod:`h5live.testing.strategies` (they need ``hypothesis``).
"""

from __future__ import annotations

from h5live.testing._clock import FakeClock
from h5live.testing._process import WriterProcess
from h5live.testing._writer import CRASH_EXIT_CODE, SimulatedWriter, WriterConfig, frame_values

__all__ = [
    "CRASH_EXIT_CODE",
    "FakeClock",
    "SimulatedWriter",
    "WriterConfig",
    "WriterProcess",
    "frame_values",
]
