"""A deadline for a whole HTTP exchange: connect, TLS, status line, headers and body.

requests' and urllib3's timeouts apply to each socket operation: a server that trickles its
status line or headers a byte at a time never trips them, and a token call could hang for
as long as the server likes, with every waiting thread behind it. This module is the one
place that reaches below requests to bound the whole exchange.

How: :class:`DeadlineAdapter` is an ``HTTPAdapter`` whose connections register their socket
with the exchange running on their thread (:func:`~requests_emma._socket_watch.register`), a
:class:`~requests_emma._socket_watch.Watch` whose timer shuts the registered sockets down when
the deadline passes; the blocked read then returns, and requests reports a connection error,
which the caller recognises by :attr:`~requests_emma._socket_watch.Watch.fired`.
"""

from __future__ import annotations

import functools
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool

from .._socket_watch import register


class _Watched:
    """Mixin for urllib3's connections: register each socket with the running exchange."""

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        register(sock)  # before TLS, so the handshake is bounded too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        register(getattr(self, "sock", None))  # a kept-alive connection, reused
        super().request(*args, **kwargs)  # type: ignore[misc]


@functools.cache
def _watched_pool(pool_class: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    """``pool_class`` (a plain, SOCKS or any other urllib3 pool) with watched connections."""
    connection = pool_class.ConnectionCls
    connection_class = type(f"Watched{connection.__name__}", (_Watched, connection), {})
    return type(f"Watched{pool_class.__name__}", (pool_class,), {"ConnectionCls": connection_class})


def _watch_pools(manager: Any) -> None:
    """Make ``manager`` (a PoolManager, ProxyManager or SOCKSProxyManager) open its pools with
    watched connections, keeping whatever pool classes it had."""
    manager.pool_classes_by_scheme = {
        scheme: _watched_pool(pool_class)
        for scheme, pool_class in manager.pool_classes_by_scheme.items()
    }


class DeadlineAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose exchanges a :func:`~requests_emma._socket_watch.watch_for`
    block on their thread bounds."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        if proxy not in self.proxy_manager:  # made now; the adapter keeps it for the next call
            _watch_pools(super().proxy_manager_for(proxy, **proxy_kwargs))
        return super().proxy_manager_for(proxy, **proxy_kwargs)
