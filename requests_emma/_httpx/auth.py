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

import contextvars
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING, Any

import httpx

from .._caches.protocol import TokenCache
from .._core.lifecycle import EARLY, FIRST_USE, Freshness
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
        self._tasks: set[Any] = set()  # asyncio renewal tasks, held until done

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
            flight = source._coordinator.begin_early(now)
            if flight is not None:
                from .._telemetry import request_link

                self._spawn(flight, request_link())
        return held

    async def _arenew_waiting(self, rejected: Secret | None) -> _Held:
        """As ``EmmaAuth._renew_waiting``, on an event loop: a task that starts a renewal
        hands it to a task of its own (:meth:`_spawn`) and waits for it like any other
        caller, so that its cancellation (``Task.cancel()``, a timeout, a scope) never
        reaches the renewal the others wait for."""
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
            if mine:
                self._spawn(flight, None)
            try:
                await await_future(flight)  # None: interrupted, look again
            except EmmaAuthError as exc:
                raise shared_error(exc) from exc.__cause__
            failure = getattr(flight, "failure", None)
            if mine and isinstance(failure, Exception):
                # Not emma's answer (a broken install, a bug): the caller that started the
                # renewal gets it, as a blocking caller would; the others look again.
                raise failure

    def _spawn(self, flight: Flight, link: object | None) -> None:
        """Run the renewal of ``flight`` as a task of its own on this event loop: under
        asyncio a task held in a set until done, under trio a system task (ended with the
        run). The flight records the loop's thread, so that a thread blocking this loop
        never waits for it (it would never land)."""
        import sniffio

        flight.loop_thread = threading.get_ident()  # type: ignore[attr-defined]
        try:
            if sniffio.current_async_library() == "trio":
                import trio

                trio.lowlevel.spawn_system_task(
                    self._fly, flight, link, context=contextvars.copy_context()
                )
                return
            import asyncio

            task = asyncio.get_running_loop().create_task(self._fly(flight, link))
        except BaseException as exc:
            source = self._source
            source._coordinator.land(flight, source._monotonic(), source._retry, error=exc)
            raise
        self._tasks.add(task)  # held strongly, or the loop may drop it mid-renewal
        task.add_done_callback(self._tasks.discard)

    async def _fly(self, flight: Flight, link: object | None) -> None:
        """Run one renewal on this event loop and land ``flight`` with what came of it,
        whatever that is; then hand the new token to ``on_token`` on a worker thread (the
        callback may block, and must not block the loop)."""
        source = self._source
        coordinator, retry = source._coordinator, source._retry
        early = source._lifecycle.renewing == EARLY
        try:
            if early and not coordinator.early_renewal_due(source._monotonic()):
                token = None  # renewed or expired meanwhile: nothing to do early
            else:
                token = await self._arenew(coordinator, link)
        except BaseException as exc:
            flight.failure = exc  # type: ignore[attr-defined]  # for the task that started it
            backoff = coordinator.land(flight, source._monotonic(), retry, error=exc)
            if isinstance(exc, EmmaAuthError):
                if early:
                    _log_early_failure(source, exc, backoff)
                return  # the waiters have the error; nobody awaits this task
            if isinstance(exc, Exception):
                if early:  # no caller waits for an early renewal: say it here
                    logger.warning("token renewal failed unexpectedly: %s", type(exc).__name__)
                return  # else raised by the task that started it (see _arenew_waiting)
            raise  # cancelled (the loop is ending) or interrupted: landed, on its way
        coordinator.land(flight, source._monotonic(), retry, token)
        if token is not None and source._on_token is not None:
            import anyio.to_thread

            await anyio.to_thread.run_sync(source._announce, token)

    async def _arenew(self, coordinator: Coordinator, link: object | None) -> Token:
        """Run one renewal's steps on this event loop, recorded as telemetry."""
        from .async_driver import drive_async, warm_up

        source = self._source
        if self._async_endpoint is None:
            from .transport import AsyncHttpxTokenEndpoint

            await warm_up()  # the modules a renewal imports, loaded off the loop
            self._async_endpoint = AsyncHttpxTokenEndpoint(
                source.base_url, self._async_client, source._renewer_args[1]
            )
        clock = source._clock
        steps = source._renewal_plan().steps(source._lifecycle, source._retry, clock)
        trigger = source._lifecycle.renewing or FIRST_USE
        with source._telemetry().renewal(trigger, link) as renewal:
            return await drive_async(
                steps,
                self._async_endpoint,
                source._renewer_args[3],
                clock,
                coordinator.lock,
                renewal,
            )


def _log_early_failure(source: EmmaAuth, exc: EmmaAuthError, backoff: float | None) -> None:
    current = source._lifecycle.current
    left = 0.0 if current is None else max(0.0, current.expires_in(source._clock.wall()))
    logger.warning(
        "token renewal failed, still using the current token (valid %.0f s more); "
        "next renewal attempt in %.1f s: %s",
        left,
        backoff or 0.0,
        exc,
    )


def _check_clients(client: object, async_client: object) -> None:
    if client is not None and not isinstance(client, httpx.Client):
        raise ValueError(f"client must be an httpx.Client, got {type(client).__name__}")
    if async_client is not None and not isinstance(async_client, httpx.AsyncClient):
        raise ValueError(
            f"async_client must be an httpx.AsyncClient, got {type(async_client).__name__}"
        )
