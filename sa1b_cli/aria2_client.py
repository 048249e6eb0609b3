"""The JSON-RPC side of the private aria2c: aria2p's client and aria2's notifications.

Kept apart from :mod:`sa1b_cli.aria2_daemon` (the process) because importing aria2p
(with requests, loguru and websocket-client) takes ~0.15-0.25 s: a download run starts
aria2c with its first parts first and imports this module while they download.
Transport and protocol failures leave here as one typed error, :class:`Aria2RpcError`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import aria2p
import requests
import websocket  # websocket-client: aria2p's own dependency for aria2's notifications

from sa1b_cli.errors import Aria2RpcError

PART_ENDED = {aria2p.NOTIFICATION_COMPLETE, aria2p.NOTIFICATION_ERROR, aria2p.NOTIFICATION_STOP}


class LoopbackClient(aria2p.Client):
    """aria2p's client over one keep-alive session that ignores proxy settings.

    aria2p posts each call with a fresh ``requests.post``, which honours ``http_proxy``
    (loopback RPC then fails with ProxyError) and opens a connection per call.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session = requests.Session()
        self._session.trust_env = False

    def post(self, payload: str) -> dict:
        try:
            return self._session.post(self.server, data=payload, timeout=self.timeout).json()
        except (requests.RequestException, ValueError) as exc:
            raise Aria2RpcError(f"aria2c RPC failed: {exc}") from exc

    @staticmethod
    def res_or_raise(response: dict) -> Any:
        try:
            return aria2p.Client.res_or_raise(response)
        except aria2p.ClientException as exc:
            raise Aria2RpcError(f"aria2c refused the call: {exc}") from exc

    def close(self) -> None:
        self._session.close()


class PartEndListener:
    """Calls ``on_end`` whenever aria2 says a download completed, failed or stopped.

    Connected before anything more is added, so no later event is missed; the events are
    hints only (the socket dies with aria2c and is never reconnected).
    """

    def __init__(self, client: LoopbackClient, on_end: Callable[[], None]) -> None:
        self._socket = websocket.create_connection(client.ws_server, timeout=1)
        self._on_end = on_end
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="sa1b-aria2-events", daemon=True).start()

    @classmethod
    def connect(cls, client: LoopbackClient, on_end: Callable[[], None]) -> PartEndListener | None:
        """A listener, or None when the WebSocket cannot be opened (the poll timer alone then)."""
        try:
            return cls(client, on_end)
        except (OSError, websocket.WebSocketException):
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._socket.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except (OSError, websocket.WebSocketException):
                return  # aria2c stopped (or restarted: a new listener listens to the new one)
            try:
                notification = aria2p.Notification.get_or_raise(json.loads(message))
            except (ValueError, aria2p.ClientException):
                continue
            if notification.type in PART_ENDED:
                self._on_end()

    def close(self) -> None:
        self._stop.set()
        self._socket.close()
