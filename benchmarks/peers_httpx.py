"""The httpx and httpx2 contenders, each set up as its own documentation shows for the
client-credentials grant, on ``httpx.AsyncClient`` or its fork's ``httpx2.AsyncClient``: the
HTTP module is a parameter (a :class:`Stack`, ``HTTPX`` or ``HTTPX2``), as it is of
requests-emma's own flow.

Each builder returns an :class:`AsyncContender`: the ``httpx.AsyncClient`` (or the library's
own subclass) to send API requests with, its per-request auth step (what the client runs
for each request, to be timed without network), and what the library cannot do.

- The floor, ``StaticBearer``: an ``httpx.Auth`` (``httpx2.Auth``) whose ``auth_flow`` sets a
  fixed header, as httpx's documentation shows custom auth. Its ``async_auth_flow`` is
  httpx's default, which drives ``auth_flow``.
- httpx only: httpx-auth's ``OAuth2ClientCredentials`` (its README: ``auth=OAuth2ClientCredentials(
  token_url, client_id=..., client_secret=...)``). It implements ``auth_flow`` only: on
  ``AsyncClient`` httpx's default ``async_auth_flow`` runs it, so its token call is a
  blocking ``httpx.Client`` call made inside the event loop. Its token cache is global
  (``OAuth2.token_cache``) and is cleared for each new contender. It renews an expiring
  token, not on a 401.
- authlib's ``AsyncOAuth2Client`` with ``token_endpoint`` and
  ``grant_type="client_credentials"`` (its "OAuth 2 Session" guide, shared with the requests
  ``OAuth2Session``): the caller fetches the first token (``fetch_token()``); before each
  request, ``request()`` awaits ``ensure_active_token`` (an anyio ``Lock``, then a fresh
  token if the current one is within ``leeway`` of expiry) and sends with ``token_auth``.
  It does not renew on a 401. authlib 1.9 builds on httpx2 when it is installed and falls
  back on httpx (deprecated) when not; for the httpx stack its client is imported as a user
  without httpx2 gets it (see ``_authlib_client_class``).
- requests-emma's ``EmmaHttpxAuth`` (``EmmaHttpx2Auth``), when ``requests_emma.httpx``
  (``requests_emma.httpx2``) can be imported.

Where a library has a knob for how early it renews (httpx-auth ``early_expiry``, authlib
``leeway``), it gets the margin EmmaAuth uses by default (a fifth of the lifetime, at most
60 s), as in ``peers.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import importlib.util
import sys
import warnings
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import httpx2
from _harness import Server
from peers import margin_for

#: The one request step of a contender, timed without network: the auth flow for one
#: request, driven as ``AsyncClient`` drives it, answered by ``response``.
Step = Callable[[Any, Any], Awaitable[None]]


@functools.cache
def static_bearer_class(http: ModuleType) -> type:
    """The floor for ``http``'s clients (``httpx2.Client`` refuses an ``httpx.Auth``)."""

    class StaticBearer(http.Auth):  # type: ignore[name-defined,misc]
        """The floor: a fixed ``Authorization`` header, nothing checked."""

        def __init__(self, token: str) -> None:
            self.header = f"Bearer {token}"

        def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
            request.headers["Authorization"] = self.header
            yield request

    return StaticBearer


StaticBearer = static_bearer_class(httpx)


@dataclasses.dataclass
class AsyncContender:
    name: str
    client: Any  # an httpx.AsyncClient, an httpx2.AsyncClient, or peers_aiohttp.Session
    step: Step | None
    #: Fetches the first token if the library wants the caller to (authlib).
    fetch_first: Callable[[], Awaitable[object]] | None = None
    renews: bool = True  # renews an expiring token by itself
    refreshes_on_401: bool = True


Builder = Callable[..., AsyncContender]


