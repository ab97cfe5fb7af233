"""A deadline for a whole HTTP exchange: connect, TLS, status line, headers and body.

requests' and urllib3's timeouts apply to each socket operation: a server that trickles its
status line or headers a byte at a time never trips them, and a token call could hang for
as long as the server likes, with every waiting thread behind it. This module is the one
place that reaches below requests to bound the whole exchange.

How: :class:`DeadlineAdapter` is an ``HTTPAdapter`` whose connections register their socket
with the exchange running on their thread (:func:`deadline`). A timer shuts the registered
sockets down when the deadline passes; the blocked read then returns, and requests reports a
connection error, which the caller recognises by :attr:`Watch.fired`. The registration keeps
a duplicate of the socket's file descriptor, so the shutdown reaches the connection during
the TLS handshake too (when ``ssl`` has taken the original socket object over) and never
touches a descriptor the process has since reused.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool

_current = threading.local()


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


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[Watch]:
    """Bound the exchanges this thread makes through a :class:`DeadlineAdapter` inside the
    block to ``seconds`` in all."""
    watch = Watch()
    timer = threading.Timer(max(0.0, seconds), watch.fire)
    timer.daemon = True  # never keeps the process alive
    previous = getattr(_current, "watch", None)
    _current.watch = watch
    try:
        try:
            timer.start()
        except RuntimeError:  # no new threads (a thread limit): each read's timeout still holds
            pass
        yield watch
    finally:
        timer.cancel()
        _current.watch = previous
        watch.close()


def _register(sock: object) -> None:
    watch: Watch | None = getattr(_current, "watch", None)
    # Only real sockets: through an https proxy ``conn.sock`` is urllib3's SSLTransport over
    # the tunnel, whose socket was registered when it was made (_new_conn).
    if watch is not None and isinstance(sock, socket.socket):
        watch.add(sock)


class _Watched:
    """Mixin for urllib3's connections: register each socket with the running exchange."""

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        _register(sock)  # before TLS, so the handshake is bounded too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(getattr(self, "sock", None))  # a kept-alive connection, reused
        super().request(*args, **kwargs)  # type: ignore[misc]


@functools.cache
def _watched_pool(pool_class: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    """``pool_class`` (a plain, SOCKS or any other urllib3 pool) with watched connections."""
    connection_class = type(
        f"Watched{pool_class.ConnectionCls.__name__}", (_Watched, pool_class.ConnectionCls), {}
    )
    return type(f"Watched{pool_class.__name__}", (pool_class,), {"ConnectionCls": connection_class})


def _watch_pools(manager: Any) -> Any:
    """Make ``manager`` (a PoolManager, ProxyManager or SOCKSProxyManager) open its pools with
    watched connections, keeping whatever pool classes it had."""
    manager.pool_classes_by_scheme = {
        scheme: _watched_pool(pool_class)
        for scheme, pool_class in manager.pool_classes_by_scheme.items()
    }
    return manager


class DeadlineAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose exchanges :func:`deadline` can bound."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not getattr(manager, "_requests_emma_watched", False):  # the adapter caches them
            _watch_pools(manager)
            manager._requests_emma_watched = True
        return manager
