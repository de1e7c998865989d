"""Stand-in for the ``tests/utils.py`` that swmr_tools 0.9's tests import and its sdist lacks.

Written for h5live's peer run (``peers/run_peers.py``): ``make_mock`` gives what those tests use
of a key dataset, as ``unittest.mock`` objects (their helpers were mocks too, so attributes
such as ``dtype``, ``chunks`` or ``file`` are mocks, not numpy or h5py values):

- ``dataset``: the values, a float64 array of zeros that a test sets or replaces;
- ``shape``: the shape of ``dataset`` as it is now (a test may grow it);
- ``maxshape``: as given, else the shape at creation (a list, as the tests compare it);
- ``size``: the element count at creation (their finished-flag test reads it);
- ``refresh()``: does nothing; ``mock[selection]`` reads ``dataset``.
"""

from __future__ import annotations

from unittest import mock

import numpy as np


class _KeyMock(mock.Mock):
    """A Mock whose ``shape`` follows the array in its ``dataset`` attribute."""

    @property
    def shape(self):
        return list(self.dataset.shape)

    def _get_child_mock(self, **kwargs):  # attributes are plain mocks
        return mock.Mock(**kwargs)


def make_mock(shape=None, maxshape=None):
    """A mock key dataset of ``shape`` (default ``[5, 10, 1, 1]``: a 5 x 10 scan), all 0."""
    shape = [5, 10, 1, 1] if shape is None else shape
    dataset = _KeyMock()
    dataset.dataset = np.zeros(shape)
    dataset.maxshape = list(shape) if maxshape is None else maxshape
    dataset.size = dataset.dataset.size
    dataset.refresh = mock.Mock(return_value=None)
    dataset.__getitem__ = mock.Mock(side_effect=lambda selection: dataset.dataset[selection])
    return dataset
