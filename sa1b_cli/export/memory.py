"""Kept members held in memory instead of a spill file, within one budget for the whole run.

A part whose kept members fit what is left of the budget never touches the disk before its shard:
no spill written, synced, mapped and deleted, and the shard is written straight from these bytes
(one ``writev`` per sample) and hashed from them. The bytes sit at the offsets the spill file
would have given them, so a part's index is the same whichever way it was read. A part that
outgrows the budget moves what it holds into its spill and goes on there; real SA-1B parts (about
11 GB) always spill, subsets and small parts do not.
"""

from __future__ import annotations

import os
import threading

MEMORY_BUDGET = 256 << 20  # bytes of kept members all parts of a run may hold at once


class MemoryBudget:
    """The bytes the run's readers may still hold; taken by readers, given back once a part is written."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.guard = threading.Lock()

    def take(self, nbytes: int) -> bool:
        with self.guard:
            if nbytes > self.left:
                return False
            self.left -= nbytes
            return True

    def give_back(self, nbytes: int) -> None:
        with self.guard:
            self.left += nbytes


class HeldMembers:
    """One part's kept members in memory, each under its offset in the spill it replaces."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.members: dict[int, bytes] = {}
        self.size = 0

    def keep(self, data: bytes) -> bool:
        """Hold ``data`` at the next offset; False (nothing held) when the budget has no room for it."""
        if not self.budget.take(len(data)):
            return False
        self.members[self.size] = data
        self.size += len(data)
        return True

    def member(self, offset: int, size: int) -> bytes:
        data = self.members.get(offset)
        if data is None or len(data) != size:
            raise OSError(f"no member of {size} bytes held at offset {offset}")
        return data

    def write_to(self, fd: int) -> None:
        """Everything held, in offset order, written to ``fd`` (a spill taking over)."""
        for data in self.members.values():
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]

    def release(self) -> None:
        """Let go of the bytes (a hash still reading one keeps it alive) and give their room back."""
        self.members.clear()
        self.budget.give_back(self.size)
        self.size = 0