@dataclasses.dataclass(frozen=True)
class Stack:
    """An async HTTP client the sections run on, and its contenders.

    ``name`` titles the sections ("httpx: ..."); ``emma`` names requests-emma's contender,
    ``emma_class`` its class in targets. ``static_header(token, **options)`` and
    ``renewing(server, lifetime)`` build contenders from client ``options(connections,
    timeout)``; ``http`` is the httpx-like module, for the flow step (``None``: no flow).
    """

    name: str
    client: str  # how the intros name the client, Markdown
    emma: str
    emma_class: str
    emma_missing: Callable[[], str | None]
    static_header: Callable[..., AsyncContender]
    renewing: Callable[[Server, float], dict[str, Builder]]
    options: Callable[..., dict[str, Any]]
    backends: tuple[str, ...] = ("asyncio",)
    http: ModuleType | None = None


async def drive_flow(auth: Any, request: Any, response: Any) -> None:
    """One request through ``auth``'s async flow, as ``AsyncClient._send_handling_auth`` runs
    it: the request to send, then the response sent back (which ends the flow on a 200),
    then ``aclose``."""
    flow = auth.async_auth_flow(request)
    try:
        await flow.__anext__()
        try:
            await flow.asend(response)
        except StopAsyncIteration:
            return
        raise RuntimeError(f"{type(auth).__name__} sent a second request after a 200")
    finally:
        await flow.aclose()


def _auth_step(auth: Any) -> Step:
    async def step(request: Any, response: Any) -> None:
        await drive_flow(auth, request, response)

    return step


def limits(connections: int, http: ModuleType = httpx) -> Any:
    """A keep-alive pool of ``connections`` (httpx keeps 20 by default)."""
    return http.Limits(max_connections=connections, max_keepalive_connections=connections)


