"""What the fake CDN's URLs and headers look like: signed paths like Meta's and one ``Range``."""

from __future__ import annotations

import base64
import hashlib
import hmac

DEFAULT_TTL = 20 * 86400.0  #: default link lifetime (Meta: 19-30 days)
PATH_PREFIX = "/m1/v/t6/"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Signer:
    """The HMACs behind a link: its opaque path token and its ``oh`` signature."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def token(self, name: str) -> str:
        """The opaque, stable URL path token for ``name``."""
        digest = hmac.new(self._secret, b"token\0" + name.encode(), hashlib.sha512).digest()
        return "An" + _b64(digest)[:80]

    def sign(self, token: str, oe: int, epoch: int) -> str:
        """``oh``: binds the token to its expiry and to the file's revocation epoch."""
        msg = f"{token}\0{oe:X}\0{epoch}".encode()
        return "00_" + _b64(hmac.new(self._secret, msg, hashlib.sha256).digest())


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=`` range -> (start, end inclusive); ``"unsatisfiable"``; or
    None (no/invalid/multi-range header: serve the whole file)."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first.strip() == "":
            n = int(last)
            if n <= 0 or size == 0:
                return "unsatisfiable"
            return max(0, size - n), size - 1
        a = int(first)
        b = int(last) if last.strip() else size - 1
    except ValueError:
        return None
    if a < 0 or (last.strip() and b < a):
        return None
    if a >= size:
        return "unsatisfiable"
    return a, min(b, size - 1)
