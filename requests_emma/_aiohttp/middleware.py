"""``EmmaAiohttpMiddleware``: the token source (``_source/``) as an aiohttp client middleware.

A thin shell: the source holds the token and runs its renewals, the lifecycle decides, and
this module adds what is aiohttp's: the per-request path, the token endpoint over aiohttp
(``transport.py``), and the 401 replay by calling the handler once more.

The per-request path
    aiohttp runs the middleware chain again for each redirect hop, on a new request built
    from the session's and the call's headers (not from the previous hop's), so the origin
    test runs on every call: a hop to another origin gets no token. A fresh token costs the
    origin test, one clock reading compared with the source's published deadline, and the
    ready-made header. A renewal runs in a task of the source's own: the request that
    needed it waits for it, and a cancelled request never cancels what others wait for.

The 401 replay
    A 401 from the API's origin to the token sent: the response is read whole (emma's
    error is a few bytes), which lets the body's writer settle (a server may answer before
    reading the body). A body aiohttp can send again byte for byte (bytes, str,
    ``json=``, forms, a seekable file) is replayed once, with the token renewed if the
    rejected one is still the current one; a body it cannot (an async iterable, a pipe, a
    form with such a part: aiohttp marks them ``consumed`` as their writing starts) is not:
    the 401 is returned, and the next request renews. A 403 never renews.

aiohttp 4 caches middleware chains keyed on the middlewares themselves, so a middleware is
hashable, and equal only to itself: an equal copy would be served the chain (and the
token) of the first.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import aiohttp

from .._adapter import Adapter, TokenOptions, stack_error
from .._core.secret import secret_or_none
from .._core.token import Token
from .._errors import EmmaAuthError
from .._source import TokenSource
from .transport import AiohttpTokenEndpoint

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # aiohttp brings typing_extensions on Python 3.10
    from typing_extensions import Unpack

logger = logging.getLogger("requests_emma")


class EmmaAiohttpMiddleware(Adapter):
    """Authenticates ``aiohttp`` requests to the emma API with a self-renewing bearer token:
    ``aiohttp.ClientSession(middlewares=(EmmaAiohttpMiddleware(),))``.

    Arguments as :class:`~requests_emma.EmmaAuth` takes them (``None`` reads
    ``EMMA_CLIENT_ID``, ``EMMA_CLIENT_SECRET``, ``EMMA_API_URL``); ``session``: an
    ``aiohttp.ClientSession`` whose connector (TLS, proxies) token calls use, never its
    middlewares, headers or cookies. Constructing it makes no network call.
    """

    clients = (("session", aiohttp.ClientSession, "an aiohttp.ClientSession"),)

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        **options: Unpack[TokenOptions],
    ) -> None:
        secret = secret_or_none(client_secret)  # no frame holds it in plain text from here
        del client_secret
        self._attach(self._new_source(client_id, secret, options), {"session": session})

    def _attach(self, source: TokenSource, clients: dict[str, Any]) -> None:
        super()._attach(source, clients)
        self._endpoint = AiohttpTokenEndpoint(source.base_url, clients["session"], source.timeout)

    async def get_token(self) -> Token:
        """A usable token: the current one, or a new one fetched (or renewed) now."""
        try:
            return (await self._token_source.ausable(self._endpoint)).token
        except EmmaAuthError as exc:
            raise stack_error(exc, aiohttp.ClientError, "Aiohttp") from exc.__cause__

    # -- aiohttp's entry point ----------------------------------------------------------------

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        source = self._token_source
        url = request.url
        if (url.scheme, url.raw_host, url.port) != source.origin:
            return await handler(request)
        until, header = source.lifecycle.fresh
        if source.monotonic() >= until:
            try:
                header = (await source.ausable(self._endpoint)).header
            except EmmaAuthError as exc:
                raise stack_error(exc, aiohttp.ClientError, "Aiohttp") from exc.__cause__
        request.headers["Authorization"] = header
        response = await handler(request)
        if response.status != 401:
            return response
        # What was sent: a middleware after this one may have changed it.
        sent = request.headers.get("Authorization", "")
        return await self._replay_after_401(request, handler, response, sent)

    async def _replay_after_401(
        self,
        request: aiohttp.ClientRequest,
        handler: aiohttp.ClientHandlerType,
        response: aiohttp.ClientResponse,
        sent: str,
    ) -> aiohttp.ClientResponse:
        source = self._token_source
        # Read whole (emma's error is a few bytes): the caller can still read a 401 that is
        # returned, and read() waits for the body's writer (the server may answer before
        # reading it all), so a payload that rewinds has rewound and one that cannot says
        # so. The connection goes back to the pool while the renewal runs.
        await response.read()
        if getattr(request.body, "consumed", False):
            source.cannot_replay(sent)
            return response
        try:
            header = await source.arenewed(sent, self._endpoint)
        except EmmaAuthError as exc:
            raise stack_error(exc, aiohttp.ClientError, "Aiohttp") from exc.__cause__
        if header is None:
            return response
        request.headers["Authorization"] = header
        logger.debug("API answered 401; replaying %s once with a renewed token", request.method)
        with source.telemetry().replay(request.method, str(request.url)) as span:
            replayed = await handler(request)
            span.answered(replayed.status)
        return replayed
