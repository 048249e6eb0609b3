"""What a part does when its source fails: ask again, retry with back-off, go on with the next
source (keeping the bytes fetched when it has the same file), start over, or give up."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from sa1b_cli.aria2_control import read_control_file
from sa1b_cli.download.active import ActivePart, Step
from sa1b_cli.download.model import DownloadOptions, Outcome, PartOutcome, TextEnum
from sa1b_cli.events import Reporter
from sa1b_cli.probe import SIGNATURE_EXPIRED_TEXT
from sa1b_cli.sources import META, Source, forbidden_reason, probe_source
from sa1b_cli.store.paths import RootPaths

MAX_REDIRECT_RESTARTS = 5  # a mirror's expired redirect target, asked again this often before moving on
MAX_BACKOFF_SECONDS = 300.0
FRESH_LINKS_HINT = "get a fresh links file and run again, progress is kept"
NEXT_SOURCE_ERRORS = {  # aria2 error codes after which another source may still serve the part
    "3": "not found on the server (HTTP 404)",
    "24": "authorization failed (HTTP 401); a --mirror-header with a token?",
}
REFUSED_ERRORS = ("13", "11")  # aria2 refused the file itself


class Next(TextEnum):
    ASK_AGAIN = "ask again"  # the same source, at once (a mirror's signed redirect expired)
    NEXT_SOURCE = "next source"
    RESTART_FROM_ZERO = "restart from zero"  # the server ignored Range
    DISK_FULL = "disk full"
    GIVE_UP = "give up"
    RETRY = "retry"  # the same source after a back-off


@dataclass(frozen=True)
class Verdict:
    next: Next
    outcome: Outcome = Outcome.FAILED  # how the part ends if nothing is left to try
    reason: str = ""


def after_error(code: str, message: str, a: ActivePart, paths: RootPaths, name: str) -> Verdict:
    """What a part does after aria2 ended it with ``code`` and ``message`` (already redacted)."""
    if code == "22" and "403" in message:
        return _after_forbidden(a, name)
    text = message.strip() or f"aria2 error {code}"
    if code in NEXT_SOURCE_ERRORS:
        return Verdict(Next.NEXT_SOURCE, reason=NEXT_SOURCE_ERRORS[code])
    if code == "9":
        return Verdict(Next.DISK_FULL, reason="disk full; free space and run again, progress is kept")
    if code == "8" and not a.ignores_range:
        # aria2's code 8 is "cannot resume"; its message is often only the last one ("No URI available.").
        return Verdict(Next.RESTART_FROM_ZERO)
    if code == "8":
        return Verdict(Next.GIVE_UP, reason=f"cannot resume ({text}); the file on the server may have changed: "
                                            f"delete {paths.tar(name)} and its .aria2 to restart")
    if code in REFUSED_ERRORS:
        return Verdict(Next.GIVE_UP, reason=f"aria2 refused the file ({text})")
    return Verdict(Next.RETRY, reason=text)


def _after_forbidden(a: ActivePart, name: str) -> Verdict:
    """HTTP 403: a mirror's short-lived signed redirect target expired (ask it again), or the link did, or
    it was revoked: aria2 does not pass on the answer's body that tells which, so the link is asked once."""
    source = a.sources[0] if a.sources else None
    if source is not None and not source.is_meta and a.redirect_restarts < MAX_REDIRECT_RESTARTS:
        return Verdict(Next.ASK_AGAIN)
    if source is not None and not source.is_meta:
        return Verdict(Next.NEXT_SOURCE, Outcome.FAILED, "refused (HTTP 403), also when asked again")
    said = probe_source(Source(META, a.entry.url), name).message
    why = forbidden_reason(a.entry.expires_at, signature_expired=said == SIGNATURE_EXPIRED_TEXT)
    return Verdict(Next.NEXT_SOURCE, Outcome.EXPIRED, f"{why}; {FRESH_LINKS_HINT}")


def backoff_seconds(attempts: int, retry_wait: float) -> float:
    """Exponential back-off with jitter, so that parts failing together do not retry together."""
    return min(MAX_BACKOFF_SECONDS, retry_wait * (2 ** (attempts - 1))) * random.uniform(0.8, 1.2)


