"""Adapter for hdmf's own GenericDataChunkIterator tests, copied into their run by
``peers/run_peers.py``.

hdmf's tests build their iterators from numpy arrays (``TestNumpyArrayDataChunkIterator``,
``PickleableNumpyArrayDataChunkIterator``, ``NumpyArrayGenericDataChunkIterator``). Here each
is replaced by a :class:`h5live.LiveDataChunkIterator` over a *finished* HDF5 file holding the
same array (in h5live's layout: the array at ``/entry/data/data``, its first axis the scan,
keys of that length all set, the finished flag set), so every test of the GDCI contract runs
against h5live's iterator with the test's own options and expectations.
"""

from __future__ import annotations

import itertools
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from h5live import LiveDataChunkIterator

_FILES = Path(tempfile.mkdtemp(prefix="h5live-hdmf-peer-"))
_COUNT = itertools.count()


def finished_file(array: np.ndarray) -> Path:
    """A new HDF5 file of ``array`` whose writer has finished (keys and flag set)."""
    path = _FILES / f"array{next(_COUNT)}.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/entry/data/data", data=array)
        scan = (array.shape[0],)
        f.create_dataset("/entry/keys/done", data=np.ones(scan, dtype="i4"), chunks=True)
        f.create_dataset("/entry/finished", data=[1], chunks=True, maxshape=(None,))
    return path


class LiveArrayIterator(LiveDataChunkIterator):
    """hdmf's numpy-backed test iterator, as a LiveDataChunkIterator over a finished file."""

    def __init__(self, array: np.ndarray, **kwargs: Any) -> None:
        self.array = array
        super().__init__(finished_file(array), "/entry/data/data", **kwargs)


class PickleableLiveArrayIterator(LiveArrayIterator):
    """``PickleableNumpyArrayDataChunkIterator``: pickled through LiveDataChunkIterator's own
    ``_to_dict`` recipe (the file, the options), unpickled as this class."""

    def _to_dict(self) -> dict[str, Any]:
        return {"array": pickle.dumps(self.array), "recipe": super()._to_dict()}

    @staticmethod
    def _from_dict(dictionary: dict[str, Any]) -> PickleableLiveArrayIterator:
        live = LiveDataChunkIterator._from_dict(dictionary["recipe"])
        live.__class__ = PickleableLiveArrayIterator
        live.array = pickle.loads(dictionary["array"])
        return live


@pytest.fixture(autouse=True)
def _live_iterators(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's module sees LiveArrayIterator where it defines a numpy-backed iterator."""
    module = request.module
    tests = getattr(module, "GenericDataChunkIteratorTests", None)
    if tests is not None:
        monkeypatch.setattr(tests, "TestNumpyArrayDataChunkIterator", LiveArrayIterator)
        monkeypatch.setattr(
            tests, "TestNumpyArrayDataChunkIteratorWithNumpyDtypeShape", LiveArrayIterator
        )
        monkeypatch.setattr(
            module, "PickleableNumpyArrayDataChunkIterator", PickleableLiveArrayIterator
        )
    if hasattr(module, "NumpyArrayGenericDataChunkIterator"):
        monkeypatch.setattr(module, "NumpyArrayGenericDataChunkIterator", LiveArrayIterator)


def pytest_sessionfinish(session: pytest.Session) -> None:
    shutil.rmtree(_FILES, ignore_errors=True)
