"""One call to an emma token endpoint over httpx or httpx2, sync or async, reported as an
:class:`~requests_emma._core.outcome.Outcome`. The HTTP module is a parameter (``http``):
httpx2 is a fork of httpx with the same public API, so one module serves both.

:class:`HttpxTokenEndpoint` (over ``httpx.Client``) and :class:`AsyncHttpxTokenEndpoint`
(over ``httpx.AsyncClient``) behave as the requests transport (``_requests/transport.py``)
does: one attempt, no policy, never an exception for what the network or the server does.
What a token call sends, how much of the answer is read and the words for each failure are
shared with it (``_core/exchange.py``); what an answer means is ``response_outcome``'s.

The calls go through a private client of the library's own, or through the transport of the
client the user passes for proxies and TLS (``routes.py``): never through that client's
auth, event hooks, headers, cookies or redirects, so an ``EmmaHttpxAuth`` set on it is never
entered again and the client secret goes nowhere but the configured endpoint. A loopback
endpoint is called directly, whatever proxies the client has.

The deadline bounds the whole exchange, connect to the last byte of the body: the async
attempt runs in a cancel scope (``anyio.move_on_after``, under asyncio and trio alike), the
sync one with a timer that shuts its sockets down (``_socket_watch.py``). The private client
keeps no connection alive between calls, minutes apart as they are: each call's connection
is then watched from its connect on, and the async client is tied to no event loop, so one
endpoint serves asyncio and trio, several loops, in turn. It is made at the first call, in a
worker thread for the async endpoint (loading the CA certificates takes tens of
milliseconds, which an event loop would spend blocked).

httpx's timeouts, like requests', apply to each socket operation: a server that trickles
its answer a byte at a time never trips them. The sync exchange's sockets are found through
two extensions httpx documents and passes to httpcore, and registered with the watch that
shuts them down:

- the ``trace`` request extension (:func:`_trace`): httpcore reports each connection it
  opens for the request (``connection.connect_tcp.complete``, and ``connect_unix_socket``;
  a SOCKS proxy's as ``socks.connect_tcp``) with the network stream as ``return_value``,
  before any TLS, so the handshake is bounded too;
- the ``network_stream`` response extension: the stream the answer arrived on, whichever
  connection of the pool it is, registered once the headers are in, so the body is bounded
  on a kept-alive connection the pool handed over.

A stream's socket is read with ``get_extra_info("socket")``, httpcore's documented way. The
private client makes every token call on a new connection (no keep-alive), so its exchanges
are bounded from the connect on. A kept-alive connection of a user's client is bounded from
its headers on; until then its reads wait at most the read timeout each, cut to the time
left (the bound a user's ``requests.Session`` gets).

Secrets (the client secret, a refresh token) travel in the ``body`` callable, called where
the request is built, so no frame of ours holds them in plain text; exceptions raised from
below, cancellation and ``KeyboardInterrupt`` included, leave without the request and with
the frames that held the body cut off.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from types import ModuleType
from typing import Any

import anyio
import anyio.to_thread
import httpx
import sniffio

from .._core.exchange import CHUNK, HEADERS, CappedBody, Failure, Timeout
from .._errors import chain, without_tracebacks
from .._socket_watch import register
from .._source.attempt import (
    CLOSE_GRACE,
    Answer,
    AsyncEndpoint,
    BlockingEndpoint,
    Body,
    Endpoint,
    read_capped,
)
from . import routes


class _Endpoint(Endpoint):
    """What the sync and async endpoints share: the configuration, the clients, and what
    httpx's exceptions mean."""

    def __init__(self, base_url: str, client: Any, timeout: Timeout, http: ModuleType = httpx):
        super().__init__(base_url, timeout)
        self.http = http
        self._client = client
        # The private clients by use: "sync", or the async library's name (a client first
        # used under trio fails under asyncio afterwards: its pool's primitives are trio's).
        self._private: dict[str, Any] = {}
        self._making = threading.Lock()  # held in worker threads only, never on a loop
        self.failures = (
            (http.TimeoutException, Failure.TIMEOUT),
            # Refused, reset, closed early, a proxy that failed.
            ((http.NetworkError, http.RemoteProtocolError, http.ProxyError), Failure.CONNECTION),
            (http.DecodingError, Failure.UNDECODABLE),
        )

    def _users_client(self) -> Any:
        if self._client.is_closed:
            raise RuntimeError(
                f"the {self.http.__name__}.{type(self._client).__name__} given for token calls "
                "has been closed"
            )
        return self._client

    def _private_client(self, use: str) -> Any:
        """The private client for ``use``: the environment's proxies and CA certificates, as
        httpx reads them, and no connection kept alive between token calls (minutes apart)."""
        with self._making:
            if use not in self._private:
                kind = self.http.Client if use == "sync" else self.http.AsyncClient
                self._private[use] = kind(limits=self.http.Limits(max_keepalive_connections=0))
            return self._private[use]

    def _request(self, url: str, body: Body, timeout: Timeout, **extensions: object) -> Any:
        """The token call, with its timeouts and ``extensions`` (the sync one's ``trace``)."""
        connect, read = timeout
        extensions["timeout"] = {"connect": connect, "read": read, "write": read, "pool": connect}
        # What an httpx client would add to a request of its own, less what a token call must
        # not carry (a user's headers and cookies): the encodings httpx always decodes.
        agent = f"python-{self.http.__name__}/{self.http.__version__}"
        headers = {**HEADERS, "Accept-Encoding": "gzip, deflate", "User-Agent": agent}
        # body() is called here only, so no local of ours holds the secret in plain text.
        return self.http.Request("POST", url, json=body(), headers=headers, extensions=extensions)

    def classify(self, exc: Exception) -> Failure:
        """What an exception from httpx (httpx2) says stopped the attempt: TLS wherever
        along its chain an ``ssl.SSLError`` is, else as :attr:`failures` says."""
        if any(isinstance(link, ssl.SSLError) for link in chain(exc)):
            return Failure.TLS
        return super().classify(exc)

    def scrub(self, exc: BaseException) -> BaseException:
        """``exc`` without what would show the request body, which holds the client secret or
        a refresh token: the request, wherever along its chain httpx attached it, and the
        tracebacks, whose frames (ours, httpx's, httpcore's) hold the body in their locals."""
        for link in chain(exc):
            if isinstance(link, self.http.RequestError):
                link._request = None
        return without_tracebacks(exc)


