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
from collections.abc import Callable
from typing import Any

import aiohttp

# At runtime too: the public annotations resolve (typing.get_type_hints, Sphinx).
from .._caches.protocol import TokenCache
from .._core.retry_policy import RetryPolicy
from .._core.secret import secret_or_none
from .._core.token import Token
from .._core.token_status import TokenStatus
from .._errors import EmmaAuthError
from .._source import TokenSource, source_of
from .errors import for_aiohttp
from .transport import AiohttpTokenEndpoint

logger = logging.getLogger("requests_emma")


class EmmaAiohttpMiddleware:
    """Authenticates ``aiohttp`` requests to the emma API with a self-renewing bearer token:
    ``aiohttp.ClientSession(middlewares=(EmmaAiohttpMiddleware(),))``.

    Arguments as :class:`~requests_emma.EmmaAuth` takes them (``None`` reads
    ``EMMA_CLIENT_ID``, ``EMMA_CLIENT_SECRET``, ``EMMA_API_URL``); ``session``: an
    ``aiohttp.ClientSession`` whose connector (TLS, proxies) token calls use, never its
    middlewares, headers or cookies. Constructing it makes no network call.
    """

    __slots__ = ("__weakref__", "_endpoint", "_token_source")

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        base_url: str | None = None,
        refresh_margin: float | None = None,
        timeout: float | tuple[float, float] = (3.05, 10.0),
        session: aiohttp.ClientSession | None = None,
        on_token: Callable[[Token], object] | None = None,
        retry: RetryPolicy | None = None,
        token_cache: TokenCache | None = None,
    ) -> None:
        secret = secret_or_none(client_secret)  # no frame holds it in plain text from here
        del client_secret
        _check_session(session)
        source = TokenSource(
            client_id,
            secret,
            base_url=base_url,
            refresh_margin=refresh_margin,
            timeout=timeout,
            on_token=on_token,
            retry=retry,
            token_cache=token_cache,
        )
        self._attach(source, session)

    @classmethod
    def sharing(
        cls, auth: object, *, session: aiohttp.ClientSession | None = None
    ) -> EmmaAiohttpMiddleware:
        """A middleware backed by ``auth``'s token (any of the library's auths): one token,
        one renewal at a time, whichever client, thread or event loop needs it first."""
        _check_session(session)
        middleware = cls.__new__(cls)
        middleware._attach(source_of(auth), session)
        return middleware

    def _attach(self, source: TokenSource, session: aiohttp.ClientSession | None) -> None:
        self._token_source = source
        self._endpoint = AiohttpTokenEndpoint(source.base_url, session, source.timeout)

    @property
    def base_url(self) -> str:
        """The API base URL, without a trailing slash."""
        return self._token_source.base_url

    def __repr__(self) -> str:
        source = getattr(self, "_token_source", None)
        if source is None:
            return "EmmaAiohttpMiddleware(<not fully constructed>)"
        return (
            f"EmmaAiohttpMiddleware(client_id={source.client_id!r}, base_url={source.base_url!r})"
        )

    async def get_token(self) -> Token:
        """A usable token: the current one, or a new one fetched (or renewed) now."""
        try:
            return await self._token_source.atoken(self._endpoint)
        except EmmaAuthError as exc:
            raise for_aiohttp(exc) from exc.__cause__

    def status(self) -> TokenStatus:
        """The token's state now, for health checks (see ``EmmaAuth.status``)."""
        return self._token_source.status()

    # -- aiohttp's entry point ----------------------------------------------------------------

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        source = self._token_source
        url = request.url
        if (url.scheme, url.raw_host, url.port) != source.origin:
            return await handler(request)
        until, header = source.fresh
        if source.monotonic() >= until:
            try:
                header = await source.aheader(self._endpoint)
            except EmmaAuthError as exc:
                raise for_aiohttp(exc) from exc.__cause__
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
            raise for_aiohttp(exc) from exc.__cause__
        if header is None:
            return response
        request.headers["Authorization"] = header
        logger.debug("API answered 401; replaying %s once with a renewed token", request.method)
        with source.replay_span(request.method, str(request.url)) as span:
            replayed = await handler(request)
            span.answered(replayed.status)
        return replayed

    # -- pickling ------------------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        # The source's configuration without the tokens (a worker process gets its own).
        # A session of the user's is bound to its event loop and does not pickle.
        if self._endpoint.session is not None:
            raise TypeError(
                "an EmmaAiohttpMiddleware with session= cannot be pickled (aiohttp sessions "
                "cannot); make one in the worker process instead"
            )
        return (_restore, (self._token_source,))


def _restore(source: TokenSource) -> EmmaAiohttpMiddleware:
    middleware = EmmaAiohttpMiddleware.__new__(EmmaAiohttpMiddleware)
    middleware._attach(source, None)
    return middleware


def _check_session(session: object) -> None:
    if session is not None and not isinstance(session, aiohttp.ClientSession):
        raise ValueError(f"session must be an aiohttp.ClientSession, got {type(session).__name__}")
