"""aria2's control file (``<part>.aria2``): how much of a part aria2 has saved.

``status`` shows partial parts from it; ``download`` refuses to hand aria2 a torn one
(a full disk can leave one behind, and aria2 then fails the part on every run).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

MAX_INFO_HASH_LENGTH = 1024
MAX_CONTROL_FILE_BYTES = 64 << 20


@dataclass(frozen=True)
class ControlFileInfo:
    """The progress aria2 saved in ``<file>.aria2`` (see aria2's "Control File" technical note)."""

    version: int
    piece_length: int
    total_length: int
    pieces_done: int
    piece_count: int
    completed_length: int  # bytes of the pieces marked done
    bitfield: bytes = b""  # one bit per piece, most significant bit first

    def missing_ranges(self) -> list[tuple[int, int]]:
        """(start, end) byte ranges of the pieces not marked done, adjacent ones merged."""
        ranges: list[tuple[int, int]] = []
        for index in range(self.piece_count):
            if self.bitfield[index >> 3] & (0x80 >> (index & 7)):
                continue
            start = index * self.piece_length
            end = min(self.total_length, start + self.piece_length)
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], end)
            else:
                ranges.append((start, end))
        return ranges


def read_control_file(path: Path) -> ControlFileInfo | None:
    """Parse an aria2 control file; None when it is missing, torn or not one.

    Layout: VER(2) EXT(4) INFO_HASH_LENGTH(4) INFO_HASH PIECE_LENGTH(4)
    TOTAL_LENGTH(8) UPLOAD_LENGTH(8) BITFIELD_LENGTH(4) BITFIELD ... Version 1
    is big-endian, version 0 in the writing host's byte order. The bitfield has
    one bit per piece, most significant bit first.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONTROL_FILE_BYTES)
    except OSError:
        return None
    parsed = _parse(data)
    if parsed is None:
        return None
    version, piece_length, total_length, bitfield = parsed
    piece_count = -(-total_length // piece_length)
    if len(bitfield) != -(-piece_count // 8):
        return None
    pieces_done = 0
    completed = 0
    for index in range(piece_count):
        if bitfield[index >> 3] & (0x80 >> (index & 7)):
            pieces_done += 1
            completed += min(piece_length, total_length - index * piece_length)
    return ControlFileInfo(version, piece_length, total_length, pieces_done, piece_count, completed, bytes(bitfield))


def _parse(data: bytes) -> tuple[int, int, int, bytes] | None:
    """Version, piece length, total length and bitfield of a control file; None when torn or not one."""
    if len(data) < 2:
        return None
    version = int.from_bytes(data[:2], "big")
    if version not in (0, 1):
        return None
    order = ">" if version == 1 else "="
    try:
        (hash_length,) = struct.unpack_from(order + "I", data, 6)
        if hash_length > MAX_INFO_HASH_LENGTH:
            return None
        offset = 10 + hash_length
        piece_length, total_length, _upload, bitfield_length = struct.unpack_from(order + "IQQI", data, offset)
    except struct.error:
        return None
    offset += struct.calcsize(order + "IQQI")
    bitfield = data[offset : offset + bitfield_length]
    if piece_length == 0 or len(bitfield) != bitfield_length:
        return None
    return version, piece_length, total_length, bitfield
