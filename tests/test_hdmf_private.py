"""hdmf's private names that h5live uses (all in h5live._write.hdmf_private), pinned to the hdmf
version they were read in: a release that moves one fails here, naming it."""

from __future__ import annotations

import hdmf
import pytest
from hdmf.backends.hdf5.h5_utils import HDF5IODataChunkIteratorQueue
from hdmf.backends.hdf5.h5tools import HDF5IO
from hdmf.common import get_manager

from h5live._write.hdmf_private import (
    HDMF_VERSION_ASSUMED,
    DeferringQueue,
    defer_chunk_iterators,
    io_file,
)


def test_the_installed_hdmf_is_the_version_the_private_names_were_read_in():
    assert HDMF_VERSION_ASSUMED == "6.2"
    assert hdmf.__version__.startswith(HDMF_VERSION_ASSUMED + "."), (
        f"hdmf {hdmf.__version__}: check h5live._write.hdmf_private against its HDF5IO, then "
        "update HDMF_VERSION_ASSUMED"
    )


def test_hdmf_6_2_hdf5io_keeps_its_chunk_iterator_queue_in_HDF5IO__dci_queue(tmp_path):
    with HDF5IO(str(tmp_path / "f.h5"), mode="w", manager=get_manager()) as io:
        assert isinstance(io._HDF5IO__dci_queue, HDF5IODataChunkIteratorQueue)
        queue = defer_chunk_iterators(io, lambda data: data == "live")
        assert io._HDF5IO__dci_queue is queue
        assert isinstance(queue, DeferringQueue)
        queue.append(dataset="a", data="live")
        queue.append(dataset="b", data="other")
        assert queue.deferred == [("a", "live")]
        assert list(queue) == [("b", "other")]


def test_an_hdf5io_without_the_queue_is_refused_with_the_versions(tmp_path):
    class Other:
        pass

    with pytest.raises(RuntimeError, match=r"assumes hdmf 6\.2") as raised:
        defer_chunk_iterators(Other(), lambda data: True)
    assert hdmf.__version__ in str(raised.value)
    assert "Fix:" in str(raised.value)


def test_hdmf_6_2_hdf5io_gives_its_h5py_file_as__file(tmp_path):
    import h5py

    with HDF5IO(str(tmp_path / "f.h5"), mode="w", manager=get_manager()) as io:
        assert isinstance(io._file, h5py.File)
        assert io_file(io) is io._file
    with pytest.raises(RuntimeError, match=r"assumes hdmf 6\.2"):
        io_file(object())
