"""Reopening for writing a file whose SWMR writer was killed (what ``h5clear -s -i`` does).

Contract
--------
- A writer killed while it had a file open leaves the superblock saying so (its "file
  consistency flags": write access and SWMR write access) and, in SWMR mode, an end-of-file
  address older than the data it wrote. HDF5 then refuses to open the file for writing ("file is
  already open for write") and, once the flags are cleared, to read past that address.
- :func:`clear_writer_flags` clears the flags and raises the end-of-file address to the file's
  size plus 1 MiB (as ``h5clear -s -i``; the file grows to match), recomputing the superblock
  checksum (Jenkins' lookup3, as HDF5 does). The data the writer had flushed stay readable;
  measured on files of SIGKILLed SWMR writers.
- It only touches superblocks of version 2 and 3 (the only ones with these flags: every file
  written with ``libver="latest"`` or in SWMR mode), and only when a flag is set. The caller must
  know that the writer is gone: a live SWMR writer holds no lock that could tell.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

__all__ = ["clear_writer_flags", "lookup3", "missing_bytes", "writer_flags"]

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
EOF_INCREMENT = 1 << 20  # h5clear -i's default
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``: HDF5's metadata checksum."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    words = data + bytes(-length % 12 if length else 0)
    i = 0
    while length > 12:
        x, y, z = struct.unpack_from("<3I", words, i)
        a, b, c = (a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK
        a = (a - c) & _MASK ^ _rot(c, 4)
        c = (c + b) & _MASK
        b = (b - a) & _MASK ^ _rot(a, 6)
        a = (a + c) & _MASK
        c = (c - b) & _MASK ^ _rot(b, 8)
        b = (b + a) & _MASK
        a = (a - c) & _MASK ^ _rot(c, 16)
        c = (c + b) & _MASK
        b = (b - a) & _MASK ^ _rot(a, 19)
        a = (a + c) & _MASK
        c = (c - b) & _MASK ^ _rot(b, 4)
        b = (b + a) & _MASK
        length -= 12
        i += 12
    if length == 0:
        return int(c)
    x, y, z = struct.unpack_from("<3I", words, i)
    a, b, c = (a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK
    c = (c ^ b) - _rot(b, 14) & _MASK
    a = (a ^ c) - _rot(c, 11) & _MASK
    b = (b ^ a) - _rot(a, 25) & _MASK
    c = (c ^ b) - _rot(b, 16) & _MASK
    a = (a ^ c) - _rot(c, 4) & _MASK
    b = (b ^ a) - _rot(a, 14) & _MASK
    c = (c ^ b) - _rot(b, 24) & _MASK
    return int(c)


def _superblock(head: bytes, path: Path) -> tuple[int, int] | None:
    """(size of offsets, length before the checksum) of a v2/v3 superblock, else None."""
    if head[:8] != _SIGNATURE:
        raise ValueError(
            f"{os.fspath(path)!r} does not start with an HDF5 superblock (a user block before "
            "it is not supported here). Fix: pass an HDF5 file."
        )
    if head[8] < 2:
        return None
    size_of_offsets = head[9]
    return size_of_offsets, 12 + 4 * size_of_offsets


def writer_flags(path: str | os.PathLike[str]) -> int:
    """The superblock's file consistency flags (0: no writer had it open when it was read)."""
    with open(path, "rb") as raw:
        head = raw.read(128)
    if _superblock(head, Path(path)) is None:
        return 0
    return head[11]


def missing_bytes(path: str | os.PathLike[str]) -> int:
    """How many bytes a closed file lacks: the end-of-file address its superblock records past
    the file's size (0 for a whole file, a v0/v1 superblock, or a file a writer has open).

    A SWMR reader does not check this (a live file grows), and HDF5 retries a read past the end
    without end, so a truncated source would hang its reader: only a file no writer has open
    (its writer flags clear; HDF5 sets its size to that address when it closes) can be judged.
    """
    with open(path, "rb") as raw:
        head = raw.read(128)
        size = os.fstat(raw.fileno()).st_size
    try:
        layout = _superblock(head, Path(path))
    except ValueError:
        return 0
    if layout is None or head[11] != 0:
        return 0
    size_of_offsets = layout[0]
    eof_at = 12 + 2 * size_of_offsets  # base address, extension address, end of file
    end = int.from_bytes(head[eof_at : eof_at + size_of_offsets], "little")
    return max(end - size, 0)


def clear_writer_flags(path: str | os.PathLike[str]) -> bool:
    """Make a file whose writer was killed openable for writing again; True if it was needed.

    Raises
    ------
    ValueError
        Not an HDF5 file, or its superblock checksum does not match (not a superblock this
        function understands: nothing is changed).
    """
    with open(path, "r+b") as raw:
        head = raw.read(128)
        layout = _superblock(head, Path(path))
        if layout is None or head[11] == 0:
            return False
        size_of_offsets, length = layout
        (stored,) = struct.unpack_from("<I", head, length)
        if lookup3(head[:length]) != stored:
            raise ValueError(
                f"the superblock checksum of {os.fspath(path)!r} does not match; its writer "
                "flags were left alone. Fix: check the file with h5clear or h5check."
            )
        block = bytearray(head[:length])
        block[11] = 0
        eof_at = 12 + 2 * size_of_offsets  # base address, extension address, end of file
        end = int.from_bytes(block[eof_at : eof_at + size_of_offsets], "little")
        # as h5clear -i: past the file's end (grown to match), so that space the writer had
        # allocated but not yet written is not handed out twice
        size = os.fstat(raw.fileno()).st_size + EOF_INCREMENT
        os.ftruncate(raw.fileno(), size)
        block[eof_at : eof_at + size_of_offsets] = max(end, size).to_bytes(
            size_of_offsets, "little"
        )
        raw.seek(0)
        raw.write(bytes(block) + struct.pack("<I", lookup3(bytes(block))))
        raw.flush()
        os.fsync(raw.fileno())
    return True