class Failover:
    """Carries out what a part does next; ``start`` hands it to aria2 again, ``finish`` ends it."""

    def __init__(self, paths: RootPaths, options: DownloadOptions, reporter: Reporter,
                 start: Callable[[str, ActivePart], None], finish: Callable[[str, PartOutcome], None]) -> None:
        self.paths = paths
        self.options = options
        self.reporter = reporter
        self.start = start
        self.finish = finish

    def retry(self, name: str, a: ActivePart, reason: str, code: str) -> None:
        """The same source again after a back-off; the next one once the retries are spent."""
        if a.attempts > self.options.retries:
            self.next_source(name, a, PartOutcome(name, Outcome.FAILED, f"gave up after {a.attempts} attempts: {reason}"))
            return
        delay = backoff_seconds(a.attempts, self.options.retry_wait)
        a.attempts += 1
        a.step, a.gid, a.not_before = Step.WAITING, "", time.time() + delay
        self.reporter.event("retry", f"{name}: {reason} (aria2 error {code or '?'}); retry {a.attempts - 1}/{self.options.retries} in {delay:.0f}s", level="warning")

    def next_source(self, name: str, a: ActivePart, outcome: PartOutcome) -> None:
        """The serving source cannot give this part: go on with the next one, keeping the bytes fetched
        when it has the same size; with none left the part ends with ``outcome``."""
        passed = a.sources.pop(0) if a.sources else None
        a.mixed_with, a.attempts, a.redirect_restarts, a.wrong_bytes = None, 1, 0, 0
        while a.sources:
            source = a.sources[0]
            probed = probe_source(source, name)
            if probed.state == "live" and probed.status != 401:
                break
            self.reporter.event("source", f"{name}: {source.label} cannot serve it either ({probed.message or probed.state})", level="warning")
            a.sources.pop(0)
        else:
            self.finish(name, outcome)
            return
        kept = self._keep_bytes_for(name, a, probed.size)
        was = passed.label if passed is not None else "its source"
        self.reporter.event("source", f"{name}: {was}: {outcome.reason}; continuing from {source.label}"
                                      + (f", keeping the {kept} bytes fetched" if kept else ""), level="warning", part=name)
        self.start(name, a)

    def after_wrong_bytes(self, name: str, a: ActivePart, outcome: PartOutcome) -> None:
        """Bytes that differ from the checksum list are never kept. Fetch them once more from the same
        source (a byte may have flipped on the way), alone if two sources were mixed, then move on."""
        self.discard_files(name, a)
        if a.mixed_with is not None:
            a.mixed_with = None
            self.reporter.event("source", f"{name}: {outcome.reason}; fetching it again from {a.serving} alone", level="warning", part=name)
            self.start(name, a)
        elif a.wrong_bytes == 0:
            a.wrong_bytes = 1
            self.reporter.event("source", f"{name}: {outcome.reason}; fetching it again", level="warning", part=name)
            self.start(name, a)
        else:
            self.next_source(name, a, outcome)

    def refetch(self, name: str, a: ActivePart, outcome: PartOutcome) -> None:
        """A damaged (or adopted, wrong-sized) file: download it again."""
        self.reporter.event("refetch", f"{name}: {outcome.reason}; downloading it again", level="warning")
        self.discard_files(name, a)
        a.step = Step.ACTIVE
        self.start(name, a)

    def discard_files(self, name: str, a: ActivePart) -> None:
        self.paths.tar(name).unlink(missing_ok=True)
        self.paths.control_file(name).unlink(missing_ok=True)
        a.completed, a.seen = 0, 0

    def _keep_bytes_for(self, name: str, a: ActivePart, size: int | None) -> int:
        """Keep a partial part for a source of the same size (the bytes fetched so far); discard it otherwise."""
        tar, control = self.paths.tar(name), self.paths.control_file(name)
        progress = read_control_file(control) if control.exists() else None
        had = progress.total_length if progress is not None else a.expected_size
        if size is not None and had is not None and size == had:
            a.expected_size = size
            return progress.completed_length if progress is not None else (tar.stat().st_size if tar.exists() else 0)
        tar.unlink(missing_ok=True)
        control.unlink(missing_ok=True)
        a.expected_size, a.total, a.completed = size, size, 0
        return 0
