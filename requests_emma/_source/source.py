"""``TokenSource``: what every client adapter wraps: one token, one renewal at a time.

The source holds the configuration (credentials, base URL, retry policy, token cache,
``on_token``), the lifecycle (``_core/lifecycle.py``, which makes every decision), the clock,
the telemetry, and the single flight: at most one renewal at a time, shared by every caller,
whichever threads and event loops they run on. An adapter (requests, httpx, httpx2,
aiohttp) brings only its HTTP stack's token endpoint and carries out what the source
answers: so ``X.sharing(auth)``, which passes ``auth``'s source on, makes requests threads
and httpx or aiohttp tasks share one token.

Single flight
    Callers read the published ``fresh`` pair without a lock. A fresh token is used as it
    is. When not, the lifecycle :meth:`decides <.TokenLifecycle.decide>` under the source's
    lock: send a stale token and start one early renewal off the request path (a thread, or
    a task of the caller's event loop), or renew now, or wait for the renewal in flight.
    The renewal in flight is a :class:`Flight` around a ``concurrent.futures.Future``:
    threads wait with ``result()``, tasks through :func:`~.runner.wait_for`, each at most
    until the lifecycle calls the renewal stuck. A failed renewal's error reaches every
    waiter (each gets a copy), so N callers make one token call. No lock is held during a
    request, a token call or an ``await``.

    An async caller that starts a renewal hands it to a task of its own and waits like any
    other, so its cancellation never reaches the renewal the others wait for; that task
    always lands its flight. A thread never waits for a renewal run by the event loop it
    blocks (it could never land): it gives it up and renews itself.

Process boundaries
    A forked child keeps the access token and drops the refresh token and any renewal in
    flight (``os.register_at_fork``). A pickled source keeps the configuration only, and no
    client secret that came from the environment: the copy reads ``EMMA_CLIENT_SECRET``
    again where it is unpickled.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._caches.protocol import check_token_cache
from .._core import durations, urls
from .._core.credentials import credentials
from .._core.lifecycle import FIRST_USE, Decision, TokenLifecycle
from .._core.retry_policy import RetryPolicy
from .._core.secret import Secret, secret_or_none
from .._core.token import Token
from .._core.token_status import TokenStatus
from .._errors import EmmaAuthError, TokenResponseError
from .._system_clock import SYSTEM_CLOCK

if TYPE_CHECKING:
    from concurrent.futures import Future

    from typing_extensions import Unpack

    from .._adapter import TokenOptions
    from .._core.clock import Clock
    from .._core.lifecycle import _Held
    from .._core.renewal import RenewalPlan, Steps
    from .._telemetry import Renewal, Telemetry
    from .runner import AsyncEndpoint, Endpoint

logger = logging.getLogger("requests_emma")
E = TypeVar("E")

#: Every live source, so a forked child can give each fresh locks.
_sources: weakref.WeakSet[TokenSource] = weakref.WeakSet()


@dataclasses.dataclass(slots=True, eq=False)
class Flight:
    """The renewal in flight: its lifecycle number, the future its waiters wait on, whether
    it is early (then ``link``: the request that started it, for its telemetry), the thread
    of the event loop that runs it (if a loop does), and a failure for the caller that
    started it only: one that is not emma's answer (a broken install, a bug), or a token that
    expired on arrival."""

    number: int
    future: Future[Token | None]
    early: bool = False
    link: object | None = None
    loop_thread: int | None = None
    failure: Exception | None = None


class TokenSource:
    """One client's token: see the module docstring. Arguments as ``EmmaAuth`` takes them
    (its signature spells them out, with their defaults), validated here for every adapter."""

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | Secret | None = None,
        **options: Unpack[TokenOptions],
    ) -> None:
        # First: from here on no frame holds the secret in plain text, for a traceback of a
        # configuration error below (shown with its locals by pytest -l or Sentry) to show.
        secret = secret_or_none(client_secret)
        del client_secret
        self._secret_from_env = secret is None
        self.client_id, self._secret = credentials(client_id, secret)
        self.base_url = urls.base_url(options.get("base_url"))
        self.origin = urls.origin(self.base_url)
        refresh_margin = options.get("refresh_margin")
        if refresh_margin is not None:
            refresh_margin = durations.seconds("refresh_margin", refresh_margin)
        self.timeout = durations.timeout(options.get("timeout", (3.05, 10.0)))
        self.on_token = on_token = options.get("on_token")
        if on_token is not None and not callable(on_token):
            raise ValueError(f"on_token must be callable, got {type(on_token).__name__}")
        retry = options.get("retry")
        if retry is None:
            retry = RetryPolicy()
        elif not isinstance(retry, RetryPolicy):
            raise ValueError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        self.retry = retry
        token_cache = options.get("token_cache")
        self.cache = None if token_cache is None else check_token_cache(token_cache)
        self.lifecycle = TokenLifecycle(refresh_margin, retry.deadline)
        self.use_clock(SYSTEM_CLOCK)
        # Made at the first renewal, not with the package: no import or construction calls.
        self._plan: RenewalPlan | None = None
        self._telemetry: Telemetry | None = None
        self._new_process_state()

    def _new_process_state(self) -> None:
        #: Over the lifecycle: held for a decision, or a renewal's code between two steps.
        self.lock = threading.Lock()
        self._flight: Flight | None = None
        self._announcing = threading.RLock()
        self._tasks: set[Any] = set()  # asyncio renewal tasks, held until done
        # Each adapter's token endpoints, made in this process: a forked child makes its own
        # rather than write to its parent's pooled connections.
        self._endpoints = weakref.WeakKeyDictionary[object, dict[str, Any]]()
        #: The thread of the last early renewal started (a test may join it).
        self.worker: threading.Thread | None = None
        #: How a flight's future is made (``None``: a ``concurrent.futures.Future``, loaded at
        #: the first renewal, not with the package); a test may count the callers waiting.
        self.new_future: Callable[[], Future[Token | None]] | None = None
        _sources.add(self)

    def use_clock(self, clock: Clock) -> None:
        """Make ``clock`` the one every decision reads (``requests_emma.testing.use_clock``)."""
        self.clock = clock
        # Bound once: the hot path calls it, cheaper than a method lookup each time.
        self.monotonic = clock.monotonic

    def __repr__(self) -> str:
        # What a half-made source (in a traceback's locals) has set, in the order it sets it.
        shown = [f"{k}={v!r}" for k, v in vars(self).items() if k in ("client_id", "base_url")]
        return f"TokenSource({', '.join(shown)})"

    # -- the entry points --------------------------------------------------------------------

    def renewed(self, sent: str | None, endpoint: Endpoint) -> str | None:
        """After a 401 to the request sent with ``Authorization: sent``: the header to send
        it again with (renewed if ``sent`` is still current), ``None`` if it was not ours."""
        if (rejected := _bearer(sent)) is None:
            return None
        return self._wait_blocking(endpoint, rejected.reveal()).header

    async def arenewed(self, sent: str | None, endpoint: AsyncEndpoint) -> str | None:
        """:meth:`renewed`, on an event loop."""
        if (rejected := _bearer(sent)) is None:
            return None
        return (await self._wait_async(endpoint, rejected.reveal())).header

    def cannot_replay(self, sent: str | None) -> None:
        """A 401 came for a request whose body cannot be sent again: it is not replayed, and
        its token is not sent again (the next request renews)."""
        if (rejected := _bearer(sent)) is not None:
            logger.debug("401 not replayed: the request body cannot be sent again")
            with self.lock:
                self.lifecycle.reject(rejected.reveal())

    def endpoint(self, adapter: object, kind: str, make: Callable[[], E]) -> E:
        """The token endpoint ``adapter`` makes token calls through (``kind``: "sync" or
        "async"), made by ``make`` at its first use in this process."""
        made = self._endpoints.setdefault(adapter, {})
        if kind not in made:
            made[kind] = make()
        return made[kind]  # type: ignore[no-any-return]

    def status(self) -> TokenStatus:
        """The token's state now, for health checks; no network call, no wait."""
        return self.lifecycle.status(self.monotonic())

    # -- blocking ----------------------------------------------------------------------------

    def usable(self, endpoint: Endpoint) -> _Held:
        """A usable token and its header: the current one, or one renewed now (or by the
        renewal in flight); a stale one starts an early renewal off this caller's path."""
        held = self._current(self._start_thread, endpoint)
        return self._wait_blocking(endpoint, None) if held is None else held

    def _current(self, start: Callable[[Flight, Any], None], endpoint: Any) -> _Held | None:
        """The current token if usable. A stale one gets an early renewal, handed to
        ``start``, if the lifecycle grants one now. The caller sends its token whatever the
        answer, so it never waits for the lock: taken, it means someone is on it already."""
        now = self.monotonic()
        held = self.lifecycle.usable(now)
        if held is None or now < held.renew_after or not self.lock.acquire(blocking=False):
            return held
        try:
            if self.lifecycle.decide(now) is not Decision.RENEW_EARLY:
                return held
            flight = self._new_flight(early=True)
        finally:
            self.lock.release()
        from .._telemetry import request_link

        flight.link = request_link()
        start(flight, endpoint)
        return held

    def _start_thread(self, flight: Flight, endpoint: Endpoint) -> None:
        """Run the early renewal of ``flight`` on a thread of its own (``worker``)."""

        def fly() -> None:
            """Run the early renewal; a failure is logged as it lands, and the token serves."""
            with contextlib.suppress(Exception):  # landed already: its waiters have it
                self._run(flight, endpoint)

        self.worker = threading.Thread(target=fly, name="requests-emma token renewal", daemon=True)
        try:
            self.worker.start()
        except RuntimeError:  # no new threads (the interpreter is shutting down)
            self._land(flight)

    def _wait_blocking(self, endpoint: Endpoint, rejected: str | None) -> _Held:
        """A usable token: renewed in this thread if nobody is renewing, else the renewal in
        flight waited for (its error raised again, rather than emma called once more)."""
        from concurrent.futures import TimeoutError as FlightTimeout

        while True:
            held, flight, mine = self._join(rejected)
            rejected = None  # invalidated once; a later round only looks again
            if held is not None:
                return held
            assert flight is not None
            if mine:
                self._run(flight, endpoint)
            elif flight.loop_thread == threading.get_ident():
                with self.lock:  # the loop this thread blocks runs it: it could never land
                    if self._flight is flight:
                        self.lifecycle.give_up()
            else:
                try:
                    flight.future.result(self.lifecycle.wait_limit(self.monotonic()))
                except FlightTimeout:
                    logger.warning("the token renewal in flight never ended; renewing anew")
                except EmmaAuthError as exc:
                    raise copy.copy(exc) from exc.__cause__

    # -- async -------------------------------------------------------------------------------

    async def ausable(self, endpoint: AsyncEndpoint) -> _Held:
        """:meth:`usable`, on an event loop (asyncio or trio), never blocking it."""
        held = self._current(self._spawn, endpoint)
        return await self._wait_async(endpoint, None) if held is None else held

    async def _wait_async(self, endpoint: AsyncEndpoint, rejected: str | None) -> _Held:
        """:meth:`_wait_blocking` on an event loop: a task that starts a renewal hands it
        to a task of its own and waits like any other caller."""
        from .runner import wait_for

        while True:
            held, flight, mine = self._join(rejected)
            rejected = None
            if held is not None:
                return held
            assert flight is not None
            if mine:
                self._spawn(flight, endpoint)
            try:
                await wait_for(flight.future, self.lifecycle.wait_limit(self.monotonic()))
            except TimeoutError:
                logger.warning("the token renewal in flight never ended; renewing anew")
            except EmmaAuthError as exc:
                raise copy.copy(exc) from exc.__cause__
            if mine and flight.failure is not None:
                raise flight.failure  # for the caller that started it only

    def _spawn(self, flight: Flight, endpoint: AsyncEndpoint) -> None:
        """Run the renewal of ``flight`` as a task of its own on this event loop: under
        asyncio a task held in a set until done, under trio a system task."""
        import contextvars

        import sniffio

        flight.loop_thread = threading.get_ident()
        try:
            if sniffio.current_async_library() == "trio":
                import trio

                trio.lowlevel.spawn_system_task(
                    self._fly_async, flight, endpoint, context=contextvars.copy_context()
                )
                return
            import asyncio

            task = asyncio.get_running_loop().create_task(self._fly_async(flight, endpoint))
        except BaseException:
            self._land(flight)
            raise
        self._tasks.add(task)  # held strongly, or the loop may drop it mid-renewal
        task.add_done_callback(self._tasks.discard)

    async def _fly_async(self, flight: Flight, endpoint: AsyncEndpoint) -> None:
        """:meth:`_run` on this event loop, after the first renewal's imports off it; the new
        token goes to ``on_token`` on a worker thread (it may block). Its failure is for the
        waiters: nobody awaits this task."""
        import anyio.to_thread

        from .runner import run_async

        if not self._due(flight):
            return
        try:
            if self._plan is None:  # not made yet
                await anyio.to_thread.run_sync(self._warm_up)
            steps, record = self._renewal(flight)
            with record:
                token = await run_async(steps, endpoint, self, record)
        except BaseException as exc:
            self._land(flight, error=exc)
            if isinstance(exc, Exception):
                return  # landed: its waiters have it
            raise
        self._land(flight, token)
        if self.on_token is not None:
            await anyio.to_thread.run_sync(self._announce, token)

    # -- one renewal, whatever runs it --------------------------------------------------------

    def _join(self, rejected: str | None) -> tuple[_Held | None, Flight | None, bool]:
        """``(held, None, False)`` with a usable token; ``(None, flight, True)``: this caller
        starts the renewal; ``(None, flight, False)``: wait for the one in flight."""
        with self.lock:
            now = self.monotonic()
            decision = self.lifecycle.decide(now, rejected, early=False)
            if decision is Decision.SEND:
                return self.lifecycle.usable(now), None, False
            if decision is Decision.WAIT and self._flight is not None:
                return None, self._flight, False
            return None, self._new_flight(early=False), True

    def _new_flight(self, early: bool) -> Flight:
        """The renewal just granted, in flight (under the lock)."""
        if self.new_future is None:
            from concurrent.futures import Future

            future: Future[Token | None] = Future()
        else:
            future = self.new_future()
        self._flight = Flight(self.lifecycle.renewal, future, early)
        return self._flight

    def _run(self, flight: Flight, endpoint: Endpoint) -> None:
        """Run ``flight``'s renewal in this thread over ``endpoint`` and land it, whatever
        comes of it, then announce the new token; an early renewal found needless does
        nothing. Raises what the caller that started it is to see."""
        from .runner import run_blocking

        if not self._due(flight):
            return
        try:
            steps, record = self._renewal(flight)
            with record:
                token = run_blocking(steps, endpoint, self, record)
        except BaseException as exc:
            self._land(flight, error=exc)
            raise
        self._land(flight, token)
        self._announce(token)
        if flight.failure is not None:
            raise flight.failure

    def _renewal(self, flight: Flight) -> tuple[Steps, Renewal]:
        """The steps of ``flight``'s renewal, and its telemetry record (entered at once: it
        starts its span as it is made)."""
        steps = self._renewal_plan().steps(self.lifecycle, self.retry, self.clock)
        return steps, self.telemetry().renewal(self.lifecycle.renewing or FIRST_USE, flight.link)

    def _due(self, flight: Flight) -> bool:
        """Whether ``flight``'s renewal is still to run. An early one the token no longer
        needs (renewed meanwhile, or expired) is landed here."""
        with self.lock:
            if not flight.early or self.lifecycle.early_renewal_due(self.monotonic()):
                return True
        self._land(flight)
        return False

    def _land(
        self, flight: Flight, token: Token | None = None, error: BaseException | None = None
    ) -> None:
        """End ``flight`` with ``token`` or ``error``: an :class:`EmmaAuthError` goes to every
        waiter; any other exception (an interruption) only to the caller that ran it, and
        the waiters look again. A failed early renewal is logged: the token still serves. A
        token that expired on arrival (its lifetime shorter than the token call) would have
        its caller renew for ever: that is an error, for that caller."""
        failed = isinstance(error, EmmaAuthError)
        reason, interrupted = (str(error), False) if failed else (None, token is None)
        if isinstance(error, Exception) and not failed:
            flight.failure = error  # before its waiters wake: the caller that started it
            if flight.early:  # nobody else is told
                logger.warning("token renewal failed unexpectedly: %s", type(error).__name__)
        with self.lock:
            backoff = self.lifecycle.renewal_ended(
                flight.number, self.monotonic(), reason, self.retry, interrupted=interrupted
            )
            if self._flight is flight:
                self._flight = None
        if flight.early and failed and backoff is not None:
            current = self.lifecycle.current
            left = 0.0 if current is None else max(0.0, current.expires_in(self.clock.wall()))
            logger.warning(
                "token renewal failed, still using the current token (valid %.0f s more); "
                "next renewal attempt in %.1f s: %s",
                left,
                backoff or 0.0,
                error,
            )
        if token is not None and self.lifecycle.expired_on_arrival(token, self.monotonic()):
            flight.failure = TokenResponseError(
                "emma granted a token that had expired when it arrived (its lifetime is "
                f"shorter than the token call took; base URL {self.base_url})"
            )
        if not flight.future.done():
            if failed:
                flight.future.set_exception(error)
            else:
                flight.future.set_result(token)

    def _announce(self, token: Token) -> None:
        """Hand a new token to ``on_token``, outside the lock: the callback may be slow, or
        make API requests through this very source. One at a time (re-entrantly), and a
        token already superseded is skipped, so the last one received is the current one."""
        if self.on_token is None:
            return
        with self._announcing:
            if token is not self.lifecycle.current:
                return
            try:
                self.on_token(token)
            except Exception as exc:  # noqa: BLE001 - a callback bug must not fail the request
                logger.warning("on_token callback raised %s; ignored", type(exc).__name__)

    def _renewal_plan(self) -> RenewalPlan:
        """How this token is renewed (credentials, shared cache), made at the first renewal.
        (Not a ``functools.cached_property``: before Python 3.12 its lock is shared by every
        instance, and a fork while one is held would hang the child.)"""
        if self._plan is not None:
            return self._plan
        from .._core.renewal import RenewalPlan

        plan = RenewalPlan(self.base_url, self.client_id, self._secret)
        if self.cache is not None:
            from .._caches.protocol import cache_key
            from .._core.cache_entry import Sealer  # cryptography, with a cache only

            # reveal() passed straight on, never bound here: a traceback of a failure below
            # (cryptography missing, say) shows this frame's locals.
            plan = dataclasses.replace(
                plan,
                key=cache_key(self.base_url, self.client_id, self._secret.reveal()),
                sealer=Sealer(self.base_url, self.client_id, self._secret.reveal()),
                name=repr(self.cache),
            )
        self._plan = plan
        return plan

    def _warm_up(self) -> None:
        """What a first renewal imports and builds (tenacity, the OpenTelemetry API, the
        cache's cipher), done on a worker thread by an async caller: on the event loop it
        would block it for tens of milliseconds."""
        from .._core import backoff  # noqa: F401 - imported for its side: loaded

        self._renewal_plan()
        self.telemetry()  # made, it has loaded the OpenTelemetry API

    def telemetry(self) -> Telemetry:
        """This source's OpenTelemetry records, made at its first renewal; its token's
        remaining lifetime is watched from then on."""
        if self._telemetry is None:
            from .._telemetry import Telemetry

            self._telemetry = Telemetry(self.base_url)
            self._telemetry.watch(self._remaining_lifetime)  # held weakly: a bound method
        return self._telemetry

    def _remaining_lifetime(self) -> float | None:
        return self.status().valid_for

    # -- pickling and forking -----------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        # The configuration only: a worker process gets its own token rather than share a
        # refresh token the server may rotate under the other. A secret from the environment
        # stays there: the copy reads it again.
        secret = None if self._secret_from_env else self._secret
        options: TokenOptions = {
            "base_url": self.base_url,
            "refresh_margin": self.lifecycle.refresh_margin,
            "timeout": self.timeout,
            "on_token": self.on_token,
            "retry": self.retry,
            "token_cache": self.cache,
        }
        return (
            functools.partial(TokenSource, **options),
            (self.client_id, secret),
            {"clock": self.clock},
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.use_clock(state["clock"])


def _bearer(header: str | bytes | None) -> Secret | None:
    """The token of a bearer ``Authorization`` header, wrapped so no traceback shows it."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if header is None or not header.startswith("Bearer "):
        return None
    return Secret(header[len("Bearer ") :])


def _after_fork() -> None:
    """In a forked child: the parent's locks may have been held by a thread that does not
    exist here."""
    for source in list(_sources):
        source.lifecycle.after_fork()  # in place, not replaced: adapters hold it
        source._new_process_state()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork)


def source_of(auth: object) -> TokenSource:
    """The source of any of the library's auths (what ``sharing()`` takes)."""
    source = getattr(auth, "_token_source", None)
    if not isinstance(source, TokenSource):
        raise TypeError(
            "sharing() takes one of requests-emma's auths (EmmaAuth, EmmaHttpxAuth, "
            f"EmmaHttpx2Auth, EmmaAiohttpMiddleware), got {type(auth).__name__}"
        )
    return source
