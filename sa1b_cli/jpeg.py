"""Structural JPEG check without decoding: SOI first, EOI last, a readable frame header.

Decoding every image (PIL ``load``) runs at a few hundred files a second; the
damage a download or a copy does (truncation, zero-filled tails, garbage at the
start) shows in the markers. So a deep verify reads only the head of the file up
to the first scan and its last two bytes: start of image (FFD8), the segments up to
start of scan with a frame header (SOFn) giving the size, and end of image (FFD9).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
HEAD_BYTES = 64 * 1024  # headers (EXIF, ICC) almost always fit; longer ones are read on
# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), which share the range.
FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
START_OF_SCAN = 0xDA
# Markers without a length field: TEM, RST0..RST7 (and SOI/EOI, handled apart).
STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})


class JpegError(ValueError):
    """The file is not a structurally whole JPEG; the message says what is wrong."""


@dataclass(frozen=True)
class JpegInfo:
    """What a structurally whole JPEG declares."""

    width: int
    height: int
    size: int  # bytes on disk


def check_jpeg(path: Path | str) -> JpegInfo:
    """Size and dimensions of a whole JPEG; raises JpegError (or OSError) otherwise."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size < 4:
            raise JpegError(f"only {size} bytes: too short for a JPEG")
        head = os.read(fd, HEAD_BYTES)
        if head[:2] != SOI:
            raise JpegError("does not start with the JPEG start-of-image marker (FFD8)")
        if (head if size <= len(head) else os.pread(fd, 2, size - 2))[-2:] != EOI:
            raise JpegError("does not end with the JPEG end-of-image marker (FFD9): truncated or padded")
        width, height = _frame_size(head, fd, size)
        return JpegInfo(width=width, height=height, size=size)
    finally:
        os.close(fd)


def _frame_size(head: bytes, fd: int, size: int) -> tuple[int, int]:
    """Walk the marker segments from after SOI to the first SOS; return the SOFn width and height.

    Works on ``head`` (the file's first bytes); reads further only for headers longer than that.
    """
    buffer, base = head, 0  # buffer holds the file's bytes from offset ``base``
    offset = 2
    frame: tuple[int, int] | None = None
    while offset < size - 2:
        if offset + 9 > base + len(buffer):  # a marker, its length and a frame header's first fields
            buffer, base = os.pread(fd, HEAD_BYTES, offset), offset
            if len(buffer) < 4:
                raise JpegError(f"header runs past the end of the file at byte {offset}")
        at = offset - base
        marker = _marker_at(buffer, at, offset)
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        if marker in STANDALONE_MARKERS:
            offset += 2
            continue
        length = (buffer[at + 2] << 8) | buffer[at + 3]
        if length < 2:
            raise JpegError(f"segment FF{marker:02X} at byte {offset} has an impossible length {length}")
        if marker in FRAME_MARKERS:
            frame = _frame_header(buffer, at, length, offset)
        elif marker == START_OF_SCAN:
            if frame is None:
                raise JpegError(f"image data starts at byte {offset} before any frame header (SOFn)")
            return frame
        offset += 2 + length
    raise JpegError("no image data (start-of-scan marker) before the end of the file")


def _marker_at(buffer: bytes, at: int, offset: int) -> int:
    """The marker byte after the 0xFF at ``buffer[at]`` (file offset ``offset``); a second SOI or an
    EOI before the first scan is damage."""
    if buffer[at] != 0xFF:
        raise JpegError(f"expected a marker at byte {offset}, found 0x{buffer[at]:02X}")
    marker = buffer[at + 1]
    if marker in (0xD8, 0xD9):
        raise JpegError(f"unexpected {'start' if marker == 0xD8 else 'end'}-of-image marker at byte {offset}")
    return marker


def _frame_header(buffer: bytes, at: int, length: int, offset: int) -> tuple[int, int]:
    """(width, height) of the SOFn segment at ``buffer[at]``."""
    if length < 7 or len(buffer) < at + 9:
        raise JpegError(f"frame header at byte {offset} is cut short")
    height = (buffer[at + 5] << 8) | buffer[at + 6]
    width = (buffer[at + 7] << 8) | buffer[at + 8]
    if width == 0 or height == 0:
        raise JpegError(f"frame header at byte {offset} declares an empty image {width}x{height}")
    return width, height
