"""pytest fixtures for testing code that follows live HDF5 files.

Enable with ``pytest_plugins = ["h5live.testing.pytest_plugin"]`` in a ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from h5live.testing._clock import FakeClock
from h5live.testing._process import ProcessGroup, WriterProcess
from h5live.testing._writer import SimulatedWriter


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`FakeClock` at time 0; pass ``clock=fake_clock, sleep=fake_clock.sleep``."""
    return FakeClock()


@pytest.fixture
def simulated_writer(tmp_path: Path) -> Iterator[Callable[..., SimulatedWriter]]:
    """Factory of in-process :class:`SimulatedWriter` s in ``tmp_path``, closed at teardown."""
    writers: list[SimulatedWriter] = []

    def make(name: str = "scan.h5", **config: Any) -> SimulatedWriter:
        writer = SimulatedWriter(tmp_path / name, **config)
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.close()


@pytest.fixture
def writer_process(tmp_path: Path) -> Iterator[Callable[..., WriterProcess]]:
    """Factory that starts :class:`WriterProcess` es in ``tmp_path``; kills them at teardown.

    The returned process is started (its file is in SWMR mode) unless ``start=False``.
    """
    processes: list[WriterProcess] = []

    def start(name: str = "live.h5", *, start: bool = True, **config: Any) -> WriterProcess:
        process = WriterProcess(tmp_path / name, **config)
        processes.append(process)
        return process.start() if start else process

    yield start
    for process in processes:
        process.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Any]]:
    """Starts processes the way :class:`subprocess.Popen` does and ends them at teardown.

    ``spawn(command, **popen_kwargs)`` returns the ``Popen``. Whatever the test does, pass or
    fail, each process still running at teardown is killed and reaped and its pipes closed
    (:class:`ProcessGroup`), so that no process outlives its test.
    """
    with ProcessGroup() as group:
        yield group.start
