"""emma's token endpoints on an ``httpx2.MockTransport``, for test suites that mock httpx2.

respx patches httpx's transports, not httpx2's, so a suite on httpx2 mocks with the
``MockTransport`` httpx2 has built in: :func:`httpx2_token_transport` makes one that answers
``POST /v1/issue-token`` and ``POST /v1/refresh-token`` under a base URL as emma and
``FakeEmmaServer`` do (all three are a ``FakeTokenService``), and hands every other request
to the handler of the test's own. It returns the transport and the same
:class:`FakeTokenEndpoints` as :func:`add_token_endpoints`, with its counters and knobs.

httpx2 is imported, so this module is loaded at the first use of the name, not with
``requests_emma.testing``.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx2

from .._core import urls
from ._responses import FakeTokenEndpoints, endpoints_at

#: A ``MockTransport`` handler: a response, or (for an ``AsyncClient``) an awaitable of one.
Handler = Callable[[httpx2.Request], "httpx2.Response | Awaitable[httpx2.Response]"]
SyncHandler = Callable[[httpx2.Request], httpx2.Response]


class _Body(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A body streamed as a server's would be, to a sync or an async client. Not a
    ``ByteStream``: httpx2 reads one at once, and an async client's raw stream of a body
    already read cannot be read again (``StreamConsumed``)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self._body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body


def httpx2_token_transport(
    handler: Handler | None = None,
    base_url: str = urls.DEFAULT_BASE_URL,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    token_lifetime: int = 300,
    refresh_lifetime: int = 1800,
) -> tuple[httpx2.MockTransport, FakeTokenEndpoints]:
    """An ``httpx2.MockTransport`` answering emma's token endpoints, and their counters.

    ``handler`` answers every other request, as ``httpx2.MockTransport(handler)`` would
    (``None``: a 404). ``base_url`` is the API base URL the code under test uses (default
    emma's own). ``client_id`` and ``client_secret``: the credentials issue-token accepts
    (``None``: any). Lifetimes are seconds. Give the transport to the clients of the code
    under test and to ``EmmaHttpx2Auth(client=..., async_client=...)``, whose token calls
    otherwise go through a client of its own.
    """
    endpoints = endpoints_at(base_url, client_id, client_secret, token_lifetime, refresh_lifetime)

    def answer(request: httpx2.Request) -> httpx2.Response | Awaitable[httpx2.Response]:
        if request.method == "POST" and endpoints._pattern.match(str(request.url)):
            answer = endpoints._answer(str(request.url), request.headers, request.content)
            return httpx2.Response(answer.status, headers=answer.headers, stream=_Body(answer.body))
        if handler is None:
            return httpx2.Response(404, json={"code": "NOT_FOUND", "message": "not mocked"})
        return handler(request)

    # Typed as one kind of handler or the other; MockTransport awaits what is awaitable.
    return httpx2.MockTransport(typing.cast("SyncHandler", answer)), endpoints
