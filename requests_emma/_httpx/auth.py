"""``EmmaHttpxAuth``: the token lifecycle as an ``httpx.Auth``, for ``httpx.Client`` and
``httpx.AsyncClient``.

A thin shell, as ``EmmaAuth`` is for requests, over the same core: the lifecycle decides, the
coordinator keeps one renewal in flight, the renewal's steps run on a driver. The token
itself is held by an ``EmmaAuth`` (its *source*): one made from the same arguments, or the
one given to :meth:`EmmaHttpxAuth.sharing`, so that requests code and httpx code, threads and
event loops, share one token and one renewal at a time. What this module adds is the two
flows httpx asks of an auth that does I/O or uses locks (``sync_auth_flow``,
``async_auth_flow``) and the drivers they renew through:

- sync: the blocking driver (``_requests/renewal.py``) over ``httpx.Client``
  (:class:`~._httpx.transport.HttpxTokenEndpoint`), in the calling thread; early renewals on
  a thread of their own, as ``EmmaAuth`` runs them;
- async: the async driver (``async_driver.py``) over ``httpx.AsyncClient``, on the event
  loop, never blocking it. A task that starts a renewal runs it in a shielded cancel scope:
  its own cancellation waits until the renewal has landed, so the other tasks waiting for it
  are never left without one. Early renewals run as a task of their own (asyncio: held in a
  set until done; trio: a system task, ended with the run), and no request waits for them.

Per request, a fresh token costs what it costs ``EmmaAuth``: an origin test, a clock reading
compared with the lifecycle's published deadline, and the ready-made header.

The 401 replay: httpx resends the request the flow yields again, so a 401 from the API's
origin for the token sent renews it (only if it is still the current one) and yields the
request once more with the new token. A body that httpx cannot send twice (a generator, a
file: anything but bytes in memory) is never replayed: the 401 is returned, and the token is
not sent again. A 403 never renews.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING, Any

import httpx

from .._caches.protocol import TokenCache
from .._core.lifecycle import FIRST_USE, Freshness
from .._core.retry_policy import RetryPolicy
from .._core.secret import Secret, secret_or_none
from .._core.token import Token
from .._core.token_status import TokenStatus
from .._errors import EmmaAuthError
from .._requests.auth import EmmaAuth
from .._requests.coordinator import Coordinator, Flight, shared_error
from .._requests.replay import bearer_token
from .errors import for_httpx

if TYPE_CHECKING:
    from .._core.lifecycle import _Held
    from .._requests.renewal import Renewer
    from .transport import AsyncHttpxTokenEndpoint

logger = logging.getLogger("requests_emma")


class EmmaHttpxAuth(httpx.Auth):
    """Authenticates ``httpx`` requests to the emma API with a self-renewing bearer token.

    Takes ``EmmaAuth``'s arguments, with the same defaults (``EMMA_CLIENT_ID``,
    ``EMMA_CLIENT_SECRET``, ``EMMA_API_URL``), except that token calls go through httpx:
    ``client`` (an ``httpx.Client``) and ``async_client`` (an ``httpx.AsyncClient``) carry
    them, for proxies and TLS, instead of ``session``; without them a private client is
    used. Their auth, event hooks, headers and cookies are never applied to a token call.
    Works with ``httpx.Client`` and ``httpx.AsyncClient``, under asyncio and trio.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        base_url: str | None = None,
        refresh_margin: float | None = None,
        timeout: float | tuple[float, float] = (3.05, 10.0),
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
        on_token: Callable[[Token], object] | None = None,
        retry: RetryPolicy | None = None,
        token_cache: TokenCache | None = None,
    ) -> None:
        secret = secret_or_none(client_secret)  # no frame holds it in plain text from here
        del client_secret
        _check_clients(client, async_client)
        source = EmmaAuth(
            client_id,
            secret,  # type: ignore[arg-type]  # EmmaAuth takes the wrapped secret as it is
            base_url=base_url,
            refresh_margin=refresh_margin,
            timeout=timeout,
            on_token=on_token,
            retry=retry,
            token_cache=token_cache,
        )
        self._attach(source, client, async_client)

    @classmethod
    def sharing(
        cls,
        auth: EmmaAuth,
        *,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
    ) -> EmmaHttpxAuth:
        """An httpx auth backed by ``auth``'s token: one token, one renewal at a time,
        whichever side (requests or httpx, a thread or a task) needs it first."""
        if not isinstance(auth, EmmaAuth):
            raise TypeError(f"EmmaHttpxAuth.sharing() takes an EmmaAuth, got {type(auth).__name__}")
        _check_clients(client, async_client)
        shell = cls.__new__(cls)
        shell._attach(auth, client, async_client)
        return shell

    def _attach(
        self, source: EmmaAuth, client: httpx.Client | None, async_client: httpx.AsyncClient | None
    ) -> None:
        self._source = source
        self._client = client
        self._async_client = async_client
        base = httpx.URL(source.base_url)
        self._scheme, self._host, self._port = base.scheme, base.host, base.port
        self._sync_renewer: Renewer | None = None
        self._async_endpoint: AsyncHttpxTokenEndpoint | None = None
        self._early_tasks: set[Any] = set()  # asyncio tasks, held until done

    # -- what EmmaAuth offers too ------------------------------------------------------------

    @property
    def auth(self) -> EmmaAuth:
        """The ``EmmaAuth`` that holds the token (for requests code sharing it)."""
        return self._source

    @property
    def base_url(self) -> str:
        """The API base URL, without a trailing slash."""
        return self._source.base_url

    def get_token(self) -> Token:
        """A usable token: the current one, or a new one fetched now over ``httpx.Client``."""
        try:
            return self._source._usable(self._renewer()).token
        except EmmaAuthError as exc:
            raise for_httpx(exc) from exc.__cause__

    async def aget_token(self) -> Token:
        """A usable token: the current one, or a new one fetched now over
        ``httpx.AsyncClient``."""
        try:
            return (await self._ausable()).token
        except EmmaAuthError as exc:
            raise for_httpx(exc) from exc.__cause__

    def status(self) -> TokenStatus:
        """The token's state now, for health checks (see ``EmmaAuth.status``)."""
        return self._source.status()

    def __reduce__(self) -> tuple[Any, tuple[EmmaAuth]]:
        # As EmmaAuth pickles: the configuration without the tokens (a worker process gets
        # its own). A client of the user's (client=, async_client=) does not pickle.
        if self._client is not None or self._async_client is not None:
            raise TypeError(
                "an EmmaHttpxAuth with client= or async_client= cannot be pickled (httpx "
                "clients cannot); make one in the worker process instead"
            )
        return (EmmaHttpxAuth.sharing, (self._source,))

    def __repr__(self) -> str:
        source = getattr(self, "_source", None)
        return f"EmmaHttpxAuth({source!r})" if source is not None else "EmmaHttpxAuth(<unset>)"

    # -- httpx's entry points ----------------------------------------------------------------

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        url = request.url
        if not self._is_own_origin(url):
            yield request
            return
        source = self._source
        until, header = source._lifecycle.fresh
        try:
            if source._monotonic() >= until:
                header = source._usable(self._renewer()).header
            request.headers["Authorization"] = header
            response = yield request
            rejected = self._to_renew(request, response)
            if rejected is None:
                return
            held = source._renew_waiting(rejected, self._renewer())
        except EmmaAuthError as exc:
            raise for_httpx(exc) from exc.__cause__
        request.headers["Authorization"] = held.header
        logger.debug("API answered 401; replaying %s once with a renewed token", request.method)
        with source._telemetry().replay(request.method, str(request.url)) as record:
            response = yield request
            record.answered(response.status_code)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        url = request.url
        if not self._is_own_origin(url):
            yield request
            return
        source = self._source
        until, header = source._lifecycle.fresh
        try:
            if source._monotonic() >= until:
                header = (await self._ausable()).header
            request.headers["Authorization"] = header
            response = yield request
            rejected = self._to_renew(request, response)
            if rejected is None:
                return
            held = await self._arenew_waiting(rejected)
        except EmmaAuthError as exc:
            raise for_httpx(exc) from exc.__cause__
        request.headers["Authorization"] = held.header
        logger.debug("API answered 401; replaying %s once with a renewed token", request.method)
        with source._telemetry().replay(request.method, str(request.url)) as record:
            response = yield request
            record.answered(response.status_code)

    def _is_own_origin(self, url: httpx.URL) -> bool:
        """Whether ``url`` is on the API's origin: scheme, host and port (httpx normalises a
        default port to ``None`` and the host to lower case), compared without building
        anything, as this runs on every request."""
        return url.host == self._host and url.port == self._port and url.scheme == self._scheme

    def _to_renew(self, request: httpx.Request, response: httpx.Response) -> Secret | None:
        """The token to renew after ``response``, if it is a 401 to be replayed: from the
        API's origin (not a redirect's elsewhere), for a body httpx can send again."""
        if response.status_code != 401:
            return None
        url = response.request.url
        if not self._is_own_origin(url):
            return None  # a redirect took it elsewhere: our token was not sent there
        rejected = bearer_token(request.headers.get("Authorization"))
        if rejected is None:
            return None
        if not isinstance(request.stream, httpx.ByteStream):
            logger.debug("401 not replayed: the request body cannot be sent again")
            source = self._source
            with source._coordinator.lock:  # but the token is not sent again
                source._lifecycle.reject(rejected.reveal())
            return None
        return rejected

    # -- the sync driver ----------------------------------------------------------------------

    def _renewer(self) -> Renewer:
        renewer = self._sync_renewer
        if renewer is None:
            from .transport import HttpxTokenEndpoint

            source = self._source
            endpoint = HttpxTokenEndpoint(source.base_url, self._client, source._renewer_args[1])
            renewer = self._sync_renewer = source._renewer_for(endpoint)
        return renewer

    # -- the async driver ---------------------------------------------------------------------

    async def _ausable(self) -> _Held:
        source = self._source
        now = source._monotonic()
        held = source._lifecycle.usable(now)
        if held is None:
            return await self._arenew_waiting(None)
        if source._lifecycle.freshness(now) is Freshness.STALE:
            self._start_early_async(now)
        return held

    async def _arenew_waiting(self, rejected: Secret | None) -> _Held:
        """As ``EmmaAuth._renew_waiting``, on an event loop."""
        import anyio

        from .async_driver import await_future

        source = self._source
        coordinator = source._coordinator
        reject = None if rejected is None else rejected.reveal()
        while True:
            held, flight, mine = coordinator.join(source._monotonic(), reject)
            reject = None
            if held is not None:
                return held
            assert flight is not None
            if not mine:
                try:
                    await await_future(flight)
                except EmmaAuthError as exc:
                    raise shared_error(exc) from exc.__cause__
                continue
            # Shielded: the tasks waiting for this renewal must get its result even if the
            # task that started it is cancelled (which then takes effect once it has landed).
            with anyio.CancelScope(shield=True):
                token = await self._arenew(coordinator, flight)
            held = source._lifecycle.held
            assert held is not None and held.token is token
            source._announce(token)
            return held

    async def _arenew(
        self, coordinator: Coordinator, flight: Flight, link: object | None = None
    ) -> Token:
        """Run one renewal on this event loop and land ``flight`` with its result."""
        from .._telemetry import StepTally
        from .async_driver import drive_async

        source = self._source
        endpoint = self._async_endpoint
        if endpoint is None:
            from .transport import AsyncHttpxTokenEndpoint

            endpoint = self._async_endpoint = AsyncHttpxTokenEndpoint(
                source.base_url, self._async_client, source._renewer_args[1]
            )
        clock = source._clock
        steps = source._renewal_plan().steps(source._lifecycle, source._retry, clock)
        record = source._telemetry().renewal(source._lifecycle.renewing or FIRST_USE, link)
        tally = StepTally(record)
        with record:
            try:
                token = await drive_async(
                    steps, endpoint, source._renewer_args[3], clock, coordinator.lock, tally
                )
            except BaseException as exc:
                coordinator.land(flight, source._monotonic(), source._retry, error=exc)
                record.ended("failed", exc)
                raise
            coordinator.land(flight, source._monotonic(), source._retry, token)
            record.ended(tally.result())
        return token

    def _start_early_async(self, now: float) -> None:
        """Start the early renewal of a stale token as a task of its own, off the request."""
        import sniffio

        from .._telemetry import request_link

        flight = self._source._coordinator.begin_early(now)
        if flight is None:
            return
        link = request_link()
        if sniffio.current_async_library() == "trio":
            import trio

            trio.lowlevel.spawn_system_task(self._renew_early_async, flight, link)
            return
        import asyncio

        task = asyncio.get_running_loop().create_task(self._renew_early_async(flight, link))
        self._early_tasks.add(task)  # held strongly, or the loop may drop it mid-renewal
        task.add_done_callback(self._early_tasks.discard)

    async def _renew_early_async(self, flight: Flight, link: object | None) -> None:
        source = self._source
        coordinator, token = source._coordinator, None
        if not coordinator.early_renewal_due(source._monotonic()):
            coordinator.land(flight, source._monotonic(), source._retry)
            return
        try:
            token = await self._arenew(coordinator, flight, link)
        except EmmaAuthError as exc:
            current = source._lifecycle.current
            left = 0.0 if current is None else max(0.0, current.expires_in(source._clock.wall()))
            logger.warning(
                "token renewal failed, still using the current token (valid %.0f s more): %s",
                left,
                exc,
            )
            return
        except Exception as exc:  # noqa: BLE001 - a task of its own: nobody else would see it
            logger.warning("token renewal failed unexpectedly: %s", type(exc).__name__)
            return
        source._announce(token)


def _check_clients(client: object, async_client: object) -> None:
    if client is not None and not isinstance(client, httpx.Client):
        raise ValueError(f"client must be an httpx.Client, got {type(client).__name__}")
    if async_client is not None and not isinstance(async_client, httpx.AsyncClient):
        raise ValueError(
            f"async_client must be an httpx.AsyncClient, got {type(async_client).__name__}"
        )
