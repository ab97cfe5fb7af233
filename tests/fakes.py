"""Test doubles shared by the test modules: renewals in flight that can be watched, raw servers; the
hand-moved clock is the public one (``requests_emma.testing.FakeClock``, ``use_clock``).

The only place the tests reach into an auth's token source (``source_of``): to count the
callers waiting on a renewal in flight, to find and join the thread of an early renewal,
and to replay a late ``on_token`` announcement. Everything else goes through the public
API and the test kit."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from requests_emma import EmmaAuth, Token
from requests_emma._source import source_of
from requests_emma.testing import FakeClock, FakeEmmaServer, use_clock

__all__ = ["FakeClock", "use_clock"]  # re-exported: the tests import them from here

WAIT = 10.0  # seconds to wait for something that should happen at once


class WatchedFlights:
    """Counts the callers that wait for an auth's renewal in flight, for tests to wait on.

    Installed on the auth's coordinator, it makes each flight a Future that counts its
    waiters: a thread when it calls ``result()``, a task when it asks to be woken."""

    def __init__(self, auth: object) -> None:
        self._changed = threading.Condition()
        self.waited = 0  # calls to a flight's result(): callers that waited for a renewal
        watcher = self

        class WatchedFlight(Future[Any]):
            def result(self, timeout: float | None = None) -> Any:
                watcher._count()  # a thread waiting
                return super().result(timeout)

            def add_done_callback(self, fn: Callable[[Future[Any]], object]) -> None:
                watcher._count()  # a task waiting (asyncio.wrap_future, or trio's wake-up)
                super().add_done_callback(fn)

        source_of(auth).new_future = WatchedFlight

    def _count(self) -> None:
        with self._changed:
            self.waited += 1
            self._changed.notify_all()

    def wait_for_waiters(self, count: int, timeout: float = WAIT) -> bool:
        """Wait until ``count`` callers have waited for a flight; False if that took too long."""
        with self._changed:
            return self._changed.wait_for(lambda: self.waited >= count, timeout=timeout)


def auth_for(server: FakeEmmaServer, **options: Any) -> EmmaAuth:
    """An EmmaAuth with the fake server's credentials and base URL, plus ``options``."""
    return EmmaAuth(server.client_id, server.client_secret, base_url=server.base_url, **options)


def renewal_thread(auth: object) -> threading.Thread | None:
    """The thread of the last early renewal ``auth`` started (``None``: none yet)."""
    return source_of(auth).worker


def join_renewal(auth: object) -> None:
    """Wait for the background renewal ``auth`` started last; fail if none was started."""
    worker = renewal_thread(auth)
    assert worker is not None, "no background renewal was started"
    worker.join(WAIT)
    assert not worker.is_alive(), "the background renewal did not finish"


def announce_late(auth: object, token: Token) -> None:
    """Hand ``token`` to ``auth``'s ``on_token`` now, as a thread preempted between its
    renewal and its announcement would, after a newer token was announced."""
    source_of(auth)._announce(token)


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


def exit_code_in_a_forked_child(check: Callable[[], int]) -> int:
    """Fork, run ``check`` in the child (its result is the child's exit code; an exception
    is 2, and a deadlock ends the child after ``WAIT`` s rather than the suite), and return
    the child's exit code. The child never returns into the test."""
    pid = os.fork()
    if pid == 0:
        signal.alarm(int(WAIT))
        code = 2
        try:
            code = check()
        except BaseException:  # noqa: BLE001, S110 - any failure is the child's exit code
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
