"""The aiohttp contenders: client middlewares for ``aiohttp.ClientSession(middlewares=...)``.

Each builder returns an :class:`AiohttpContender`: the middleware to put on the session, how
to fetch its first token if the caller must, and what it cannot do.

- The floor, :func:`static_header`: a middleware that sets a fixed header.
- aiohttp's client middleware cookbook (docs/client_middleware_cookbook.rst, its code in
  docs/code/client_middleware_cookbook.py, aiohttp 3.12 to 4.0), the two token middlewares
  it shows, as written there but for emma's token call (issue-token's JSON body in, and
  ``accessToken`` / ``expiresIn`` out, where the cookbook posts a refresh token to
  ``https://api.example/refresh``):

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
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.metadata
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

EMMA = "requests-emma EmmaAiohttpMiddleware"

Middleware = Callable[
    [aiohttp.ClientRequest, aiohttp.ClientHandlerType], Awaitable[aiohttp.ClientResponse]
]


class TokenServer(Protocol):
    """What a contender needs of the server (``_harness.Server``, or a FakeEmmaServer with a
    ``token_url``)."""

    base_url: str
    client_id: str
    client_secret: str
    token_url: str


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
                url = self.server.token_url
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
                    url = self.server.token_url
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
            session.post(server.token_url, json=body) as resp,
        ):
            middleware.access_token = (await resp.json())["accessToken"]
        return middleware.access_token

    return AiohttpContender(
        "aiohttp cookbook TokenRefresh401Middleware",
        middleware,
        fetch_first=fetch_first,
        renews=False,
    )


def cookbook_expiry(server: TokenServer) -> AiohttpContender:
    return AiohttpContender(
        "aiohttp cookbook TokenRefreshExpiryMiddleware",
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
        "aiohttp cookbook TokenRefresh401Middleware": lambda: cookbook_401(server),
        "aiohttp cookbook TokenRefreshExpiryMiddleware": lambda: cookbook_expiry(server),
    }
    if emma_missing() is None:
        builders[EMMA] = lambda: emma(server)
    return builders
