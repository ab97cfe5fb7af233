"""The aiohttp contenders: client middlewares for ``aiohttp.ClientSession(middlewares=...)``.

Each builder returns an :class:`AiohttpContender`: the middleware to put on the session, how
to fetch its first token if the caller must, and what it cannot do.

- The floor, :func:`static_header`: a middleware that sets a fixed header.
- aiohttp's client middleware cookbook (docs/client_middleware_cookbook.rst, its code in
  docs/code/client_middleware_cookbook.py, aiohttp 3.12 to 4.0), the two token middlewares
  it shows, as written there but for emma's token call (issue-token's JSON body to
  ``{base_url}/v1/issue-token``, and ``accessToken`` / ``expiresIn`` out, where the cookbook
  posts a refresh token to ``https://api.example/refresh``):

  - ``TokenRefresh401Middleware``: sends the current token; on a 401 takes an
    ``asyncio.Lock``, fetches a new token unless another task did, and sends again, for
    any body (it does not look at whether the body can be sent again). Its token call goes
    through ``req.session``, so through the session's middlewares: itself (it adds the old
    token to its own token call). The caller gives it its first token.
  - ``TokenRefreshExpiryMiddleware``: fetches a token under the lock when ``time.time()``
    passed its expiry (no margin), then sends. As written, its token call through
    ``req.session`` enters the middleware again, which finds the token still expired and
    waits for the lock its caller holds: the first request never ends. The one change made
    here is ``middlewares=()`` on that call (what the same page does for its logging
    middleware), so that it can be measured at all.

- requests-emma's ``EmmaAiohttpMiddleware``, when ``requests_emma.aiohttp`` can be imported.

For ``bench_httpx.py``'s sections, ``AIOHTTP`` is the stack: each contender's client is a
:class:`Session`, an ``aiohttp.ClientSession`` with the middleware, used as those sections use
an ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import importlib.metadata
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
from peers_httpx import AsyncContender, Stack
from typing_extensions import Self

EMMA = "requests-emma"

Middleware = Callable[
    [aiohttp.ClientRequest, aiohttp.ClientHandlerType], Awaitable[aiohttp.ClientResponse]
]


class TokenServer(Protocol):
    """What a contender needs of the server (``_harness.Server``, or a FakeEmmaServer)."""

    base_url: str
    client_id: str
    client_secret: str


@dataclasses.dataclass
class AiohttpContender:
    name: str
    middleware: Middleware
    #: Fetches the first token if the middleware wants the caller to (the 401 cookbook one).
    fetch_first: Callable[[], Awaitable[object]] | None = None
    renews: bool = True  # renews an expiring token by itself
    refreshes_on_401: bool = True


def static_header(token: str) -> AiohttpContender:
    header = f"Bearer {token}"

    async def middleware(
        req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        req.headers["Authorization"] = header
        return await handler(req)

    return AiohttpContender("static header", middleware, renews=False, refreshes_on_401=False)


def _issue_token_body(server: TokenServer) -> dict[str, str]:
    return {"clientId": server.client_id, "clientSecret": server.client_secret}


def _issue_token_url(server: TokenServer) -> str:
    return server.base_url.rstrip("/") + "/v1/issue-token"


class TokenRefresh401Middleware:
    """The cookbook's, with emma's token call in place of its refresh call."""

    def __init__(self, server: TokenServer, access_token: str) -> None:
        self.access_token = access_token
        self.server = server
        self.lock = asyncio.Lock()

    async def __call__(
        self, req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        for _ in range(2):  # Retry at most one time
            token = self.access_token
            req.headers["Authorization"] = f"Bearer {token}"
            resp = await handler(req)
            if resp.status != 401:
                return resp
            async with self.lock:
                if token != self.access_token:  # Already refreshed
                    continue
                url = _issue_token_url(self.server)
                async with req.session.post(url, json=_issue_token_body(self.server)) as resp:
                    # Add error handling as needed
                    data = await resp.json()
                    self.access_token = data["accessToken"]
        return resp


class TokenRefreshExpiryMiddleware:
    """The cookbook's, with emma's token call in place of its refresh call, made with
    ``middlewares=()`` (as written it waits for itself: see the module docstring)."""

    def __init__(self, server: TokenServer) -> None:
        self.access_token = ""
        self.expires_at = 0.0
        self.server = server
        self.lock = asyncio.Lock()

    async def __call__(
        self, req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if self.expires_at <= time.time():
            token = self.access_token
            async with self.lock:
                if token == self.access_token:  # Still not refreshed
                    url = _issue_token_url(self.server)
                    async with req.session.post(
                        url, json=_issue_token_body(self.server), middlewares=()
                    ) as resp:
                        # Add error handling as needed
                        data = await resp.json()
                        self.access_token = data["accessToken"]
                        # emma sends a lifetime, the cookbook's server an absolute time.
                        self.expires_at = time.time() + data["expiresIn"]

        req.headers["Authorization"] = f"Bearer {self.access_token}"
        return await handler(req)


def cookbook_401(server: TokenServer) -> AiohttpContender:
    middleware = TokenRefresh401Middleware(server, access_token="")

    async def fetch_first() -> object:
        body = _issue_token_body(server)
        async with (
            aiohttp.ClientSession() as session,
            session.post(_issue_token_url(server), json=body) as resp,
        ):
            middleware.access_token = (await resp.json())["accessToken"]
        return middleware.access_token

    return AiohttpContender(
        "cookbook, on 401",
        middleware,
        fetch_first=fetch_first,
        renews=False,
    )


def cookbook_expiry(server: TokenServer) -> AiohttpContender:
    return AiohttpContender(
        "cookbook, on expiry",
        TokenRefreshExpiryMiddleware(server),
        refreshes_on_401=False,
    )


def emma_missing() -> str | None:
    """Why ``EmmaAiohttpMiddleware`` cannot be measured, or ``None`` if it can."""
    version = importlib.metadata.version("requests-emma")
    try:
        module = importlib.import_module("requests_emma.aiohttp")
    except ImportError as exc:
        return f"`import requests_emma.aiohttp` failed: {exc} (requests-emma {version})"
    if not hasattr(module, "EmmaAiohttpMiddleware"):
        return f"requests_emma.aiohttp has no EmmaAiohttpMiddleware (requests-emma {version})"
    return None


def emma(server: TokenServer, middleware: Any = None) -> AiohttpContender:
    """``middleware``: an ``EmmaAiohttpMiddleware`` to reuse (one that holds a token)."""
    if middleware is None:
        from requests_emma.aiohttp import EmmaAiohttpMiddleware

        middleware = EmmaAiohttpMiddleware(
            server.client_id, server.client_secret, base_url=server.base_url
        )
    return AiohttpContender(EMMA, middleware)


Builder = Callable[[], AiohttpContender]


def renewing(server: TokenServer) -> dict[str, Builder]:
    """The contenders that get tokens themselves, by name."""
    builders: dict[str, Builder] = {
        "cookbook, on 401": lambda: cookbook_401(server),
        "cookbook, on expiry": lambda: cookbook_expiry(server),
    }
    if emma_missing() is None:
        builders[EMMA] = lambda: emma(server)
    return builders


# -- as bench_httpx.py's sections use a client ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    status_code: int


class Session:
    """An ``aiohttp.ClientSession`` with one middleware, used as the sections use an
    ``httpx.AsyncClient``: ``await get(url)`` (the body read, the connection back in the pool),
    ``aclose()``, ``async with``. The session is made on first use, inside the event loop
    that runs the requests (aiohttp binds a session to its loop); ``connections`` keep-alive
    connections at most (``TCPConnector(limit=...)``)."""

    def __init__(
        self, middleware: Middleware, *, connections: int = 100, timeout: float | None = None
    ) -> None:
        self.middleware = middleware
        self.connections = connections
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                middlewares=(self.middleware,),
                connector=aiohttp.TCPConnector(limit=self.connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def get(self, url: str, *, auth: object = True) -> Answer:
        """``auth=None``: no middleware (httpx's ``auth=None``), for the server's counters."""
        options: dict[str, Any] = {} if auth is not None else {"middlewares": ()}
        async with self._open().get(url, **options) as response:
            await response.read()
            return Answer(response.status)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _contender(build: Callable[[], AiohttpContender], **options: Any) -> AsyncContender:
    made = build()
    return AsyncContender(
        made.name,
        Session(made.middleware, **options),
        None,  # no flow step: aiohttp has no auth flow to drive without a request
        fetch_first=made.fetch_first,
        renews=made.renews,
        refreshes_on_401=made.refreshes_on_401,
    )


def _options(connections: int, timeout: float | None = None) -> dict[str, Any]:
    return {"connections": connections, "timeout": timeout}


def _renewing(server: TokenServer, lifetime: float) -> dict[str, Any]:
    # The cookbook's middlewares have no margin to set: they renew on expiry or on a 401.
    return {name: functools.partial(_contender, build) for name, build in renewing(server).items()}


AIOHTTP = Stack(
    name="aiohttp",
    client="`aiohttp.ClientSession`",
    emma=EMMA,
    emma_class="EmmaAiohttpMiddleware",
    emma_missing=emma_missing,
    static_header=lambda token, **options: _contender(lambda: static_header(token), **options),
    renewing=_renewing,  # type: ignore[arg-type]
    options=_options,
)
