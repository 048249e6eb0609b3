"""A fresh links file saved over the old one while a run works: noticed by its modification time,
read once it parses whole."""

from __future__ import annotations

from pathlib import Path

from sa1b_cli.events import Reporter
from sa1b_cli.links import LinksFile, parse_links


class LinksWatcher:
    """Watches one links file; :meth:`fresh` gives it again each time it changed and reads whole."""

    def __init__(self, path: Path, reporter: Reporter, enabled: bool = True) -> None:
        self.path = path
        self.reporter = reporter
        self.enabled = enabled
        self.mtime = _mtime(path)

    def fresh(self) -> LinksFile | None:
        """The links file, when it changed since it was last read and can be read whole."""
        if not self.enabled:
            return None
        mtime = _mtime(self.path)
        if mtime is None or mtime == self.mtime:
            return None
        self.mtime = mtime
        try:
            return parse_links(self.path)
        except Exception as exc:  # noqa: BLE001 - a half-written file: keep the old links
            self.reporter.event("links_reload", f"links file changed but cannot be read yet: {exc}", level="warning")
            return None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
