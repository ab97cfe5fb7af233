"""``EmmaHttpxAuth`` and ``EmmaHttpx2Auth``: the token source (``_source/``) as an
``httpx.Auth`` (``httpx2.Auth``), for ``Client`` and ``AsyncClient``, asyncio and trio.

One flow, written once against the HTTP module the class names in ``_http`` (httpx2 is a
fork of httpx with the same public API, and its client refuses an auth that is not an
``httpx2.Auth``, so each module gets its subclass). The source holds the token; this module
adds the two flows httpx asks of an auth that does I/O or uses locks (``sync_auth_flow``,
``async_auth_flow``) and the token endpoints over the module's clients (``transport.py``).

Per request, a fresh token costs what it costs ``EmmaAuth``: an origin test, a clock reading
compared with the source's published deadline, and the ready-made header.

The 401 replay: httpx resends the request the flow yields again, so a 401 from the API's
origin for the token sent renews it (only if it is still the current one) and yields the
request once more with the new token. A body that httpx cannot send twice (a generator, a
file: anything but bytes in memory) is never replayed: the 401 is returned, and the token is
not sent again. A 403 never renews.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncGenerator, Generator
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from .._adapter import Adapter, TokenOptions, stack_error
from .._core.secret import secret_or_none
from .._errors import EmmaAuthError
from .._source import TokenSource

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # httpx brings typing_extensions (through anyio) on Python 3.10
    from typing_extensions import Unpack

if TYPE_CHECKING:
    from .._core.token import Token
    from .._telemetry import Replay

logger = logging.getLogger("requests_emma")


class HttpxFlows(Adapter):
    """What ``EmmaHttpxAuth`` and ``EmmaHttpx2Auth`` share: all of it but the base class
    and the HTTP module, which a subclass names: ``class X(HttpxFlows, httpx.Auth,
    http=httpx)``."""

    #: The HTTP module: httpx, or httpx2.
    _http: ClassVar[ModuleType]
    requires_request_body = False
    requires_response_body = False

    def __init_subclass__(cls, http: ModuleType | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if http is None:  # a user's subclass of EmmaHttpxAuth: its module stays
            return
        cls._http = http
        cls.clients = (
            ("client", http.Client, f"an {http.__name__}.Client"),
            ("async_client", http.AsyncClient, f"an {http.__name__}.AsyncClient"),
        )

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        client: Any = None,
        async_client: Any = None,
        **options: Unpack[TokenOptions],
    ) -> None:
        # First, as TokenSource does: no frame holds the secret in plain text for a traceback
        # of a configuration error (shown with its locals by pytest -l or Sentry) to show.
        secret = secret_or_none(client_secret)
        del client_secret
        source = self._new_source(client_id, secret, options)
        self._attach(source, {"client": client, "async_client": async_client})

    def _attach(self, source: TokenSource, clients: dict[str, Any]) -> None:
        super()._attach(source, clients)
        base = self._http.URL(source.base_url)
        self._scheme, self._host, self._port = base.scheme, base.host, base.port

    # -- what EmmaAuth offers too ------------------------------------------------------------

    def get_token(self) -> Token:
        """A usable token: the current one, or a new one fetched now over the sync client."""
        try:
            return self._token_source.usable(self._endpoint("sync")).token
        except EmmaAuthError as exc:
            raise self._error(exc) from exc.__cause__

    async def aget_token(self) -> Token:
        """A usable token: the current one, or a new one fetched now over the async client."""
        try:
            return (await self._token_source.ausable(self._endpoint("async"))).token
        except EmmaAuthError as exc:
            raise self._error(exc) from exc.__cause__

    def _error(self, exc: EmmaAuthError) -> EmmaAuthError:
        """``exc`` as an ``HTTPError`` of the HTTP module too."""
        return stack_error(exc, self._http.HTTPError, self._http.__name__.capitalize())

    # -- httpx's entry points ----------------------------------------------------------------

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        if not self._is_own_origin(request.url):
            yield request
            return
        source = self._token_source
        until, header = source.lifecycle.fresh
        try:
            if source.monotonic() >= until:
                header = source.usable(self._endpoint("sync")).header
            request.headers["Authorization"] = header
            response = yield request
            if not self._to_renew(request, response):
                return
            response.read()  # the 401's connection back to the pool before a token call
            renewed = source.renewed(request.headers.get("Authorization"), self._endpoint("sync"))
        except EmmaAuthError as exc:
            raise self._error(exc) from exc.__cause__
        if renewed is not None:
            with self._replaying(request, renewed) as record:
                response = yield request
                record.answered(response.status_code)

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        if not self._is_own_origin(request.url):
            yield request
            return
        source = self._token_source
        until, header = source.lifecycle.fresh
        try:
            if source.monotonic() >= until:
                header = (await source.ausable(self._endpoint("async"))).header
            request.headers["Authorization"] = header
            response = yield request
            if not self._to_renew(request, response):
                return
            await response.aread()  # the 401's connection back to the pool before a token call
            renewed = await source.arenewed(
                request.headers.get("Authorization"), self._endpoint("async")
            )
        except EmmaAuthError as exc:
            raise self._error(exc) from exc.__cause__
        if renewed is not None:
            with self._replaying(request, renewed) as record:
                response = yield request
                record.answered(response.status_code)

    def _replaying(self, request: Any, header: str) -> Replay:
        request.headers["Authorization"] = header
        logger.debug("API answered 401; replaying %s once with a renewed token", request.method)
        return self._token_source.telemetry().replay(request.method, str(request.url))

    def _is_own_origin(self, url: Any) -> bool:
        """Whether ``url`` is on the API's origin: scheme, host and port (httpx normalises a
        default port to ``None`` and the host to lower case), compared without building
        anything, as this runs on every request."""
        return bool(
            url.host == self._host and url.port == self._port and url.scheme == self._scheme
        )

    def _to_renew(self, request: Any, response: Any) -> bool:
        """Whether ``response`` is a 401 to renew and replay after: from the API's origin
        (not a redirect's elsewhere), for a body httpx can send again."""
        if response.status_code != 401 or not self._is_own_origin(response.request.url):
            return False
        if not isinstance(request.stream, self._http.ByteStream):
            self._token_source.cannot_replay(request.headers.get("Authorization"))
            return False
        return True

    # -- the token endpoints -----------------------------------------------------------------

    def _endpoint(self, kind: str) -> Any:
        """The ``kind`` ("sync" or "async") token endpoint, over the client given for it."""
        from . import transport

        source = self._token_source
        sync = kind == "sync"
        made = transport.HttpxTokenEndpoint if sync else transport.AsyncHttpxTokenEndpoint
        client = self._clients["client" if sync else "async_client"]
        return source.endpoint(
            self, kind, lambda: made(source.base_url, client, source.timeout, self._http)
        )
