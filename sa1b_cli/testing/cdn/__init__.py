"""A loopback CDN that behaves like Meta's signed-URL CDN, with fault injection.

Tests, ``sa1b demo`` and the benchmarks point the real downloader (aria2c) at
this server instead of ``scontent.xx.fbcdn.net``. It only binds loopback.

URLs look like the real ones::

    http://127.0.0.1:PORT/m1/v/t6/<token>.tar?_nc_gid&ccb=10-5&oh=<sig>&oe=<HEX expiry>&_nc_sid=ba4296

- ``token`` is opaque (derived from the secret and the name, never the name
  itself) and stays the same for a file across re-signed links, as on Meta's CDN.
- ``oh`` = ``00_`` + base64url HMAC-SHA256(secret, token, oe, revocation epoch).
- past ``oe`` (or after :meth:`FakeCDN.expire_all`) -> 403 ``URL signature expired``;
  bad or missing signature, or a link revoked by :meth:`FakeCDN.revoke` -> 403
  ``Bad URL hash``; unknown token -> 404.

GET and HEAD, ``Content-Length``, ``Accept-Ranges: bytes``, one ``Range``
(``a-b``, ``a-``, ``-n``) -> 206 + ``Content-Range``, 416 if unsatisfiable;
multi-range requests get the full 200 body. Bodies go out with ``os.sendfile``
unless a fault needs to touch the bytes. HTTP/1.1 keep-alive.

Faults (:class:`Faults`) are set per file name or as a global default with
:meth:`FakeCDN.set_faults`, at any time, thread-safely. Every request is logged
(:class:`RequestRecord`); :meth:`FakeCDN.bytes_sent` tells how many body bytes
went out (live, also for requests still running or cut). A byte is counted
before the system call that hands it to the kernel (and the count corrected by
what the call did not take), so once a client holds a byte the count includes
it: a test that reads the count after its own request ended never races the
server. :meth:`FakeCDN.wait_idle` waits for the server's own "request finished"
(``RequestRecord.finished``) where a test needs the server side to be done too.

Separate process (benchmarks, multi-process tests)::

    python -m sa1b_cli.testing.cdn --dir DIR --links-out FILE [--expires-in S] [--port 0]

prints the port on stdout, then serves until SIGTERM/SIGINT. The links file is
written before the port is printed. A tiny JSON control API on the same port
(``/__cdn/stats``, ``/__cdn/log``, ``/__cdn/links``, ``POST /__cdn/faults``,
``/__cdn/revoke``, ``/__cdn/expire_all``, ``/__cdn/reset_log``) lets another
process drive it; :class:`CDNProcess` wraps all of that.

Modules: :mod:`.server` (:class:`FakeCDN`), :mod:`.responses` (headers, bodies, byte
accounting), :mod:`.faults`, :mod:`.protocol` (signing, ``Range``), :mod:`.control` (the
JSON API) and :mod:`.process` (:class:`CDNProcess` and the command line).
"""

from sa1b_cli.testing.cdn.faults import Faults
from sa1b_cli.testing.cdn.process import CDNProcess
from sa1b_cli.testing.cdn.protocol import DEFAULT_TTL
from sa1b_cli.testing.cdn.responses import RequestRecord
from sa1b_cli.testing.cdn.server import BAD_HASH_BODY, EXPIRED_BODY, FakeCDN

__all__ = ["CDNProcess", "FakeCDN", "Faults", "RequestRecord", "DEFAULT_TTL", "EXPIRED_BODY", "BAD_HASH_BODY"]