class HttpxTokenEndpoint(_Endpoint, BlockingEndpoint):
    """Posts to issue-token and refresh-token over ``httpx.Client``, one attempt at a time."""

    def exchange(self, url: str, body: Body, timeout: Timeout) -> Answer:
        """One POST to ``url``, its connections registered with the thread's watch."""
        client = self._private_client("sync") if self._client is None else self._users_client()
        request = self._request(url, body, timeout, trace=_trace)
        response = routes.transport_for(client, request.url).handle_request(request)
        try:
            register(response.extensions.get("network_stream"))  # a kept-alive connection
            content = _read_capped(self.http, response)
            return response.status_code, content, response.headers.get("Retry-After")
        finally:
            response.close()

    def close(self) -> None:
        """Close the private client, if one was made; a user's client stays open. A call
        after this makes a new private client."""
        with self._making:
            client = self._private.pop("sync", None)
        if client is not None:
            client.close()


class AsyncHttpxTokenEndpoint(_Endpoint, AsyncEndpoint):
    """Posts to issue-token and refresh-token over ``httpx.AsyncClient``, one attempt at a
    time, under asyncio or trio."""

    async def exchange(self, url: str, body: Body, timeout: Timeout) -> Answer:
        """One POST to ``url``, through the private client of the running async library."""
        library = sniffio.current_async_library()
        client = self._private.get(library) if self._client is None else self._users_client()
        if client is None:  # made in a thread: loading the CA certificates blocks
            client = await anyio.to_thread.run_sync(self._private_client, library)
        request = self._request(url, body, timeout)
        response = await routes.transport_for(client, request.url).handle_async_request(request)
        try:
            content = await _aread_capped(self.http, response)
            return response.status_code, content, response.headers.get("Retry-After")
        finally:
            # A response cut off by the deadline (or a cancellation) still closes, so its
            # connection is not left half-read; the grace bounds a peer that stalls it.
            with anyio.move_on_after(CLOSE_GRACE, shield=True):
                await response.aclose()


def _trace(event: str, info: dict[str, Any]) -> None:
    """The ``trace`` extension: registers each connection opened with the thread's watch."""
    # A connection opened (and a SOCKS proxy's: "socks.connect_tcp.complete").
    if event.endswith((".connect_tcp.complete", ".connect_unix_socket.complete")):
        register(info.get("return_value"))


def _read_capped(http: ModuleType, response: Any) -> bytes | None:
    """The body as httpx decodes it (gzip, deflate), or ``None`` once it grows past the cap;
    an error body that does not decode reads as empty."""
    return read_capped(response.iter_bytes(CHUNK), http.DecodingError, success=response.is_success)


async def _aread_capped(http: ModuleType, response: Any) -> bytes | None:
    """:func:`_read_capped`, for an async response.

    The body is read to its end (or to the deadline), what goes past the cap dropped, and
    then decoded: httpx's async streams are async generators nested inside one another, and
    one left before its end is finalised by the garbage collector, which trio reports as a
    ``ResourceWarning`` (encode/httpx#3686). Read to the end, or ended by an exception from
    below (a cancellation, a broken connection), they all close in turn."""
    if response.is_stream_consumed:  # read already, and decoded: a mock transport's answer
        return _read_capped(http, response)  # iter_bytes gives what was read
    raw = CappedBody()
    async with contextlib.aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:
            raw.add(chunk)  # past the cap, only counted: the stream is read to its end
    if raw.content is None:
        return None
    # Decoded by httpx, as the sync endpoint's body is, from the raw bytes now in hand: as a
    # stream, which httpx decodes lazily (so the cap holds decoded, and an error body that
    # does not decode reads as empty); content= would decode it all here, uncapped.
    replay = http.Response(
        response.status_code, headers=response.headers, stream=http.ByteStream(raw.content)
    )
    return _read_capped(http, replay)