def _options(http: ModuleType, connections: int, timeout: float | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {"limits": limits(connections, http)}
    if timeout is not None:
        options["timeout"] = http.Timeout(timeout)
    return options


def static_header(token: str, http: ModuleType = httpx, **client: object) -> AsyncContender:
    auth = static_bearer_class(http)(token)
    return AsyncContender(
        "static header",
        http.AsyncClient(auth=auth, **client),
        _auth_step(auth),
        renews=False,
        refreshes_on_401=False,
    )


def httpx_auth(server: Server, lifetime: float, **client: object) -> AsyncContender:
    import httpx_auth as ha

    ha.OAuth2.token_cache.clear()  # its cache is global: start each contender cold
    auth = ha.OAuth2ClientCredentials(
        server.token_url,
        client_id=server.client_id,
        client_secret=server.client_secret,
        early_expiry=margin_for(lifetime),
    )
    return AsyncContender(
        "httpx-auth OAuth2ClientCredentials",
        httpx.AsyncClient(auth=auth, **client),  # type: ignore[arg-type]
        _auth_step(auth),
        refreshes_on_401=False,
    )


@functools.cache
def _authlib_client_class(http: ModuleType) -> type:
    """authlib's ``AsyncOAuth2Client`` on ``http``.

    authlib 1.9 picks its HTTP module once, at import (``integrations/httpx_client/
    _compat.py``): httpx2 if importable, else httpx with a deprecation warning. For httpx its
    package is loaded a second time, under another name, with httpx2 hidden while it
    loads: the client a user without httpx2 gets.
    """
    # Imported first: it installs an "always" filter for its deprecation warnings.
    from authlib.deprecate import AuthlibDeprecationWarning
    from authlib.integrations import httpx_client

    if issubclass(httpx_client.AsyncOAuth2Client, http.AsyncClient):
        return httpx_client.AsyncOAuth2Client  # type: ignore[no-any-return]
    name = "authlib.integrations._httpx_client_on_httpx"
    folder = Path(httpx_client.__file__).parent
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    hidden = sys.modules.get("httpx2")
    sys.modules["httpx2"] = None  # type: ignore[assignment]  # "import httpx2" fails
    sys.modules[name] = module
    try:
        with warnings.catch_warnings():
            # The fallback's deprecation warning says nothing about the measurement.
            warnings.simplefilter("ignore", AuthlibDeprecationWarning)
            spec.loader.exec_module(module)
    finally:
        if hidden is None:
            del sys.modules["httpx2"]
        else:
            sys.modules["httpx2"] = hidden
    client_class: type = module.AsyncOAuth2Client
    if not issubclass(client_class, http.AsyncClient):
        raise TypeError(f"authlib's AsyncOAuth2Client is not an {http.__name__} client")
    return client_class


def authlib(
    server: Server,
    lifetime: float,
    *,
    token: object = None,
    http: ModuleType = httpx,
    **client: object,
) -> AsyncContender:
    """``token``: a token fetched by another authlib client, for one whose transport does not
    reach the token endpoint (the in-process transport)."""
    session = _authlib_client_class(http)(
        server.client_id,
        server.client_secret,
        token_endpoint=server.token_url,
        grant_type="client_credentials",
        leeway=margin_for(lifetime),
        token=token,
        **client,
    )

    async def step(request: Any, response: Any) -> None:
        # What AsyncOAuth2Client.request does before sending, then its token_auth's flow.
        await session.ensure_active_token(session.token)
        await drive_flow(session.token_auth, request, response)

    return AsyncContender(
        "authlib AsyncOAuth2Client",
        session,
        step,
        fetch_first=session.fetch_token,
        refreshes_on_401=False,
    )


def emma_missing(module: str = "requests_emma.httpx", cls: str = "EmmaHttpxAuth") -> str | None:
    """Why ``cls`` cannot be measured, or ``None`` if it can."""
    version = importlib.metadata.version("requests-emma")
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return f"not installed in this version (requests-emma {version})"
        return f"`import {module}` failed: {exc}"
    except ImportError as exc:
        return f"`import {module}` failed: {exc}"
    if not hasattr(found, cls):
        return f"{module} has no {cls} (requests-emma {version})"
    return None


def emma(
    server: Server, auth: Any = None, *, stack: Stack | None = None, **client: object
) -> AsyncContender:
    """``auth``: an ``EmmaHttpxAuth`` (``EmmaHttpx2Auth``) to reuse (one that holds a
    token already)."""
    stack = stack or HTTPX
    assert stack.http is not None
    if auth is None:
        module = importlib.import_module(f"requests_emma.{stack.http.__name__}")
        cls = getattr(module, stack.emma_class)
        auth = cls(server.client_id, server.client_secret, base_url=server.base_url)
    return AsyncContender(stack.emma, stack.http.AsyncClient(auth=auth, **client), _auth_step(auth))


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _renewing(stack: Stack, server: Server, lifetime: float) -> dict[str, Builder]:
    """The contenders that get tokens themselves, by name: builders taking client options.
    A peer library that is not installed is left out (the page lists the versions)."""
    http = stack.http
    builders: dict[str, Builder] = {}
    if http is httpx and _installed("httpx-auth"):
        builders["httpx-auth OAuth2ClientCredentials"] = lambda **c: httpx_auth(
            server, lifetime, **c
        )
    if _installed("authlib"):
        builders["authlib AsyncOAuth2Client"] = lambda **c: authlib(
            server, lifetime, http=http, **c
        )
    if stack.emma_missing() is None:
        builders[stack.emma] = lambda **c: emma(server, stack=stack, **c)
    return builders


HTTPX: Stack = Stack(
    name="httpx",
    client="`httpx.AsyncClient`",
    emma="requests-emma EmmaHttpxAuth",
    emma_class="EmmaHttpxAuth",
    emma_missing=emma_missing,
    static_header=lambda token, **c: static_header(token, httpx, **c),
    renewing=lambda server, lifetime: _renewing(HTTPX, server, lifetime),
    options=functools.partial(_options, httpx),
    backends=("asyncio", "trio"),
    http=httpx,
)
HTTPX2: Stack = Stack(
    name="httpx2",
    client="`httpx2.AsyncClient`",
    emma="requests-emma EmmaHttpx2Auth",
    emma_class="EmmaHttpx2Auth",
    emma_missing=lambda: emma_missing("requests_emma.httpx2", "EmmaHttpx2Auth"),
    static_header=lambda token, **c: static_header(token, httpx2, **c),
    renewing=lambda server, lifetime: _renewing(HTTPX2, server, lifetime),
    options=functools.partial(_options, httpx2),
    backends=("asyncio", "trio"),
    http=httpx2,
)
EMMA = HTTPX.emma


def renewing(server: Server, lifetime: float) -> dict[str, Builder]:
    """httpx's contenders that get tokens themselves (``HTTPX.renewing``)."""
    return HTTPX.renewing(server, lifetime)
