"""Test doubles shared by the test modules: a lock that can be watched, raw servers; the
hand-moved clock is the public one (``requests_emma.testing.FakeClock``, ``use_clock``)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections.abc import Callable
from typing import Any

from requests_emma import EmmaAuth
from requests_emma.testing import FakeClock, FakeEmmaServer, use_clock

__all__ = ["FakeClock", "use_clock"]  # re-exported: the tests import them from here

WAIT = 10.0  # seconds to wait for something that should happen at once


class WatchedLock:
    """A real lock that counts how many acquisitions had to block, for tests to wait on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self.blocked = 0  # acquisitions that found the lock taken and waited
        self.on_try: Callable[[], None] | None = None  # called before each acquisition

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self.on_try is not None:
            self.on_try()
        if self._lock.acquire(blocking=False):
            return True
        if not blocking:
            return False
        with self._changed:
            self.blocked += 1
            self._changed.notify_all()
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def wait_for_blocked(self, count: int, timeout: float = WAIT) -> bool:
        """Wait until ``count`` acquisitions have blocked; False if that took too long."""
        with self._changed:
            return self._changed.wait_for(lambda: self.blocked >= count, timeout=timeout)


def auth_for(server: FakeEmmaServer, **options: Any) -> EmmaAuth:
    """An EmmaAuth with the fake server's credentials and base URL, plus ``options``."""
    return EmmaAuth(server.client_id, server.client_secret, base_url=server.base_url, **options)


def join_renewal(auth: EmmaAuth) -> None:
    """Wait for the background renewal ``auth`` started last; fail if none was started."""
    worker = auth._worker
    assert worker is not None, "no background renewal was started"
    worker.join(WAIT)
    assert not worker.is_alive(), "the background renewal did not finish"


Handler = Callable[[socket.socket, threading.Event], None]


class RawServer:
    """A loopback server that answers its n-th connection with the n-th handler, byte by byte
    as the handler pleases; ``stopping`` is set when the test ends."""

    def __init__(self, *handlers: Handler) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._handlers = handlers
        self.connections = 0
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        for handler in self._handlers:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with conn, contextlib.suppress(OSError):
                self.connections += 1
                read_request(conn)
                handler(conn, self.stopping)

    def close(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes a pending accept()
        self._listener.close()
        self._thread.join(WAIT)


def read_request(conn: socket.socket) -> None:
    """Read one request, headers and body, so that closing the connection resets nothing."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    missing = (int(length.group(1)) if length else 0) - len(body)
    while missing > 0:
        chunk = conn.recv(missing)
        if not chunk:
            return
        missing -= len(chunk)


TOKEN_BODY = json.dumps({"accessToken": "raw-access", "expiresIn": 300}).encode().ljust(100)
TOKEN_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"


def answer(conn: socket.socket, stopping: threading.Event) -> None:
    conn.sendall(TOKEN_HEADERS + TOKEN_BODY)


def one_byte_every(gap: float) -> Handler:
    """A raw-server behaviour: the token response, its body one byte every ``gap`` seconds."""

    def trickle(conn: socket.socket, stopping: threading.Event) -> None:
        conn.sendall(TOKEN_HEADERS)
        for byte in TOKEN_BODY:
            if stopping.wait(gap):
                return
            conn.sendall(bytes([byte]))

    return trickle


def cut_short(conn: socket.socket, stopping: threading.Event) -> None:
    """The token response's headers and 10 bytes of its body, then the connection closes."""
    conn.sendall(TOKEN_HEADERS + TOKEN_BODY[:10])
