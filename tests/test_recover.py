"""Clearing the writer flags a killed SWMR writer leaves (what h5clear -s -i does)."""

from __future__ import annotations

import struct

import h5py
import numpy as np
import pytest

from h5live._source.recover import clear_writer_flags, lookup3, missing_bytes, writer_flags


def superblock(path):
    with open(path, "rb") as raw:
        return raw.read(48)


def test_lookup3_is_hdf5s_superblock_checksum(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w", libver="latest") as f:
        f.create_dataset("d", data=np.arange(10))
    head = superblock(tmp_path / "a.h5")
    assert head[8] == 3  # superblock version 3: 8-byte offsets, checksum after 44 bytes
    assert lookup3(head[:44]) == struct.unpack_from("<I", head, 44)[0]


def test_flags_of_a_file_left_open_are_cleared_and_it_opens_for_writing(tmp_path):
    path = tmp_path / "left.h5"
    f = h5py.File(path, "w", libver="latest")
    f.create_dataset("d", data=np.arange(10), maxshape=(None,), chunks=(5,))
    f.swmr_mode = True
    f.flush()
    with open(path, "rb") as raw:
        copy = raw.read()  # the file as a killed writer leaves it: flags set
    f.close()
    (tmp_path / "killed.h5").write_bytes(copy)
    assert writer_flags(tmp_path / "killed.h5") != 0
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(tmp_path / "killed.h5", "a", libver="latest")
    assert clear_writer_flags(tmp_path / "killed.h5")
    assert writer_flags(tmp_path / "killed.h5") == 0
    with h5py.File(tmp_path / "killed.h5", "a", libver="latest") as g:
        assert g["d"][...].tolist() == list(range(10))
    assert not clear_writer_flags(tmp_path / "killed.h5")  # nothing to do any more


def test_old_superblocks_and_other_files_are_left_alone(tmp_path):
    with h5py.File(tmp_path / "old.h5", "w") as f:  # libver earliest: superblock version 0
        f.create_dataset("d", data=[1])
    before = (tmp_path / "old.h5").read_bytes()
    assert writer_flags(tmp_path / "old.h5") == 0
    assert not clear_writer_flags(tmp_path / "old.h5")
    assert (tmp_path / "old.h5").read_bytes() == before
    (tmp_path / "text.h5").write_text("not HDF5")
    with pytest.raises(ValueError, match="does not start with an HDF5 superblock"):
        clear_writer_flags(tmp_path / "text.h5")


def test_missing_bytes_of_a_closed_file_cut_short(tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["data"] = np.zeros(100_000, dtype="uint8")
    assert missing_bytes(path) == 0
    size = path.stat().st_size
    with open(path, "r+b") as raw:
        raw.truncate(size - 1000)
    assert missing_bytes(path) == 1000


def test_missing_bytes_cannot_judge_a_file_a_writer_has_open(tmp_path):
    path = tmp_path / "live.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["data"] = np.zeros(100_000, dtype="uint8")
        f.swmr_mode = True
        f.flush()
        assert writer_flags(path) != 0
        assert missing_bytes(path) == 0
