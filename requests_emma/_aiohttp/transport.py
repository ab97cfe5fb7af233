"""One call to an emma token endpoint over aiohttp, reported as an
:class:`~requests_emma._core.outcome.Outcome`.

:class:`AiohttpTokenEndpoint` behaves as the other transports do (``_requests/transport.py``,
``_httpx/transport.py``): one attempt, no policy, never an exception for what the network or
the server does. What a token call sends, how much of the answer is read and the words for
each failure are shared with them (``_core/exchange.py``); what an answer means is
``response_outcome``'s.

Each call runs on a ``ClientSession`` of its own, made for the call and closed after it:

- an aiohttp session belongs to the event loop it was made on, and the endpoint serves
  whichever loop a renewal runs on; token calls are minutes apart, so a session kept
  between them would only hold a connection the server has long dropped;
- it has no middlewares, no cookies, no default headers and follows no redirect, so an
  ``EmmaAiohttpMiddleware`` is never entered again and the client secret goes nowhere but
  the configured endpoint;
- with a session of the user's (``session=``, for TLS and proxies), the call's session
  runs over that session's connector (its TLS context, its resolver, its pool), with its
  ``trust_env`` and its proxy: never its middlewares, cookies, headers or auth.

A loopback endpoint is called directly, whatever proxy the environment or the user's
session names. The deadline bounds the whole exchange, connect to the last byte of the
body, as a cancel scope (``anyio.move_on_after``); each socket operation also has the
configured timeouts, cut to the time left.

Secrets (the client secret, a refresh token) travel in the ``body`` callable, called where
the request is built, so no frame of ours holds them in plain text; exceptions raised from
below, cancellation and ``KeyboardInterrupt`` included, leave with the frames that held the
body cut off.
"""

from __future__ import annotations

import ssl
import urllib.parse
from typing import Any

import aiohttp
import anyio
from aiohttp import http_exceptions

from .._core.exchange import CHUNK, HEADERS, CappedBody, Failure, Timeout
from .._core.urls import is_loopback
from .._errors import chain
from .._source.attempt import CLOSE_GRACE, Answer, AsyncEndpoint, Body


class AiohttpTokenEndpoint(AsyncEndpoint):
    """Posts to issue-token and refresh-token over aiohttp, one attempt at a time, on any
    asyncio event loop."""

    def __init__(
        self, base_url: str, session: aiohttp.ClientSession | None, timeout: Timeout
    ) -> None:
        super().__init__(base_url, timeout)
        self.session = session
        # Loopback is called directly: a proxy elsewhere cannot reach this host's loopback,
        # and plain http through one would hand it the client secret.
        self._direct = is_loopback(urllib.parse.urlsplit(base_url).hostname or "")

    async def exchange(self, url: str, body: Body, timeout: Timeout) -> Answer:
        """One POST to ``url``, on a session of its own. aiohttp's errors hold no request of
        their own: the default scrub, dropping their tracebacks, is all they need."""
        session, options = self._session_for_call()
        try:
            connect, read = timeout
            async with session.post(
                url,
                json=body(),  # built here only, so no local of ours holds the secret
                headers=HEADERS,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=connect, sock_connect=connect, sock_read=read
                ),
                **options,
            ) as response:
                content = await _read_capped(response)
                return response.status, content, response.headers.get("Retry-After")
        finally:
            # Closed even when the deadline or a cancellation cut the call off, so no
            # connection is left half-read; the grace bounds a peer that stalls the close
            # (closing waits for the TLS shutdown of its connection).
            with anyio.move_on_after(CLOSE_GRACE, shield=True):
                await session.close()

    def classify(self, exc: Exception) -> Failure:
        """What an exception from aiohttp says stopped the attempt."""
        if isinstance(exc, aiohttp.ClientSSLError) or any(
            isinstance(link, ssl.SSLError) for link in chain(exc)
        ):
            return Failure.TLS
        if isinstance(exc, aiohttp.ServerTimeoutError):
            return Failure.TIMEOUT
        if isinstance(exc, aiohttp.ClientPayloadError):  # a body that does not decode, or cut short
            return Failure.UNDECODABLE if _undecodable(exc) else Failure.CONNECTION
        if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientHttpProxyError)):
            return Failure.CONNECTION  # refused, reset, closed early, a proxy that failed
        return Failure.OTHER  # e.g. a closed session, a URL aiohttp refuses, a CA file not there

    def _session_for_call(self) -> tuple[aiohttp.ClientSession, dict[str, Any]]:
        """The session of one call, and the proxy options its request takes.

        Without a session of the user's, as requests and httpx do by default: the
        environment's proxies (and a ``.netrc`` never, as no auth is asked of it for a call
        that sends JSON). With one: its connector, its ``trust_env`` and its proxy."""
        users = self.session
        if users is not None and users.closed:
            raise RuntimeError("the aiohttp.ClientSession given for token calls has been closed")
        session = aiohttp.ClientSession(
            connector=None if users is None else users.connector,
            connector_owner=users is None,
            trust_env=(users is None or users.trust_env) and not self._direct,
            middlewares=(),
        )
        if users is None or self._direct:
            return session, {}
        # The user's session-wide proxy has no public accessor; a session without one
        # has None there.
        options: dict[str, Any] = {"proxy": getattr(users, "_default_proxy", None)}
        proxy_auth = getattr(users, "_default_proxy_auth", None)
        if options["proxy"] is not None and isinstance(proxy_auth, aiohttp.BasicAuth):
            options["proxy_headers"] = {"Proxy-Authorization": proxy_auth.encode()}
        return session, options


async def _read_capped(response: aiohttp.ClientResponse) -> bytes | None:
    """The body as aiohttp decodes it (gzip, deflate...), or ``None`` once it grows past
    the cap. An error body that does not decode reads as empty: its status says enough. A
    token body (2xx) that does not decode raises aiohttp's ``ClientPayloadError``."""
    body = CappedBody()
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            if not body.add(chunk):
                break
    except aiohttp.ClientPayloadError as exc:
        if 200 <= response.status < 300 or not _undecodable(exc):
            raise
        return b""
    return body.content


def _undecodable(exc: aiohttp.ClientPayloadError) -> bool:
    """Whether a payload error is a body that does not decode (not one cut short)."""
    return any(isinstance(link, http_exceptions.ContentEncodingError) for link in chain(exc))
