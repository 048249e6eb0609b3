"""A checked part's member list: every file's name and size, in tar order, kept beside its download receipt.

The download check walks every tar header anyway (so does the extraction that checks a part while
unpacking it); keeping what it saw costs nothing then. ``sa1b export`` plans every shard from these
lists before it inflates a byte, so each member is written straight to its place in its shard
rather than spilled first (Meta's parts hold their members in random order; shards want them
sorted). About 0.5 MB a part, in ``ROOT/.sa1b/members/``. A list is bound to the bytes it
describes by the tar's size and sha256: one that does not match the part's receipt is not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from sa1b_cli.store.atomic import atomic_write_text
from sa1b_cli.store.paths import RootPaths
from sa1b_cli.store.receipts import DownloadReceipt

MEMBER_LIST_VERSION = 1


@dataclass(frozen=True)
class MemberList:
    """The regular files of one checked part, as (name, size) in the order the tar holds them."""

    part: str
    size: int  # of the tar
    sha256: str  # of the tar
    members: tuple[tuple[str, int], ...]


def write_member_list(paths: RootPaths, part: str, size: int, sha256: str, members: list[tuple[str, int]]) -> None:
    """Keep a part's member list (atomically). A failure to write it (a full disk) is not the check's:
    the export then reads the part the way it does without one."""
    data = {"version": MEMBER_LIST_VERSION, "part": part, "size": size, "sha256": sha256,
            "members": [[name, nbytes] for name, nbytes in members]}
    try:
        atomic_write_text(paths.member_list(part), orjson.dumps(data).decode())
    except OSError:
        paths.member_list(part).unlink(missing_ok=True)


def read_member_list(paths: RootPaths, receipt: DownloadReceipt) -> MemberList | None:
    """The part's member list when it describes the bytes ``receipt`` vouches for; None when there is
    none (a part checked by an older sa1b), it is unreadable, or it was made of other bytes."""
    try:
        data = orjson.loads(paths.member_list(receipt.part).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if (not isinstance(data, dict) or data.get("version") != MEMBER_LIST_VERSION or data.get("part") != receipt.part
            or receipt.sha256 is None or data.get("sha256") != receipt.sha256 or data.get("size") != receipt.size):
        return None
    try:
        members = tuple((str(name), int(nbytes)) for name, nbytes in data["members"])
    except (KeyError, TypeError, ValueError):
        return None
    return MemberList(receipt.part, receipt.size, receipt.sha256, members)
