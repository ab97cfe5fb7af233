"""The httpx contenders, each set up as its own documentation shows for the client-credentials
grant, on ``httpx.AsyncClient``.

Each builder returns an :class:`AsyncContender`: the ``httpx.AsyncClient`` (or the library's
own subclass) to send API requests with, its per-request auth step (what the client runs
for each request, to be timed without network), and what the library cannot do.

- The floor, :class:`StaticBearer`: an ``httpx.Auth`` whose ``auth_flow`` sets a fixed
  header, as httpx's documentation shows custom auth. Its ``async_auth_flow`` is httpx's
  default, which drives ``auth_flow``.
- httpx-auth's ``OAuth2ClientCredentials`` (its README: ``auth=OAuth2ClientCredentials(
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
  It does not renew on a 401.
- requests-emma's ``EmmaHttpxAuth``, when ``requests_emma.httpx`` can be imported.

Where a library has a knob for how early it renews (httpx-auth ``early_expiry``, authlib
``leeway``), it gets the margin EmmaAuth uses by default (a fifth of the lifetime, at most
60 s), as in ``peers.py``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import warnings
from collections.abc import Awaitable, Callable, Generator

import httpx
from _harness import Server
from peers import margin_for

#: The one request step of a contender, timed without network: the auth flow for one
#: request, driven as ``AsyncClient`` drives it, answered by ``response``.
Step = Callable[[httpx.Request, httpx.Response], Awaitable[None]]

EMMA = "requests-emma EmmaHttpxAuth"


class StaticBearer(httpx.Auth):
    """The floor: a fixed ``Authorization`` header, nothing checked."""

    def __init__(self, token: str) -> None:
        self.header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.header
        yield request


@dataclasses.dataclass
class AsyncContender:
    name: str
    client: httpx.AsyncClient
    step: Step
    #: Fetches the first token if the library wants the caller to (authlib).
    fetch_first: Callable[[], Awaitable[object]] | None = None
    renews: bool = True  # renews an expiring token by itself
    refreshes_on_401: bool = True


async def drive_flow(auth: httpx.Auth, request: httpx.Request, response: httpx.Response) -> None:
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


def _auth_step(auth: httpx.Auth) -> Step:
    async def step(request: httpx.Request, response: httpx.Response) -> None:
        await drive_flow(auth, request, response)

    return step


def limits(connections: int) -> httpx.Limits:
    """A keep-alive pool of ``connections`` (httpx keeps 20 by default)."""
    return httpx.Limits(max_connections=connections, max_keepalive_connections=connections)


def static_header(token: str, **client: object) -> AsyncContender:
    auth = StaticBearer(token)
    return AsyncContender(
        "static header",
        httpx.AsyncClient(auth=auth, **client),  # type: ignore[arg-type]
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


def _authlib_client_class() -> type:
    # authlib 1.9 looks for httpx2 first and falls back on httpx (which these benchmarks
    # measure) with a deprecation warning; the warning says nothing about the measurement.
    from authlib.deprecate import AuthlibDeprecationWarning  # installs an "always" filter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AuthlibDeprecationWarning)
        from authlib.integrations.httpx_client import AsyncOAuth2Client
    return AsyncOAuth2Client  # type: ignore[no-any-return]


def authlib(
    server: Server, lifetime: float, *, token: object = None, **client: object
) -> AsyncContender:
    """``token``: a token fetched by another authlib client, for one whose transport does not
    reach the token endpoint (the in-process transport)."""
    session = _authlib_client_class()(
        server.client_id,
        server.client_secret,
        token_endpoint=server.token_url,
        grant_type="client_credentials",
        leeway=margin_for(lifetime),
        token=token,
        **client,
    )

    async def step(request: httpx.Request, response: httpx.Response) -> None:
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


def emma_missing() -> str | None:
    """Why ``EmmaHttpxAuth`` cannot be measured, or ``None`` if it can."""
    version = importlib.metadata.version("requests-emma")
    try:
        module = importlib.import_module("requests_emma.httpx")
    except ModuleNotFoundError as exc:
        if exc.name == "requests_emma.httpx":
            return f"not installed in this version (requests-emma {version})"
        return f"`import requests_emma.httpx` failed: {exc}"
    except ImportError as exc:
        return f"`import requests_emma.httpx` failed: {exc}"
    if not hasattr(module, "EmmaHttpxAuth"):
        return f"requests_emma.httpx has no EmmaHttpxAuth (requests-emma {version})"
    return None


def emma(server: Server, auth: httpx.Auth | None = None, **client: object) -> AsyncContender:
    """``auth``: an ``EmmaHttpxAuth`` to reuse (one that holds a token already)."""
    if auth is None:
        from requests_emma.httpx import EmmaHttpxAuth  # type: ignore[import-not-found]

        auth = EmmaHttpxAuth(server.client_id, server.client_secret, base_url=server.base_url)
    return AsyncContender(
        EMMA,
        httpx.AsyncClient(auth=auth, **client),  # type: ignore[arg-type]
        _auth_step(auth),
    )


Builder = Callable[..., AsyncContender]


def renewing(server: Server, lifetime: float) -> dict[str, Builder]:
    """The contenders that get tokens themselves, by name: builders taking client options."""
    builders: dict[str, Builder] = {
        "httpx-auth OAuth2ClientCredentials": lambda **c: httpx_auth(server, lifetime, **c),
        "authlib AsyncOAuth2Client": lambda **c: authlib(server, lifetime, **c),
    }
    if emma_missing() is None:
        builders[EMMA] = lambda **c: emma(server, **c)
    return builders
