"""A deadline for a whole exchange over sockets: a timer that shuts them down when it passes.

Socket timeouts bound each operation, not an exchange: a server that trickles its answer a
byte at a time never trips them. A :class:`Watch` holds the sockets of one exchange; a timer
(:func:`watch_for`) shuts them down when the deadline passes. The read blocked on one of
them then returns as if the peer had closed, the HTTP stack reports a broken connection, and
the caller, seeing :attr:`Watch.fired`, reports a deadline instead.

Each HTTP stack finds its sockets in its own way (``_requests/deadline.py``,
``_httpx/transport.py``) and gives them to :func:`register`, for the watch :data:`running` on
its thread; this module knows no HTTP stack. A registration keeps a duplicate
of the socket's file descriptor, so the shutdown reaches the connection during a TLS
handshake too (when ``ssl`` has taken the original socket object over) and never touches a
descriptor the process has since reused for something else.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator


class Watch:
    """The sockets of one exchange, and whether its deadline has passed."""

    def __init__(self) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []

    def add(self, sock: socket.socket) -> None:
        try:
            duplicate = socket.socket(sock.family, sock.type, sock.proto, os.dup(sock.fileno()))
        except OSError:
            return  # already closed: nothing left to bound
        with self._lock:
            self._sockets.append(duplicate)
            if self.fired:
                _shut(duplicate)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shut(sock)

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the peer may have closed it already
        sock.shutdown(socket.SHUT_RDWR)


class _Running(threading.local):
    """Per thread, the watch of the :func:`watch_for` block it is in (``None``: none), for
    what opens sockets deep inside an HTTP stack."""

    watch: Watch | None = None


running = _Running()


def register(sock: object) -> None:
    """Add ``sock`` to the watch running on this thread, if any. ``sock`` may be a network
    stream that gives its socket by ``get_extra_info("socket")`` (httpcore's). Only real
    sockets are watched (an ``ssl.SSLSocket`` is one): through an https proxy urllib3's
    ``conn.sock`` is an SSLTransport over the tunnel, whose socket was registered when it
    was made, and a mocked httpx transport's stream has none."""
    if hasattr(sock, "get_extra_info"):
        sock = sock.get_extra_info("socket")
    watch = running.watch
    if watch is not None and isinstance(sock, socket.socket):
        watch.add(sock)


@contextlib.contextmanager
def watch_for(seconds: float) -> Iterator[Watch]:
    """A :class:`Watch` whose sockets are shut down ``seconds`` from now, unless the block
    has ended by then; its duplicates are closed when it ends. Inside the block it is the
    thread's :data:`running` watch."""
    watch = Watch()
    timer = threading.Timer(max(0.0, seconds), watch.fire)
    timer.daemon = True  # never keeps the process alive
    # No new threads (a thread limit): no deadline then, but each read's timeout still holds.
    with contextlib.suppress(RuntimeError):
        timer.start()
    previous = running.watch
    running.watch = watch
    try:
        yield watch
    finally:
        running.watch = previous
        timer.cancel()
        watch.close()
