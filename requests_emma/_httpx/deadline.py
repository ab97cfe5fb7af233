"""A deadline for a whole token exchange over httpx's sync transport: connect, TLS, status
line, headers and body.

httpx's timeouts, like requests', apply to each socket operation: a server that trickles
its answer a byte at a time never trips them. An async exchange is bounded by a cancel scope
(``anyio.move_on_after``); a sync one has nothing of the kind, so its sockets are shut down
by the timer of the :class:`~requests_emma._socket_watch.Watch` running on its thread when the deadline passes, and
the read blocked on one returns as if the server had closed. This module is the one place
that reaches below httpx to find those sockets, through two extensions httpx documents and
passes to httpcore:

- the ``trace`` request extension: httpcore reports each connection it opens for the request
  (``connection.connect_tcp.complete``, and ``connect_unix_socket``; a SOCKS proxy's as
  ``socks.connect_tcp``) with the network stream as ``return_value``, before any TLS, so the
  handshake is bounded too;
- the ``network_stream`` response extension: the stream the answer arrived on, whichever
  connection of the pool it is, registered once the headers are in, so the body is bounded
  on a kept-alive connection the pool handed over.

A stream's socket is read with ``get_extra_info("socket")``, httpcore's documented way. The
private client makes every token call on a new connection (no keep-alive), so its exchanges
are bounded from the connect on. A kept-alive connection of a user's client is bounded from
its headers on; until then its reads wait at most the read timeout each, cut to the time
left (the bound a user's ``requests.Session`` gets).
"""

from __future__ import annotations

from typing import Any

from .._socket_watch import register


def trace(event: str, info: dict[str, Any]) -> None:
    """The ``trace`` extension: registers each connection opened with the thread's watch."""
    # A connection opened (and a SOCKS proxy's: "socks.connect_tcp.complete").
    if event.endswith((".connect_tcp.complete", ".connect_unix_socket.complete")):
        _register(info.get("return_value"))


def watch_response(response: Any) -> None:
    """Register the connection ``response`` (httpx's or httpx2's) is arriving on with the
    thread's watch."""
    _register(response.extensions.get("network_stream"))


def _register(stream: Any) -> None:
    # A mocked transport's stream may have no sockets to give.
    register(stream.get_extra_info("socket") if hasattr(stream, "get_extra_info") else None)
