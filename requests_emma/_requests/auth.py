"""``EmmaAuth``: the token lifecycle as a ``requests`` auth plugin.

A thin shell: the lifecycle (``_core/lifecycle.py``) decides, the coordinator
(``coordinator.py``) keeps one renewal in flight, the requests driver (``renewal.py``) runs
the renewal's steps, and ``replay.py`` resends a request after a 401. This module holds them
together: the per-request path, who runs a renewal (the caller, or a thread for an early
one), the 401 hook's decision, and what a pickled copy or a forked child keeps. An
``EmmaHttpxAuth`` runs its own drivers over the token an ``EmmaAuth`` holds.

Single flight
    Callers read the lifecycle without a lock. A fresh token is used as it is. A stale one
    (inside the refresh margin) is sent at once, and one early renewal starts on a thread of
    its own, so no request waits for it. Only callers with no valid token left wait, for the
    renewal in flight (a ``Future``), so N threads cause one token call. No lock is held
    during an API request or a token call. No thread runs at import or construction; the
    renewal thread is a daemon that ends with its renewal; a forked child starts afresh.

The 401 replay
    The hook renews only if the rejected token is still the current one (the lifecycle's
    compare-and-invalidate); otherwise another thread already renewed it. A body that cannot
    be replayed byte for byte (a generator, a forward-only stream) is never replayed: the
    401 is returned, and the token is not sent again.

Origins
    Only requests to the base URL's scheme, host and port get the token. ``requests`` strips
    ``Authorization`` from a redirect to another host and does not call the auth again, so
    nothing here may re-add it: the hook checks the origin of the request that got the 401.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests
from requests.auth import AuthBase

from .._caches.protocol import TokenCache, check_token_cache
from .._core import durations, urls
from .._core.clock import Clock
from .._core.credentials import credentials
from .._core.keyword_options import KeywordOptions
from .._core.lifecycle import Freshness, TokenLifecycle
from .._core.retry_policy import RetryPolicy
from .._core.secret import Secret, secret_or_none
from .._core.token import Token
from .._core.token_status import TokenStatus
from .._errors import EmmaAuthError
from .._system_clock import SYSTEM_CLOCK

if TYPE_CHECKING:
    from .._core.lifecycle import _Held
    from .._core.renewal import RenewalPlan
    from .._telemetry import Telemetry
    from .coordinator import Coordinator, Flight
    from .renewal import Renewer, SyncEndpoint

logger = logging.getLogger("requests_emma")

#: Every live EmmaAuth, so a forked child can give each fresh locks.
_instances: weakref.WeakSet[EmmaAuth] = weakref.WeakSet()


class EmmaAuth(KeywordOptions, AuthBase):
    """Authenticates requests to the emma API with a self-renewing bearer token.

    Arguments left as ``None`` are read from ``EMMA_CLIENT_ID``, ``EMMA_CLIENT_SECRET`` and
    ``EMMA_API_URL`` (default ``https://api.emma.ms/external``). Constructing it makes no
    network call; the first request fetches the token.

    ``refresh_margin``: renew this many seconds before expiry (``None``: a fifth of the
    token's lifetime, at most 60 s); the renewal runs in the background while the current
    token keeps serving. ``timeout``: for each token call, seconds or ``(connect, read)``.
    ``session``: the ``requests.Session`` for token calls (proxies, TLS). ``on_token``:
    called with every new :class:`Token`. ``retry``: how token calls are retried
    (:class:`RetryPolicy`). ``token_cache``: a shared :class:`TokenCache`
    (:class:`FileTokenCache`, :class:`RedisTokenCache`) through which the processes of a
    fleet share one token; without one, each ``EmmaAuth`` keeps its token in memory.
    """

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        base_url: str | None = None,
        refresh_margin: float | None = None,
        timeout: float | tuple[float, float] = (3.05, 10.0),
        session: requests.Session | None = None,
        on_token: Callable[[Token], object] | None = None,
        retry: RetryPolicy | None = None,
        token_cache: TokenCache | None = None,
    ) -> None:
        # First: from here on no frame holds the secret in plain text, for a traceback of a
        # configuration error below (shown with its locals by pytest -l or Sentry) to show.
        secret = secret_or_none(client_secret)
        del client_secret
        client_id, secret = credentials(client_id, secret)
        self._client_id = client_id
        self._base_url = urls.base_url(base_url)
        self._origin = urls.origin(self._base_url)
        self._prefix = _origin_prefix(self._base_url)
        self._after_prefix = _after_prefix(self._prefix)
        if refresh_margin is not None:
            refresh_margin = durations.seconds("refresh_margin", refresh_margin)
        if session is not None and not isinstance(session, requests.Session):
            raise ValueError(f"session must be a requests.Session, got {type(session).__name__}")
        if on_token is not None and not callable(on_token):
            raise ValueError(f"on_token must be callable, got {type(on_token).__name__}")
        if retry is None:
            retry = RetryPolicy()
        elif not isinstance(retry, RetryPolicy):
            raise ValueError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        if token_cache is not None:
            token_cache = check_token_cache(token_cache)
        self._retry = retry
        self._on_token = on_token
        self._clock = SYSTEM_CLOCK
        self._lifecycle = TokenLifecycle(refresh_margin)
        # The token calls' machinery (transport, deadline, retries) is loaded at the first
        # renewal, not with the package: an import or a construction makes no call.
        self._renewer: Renewer | None = None
        self._plan: RenewalPlan | None = None
        self._telemetry_records: Telemetry | None = None
        self._renewer_args = (session, durations.timeout(timeout), secret, token_cache)
        self._new_process_state()
        _instances.add(self)

    def _get_renewer(self) -> Renewer:
        """The renewer over requests, made at the first renewal that needs it."""
        renewer = self._renewer
        if renewer is None:
            from .transport import TokenEndpoint

            session, timeout, _, _ = self._renewer_args
            renewer = self._renewer = self._renewer_for(
                TokenEndpoint(self._base_url, session, timeout)
            )
        return renewer

    def _renewer_for(self, endpoint: SyncEndpoint) -> Renewer:
        """A renewer of this auth's token over ``endpoint`` (another HTTP stack's, for an
        httpx auth sharing this token)."""
        from .renewal import Renewer

        return Renewer(endpoint, self._renewal_plan(), self._renewer_args[3])

    def _renewal_plan(self) -> RenewalPlan:
        """How this auth's token is renewed (credentials, shared cache), for every driver."""
        plan = self._plan
        if plan is None:
            from .renewal import plan_for

            _, _, secret, cache = self._renewer_args
            plan = self._plan = plan_for(self._base_url, self._client_id, secret, cache)
        return plan

    def _new_process_state(self) -> None:
        # Here, not with the package: concurrent.futures need not load with an import.
        from .coordinator import Coordinator

        self._hook = self._replay_after_401  # bound once, not on every request
        self._coordinator = Coordinator(self._lifecycle)
        self._announcing = threading.RLock()
        self._worker: threading.Thread | None = None  # the last early renewal started

    @property
    def _clock(self) -> Clock:
        """The clock every decision reads; tests put a fake one here, by assigning it (which
        binds its monotonic reading for this auth's own reads)."""
        return self._clock_in_use

    @_clock.setter
    def _clock(self, clock: Clock) -> None:
        self._clock_in_use = clock
        # Bound here, and every reading of this auth goes through it (one clock for all its
        # decisions). The per-request path reads it and calls it: on CPython 3.11 that is
        # about a quarter cheaper than ``self._clock.monotonic()``, whose method lookup on
        # the instance is not specialised.
        self._monotonic = clock.monotonic

    @property
    def base_url(self) -> str:
        """The API base URL, without a trailing slash."""
        return self._base_url

    def __repr__(self) -> str:
        # Of any instance, one whose __init__ raised halfway included: a traceback shown
        # with its locals reprs the ``self`` of that __init__.
        shown = [
            f"{name}={getattr(self, attribute)!r}"
            for name, attribute in (("client_id", "_client_id"), ("base_url", "_base_url"))
            if hasattr(self, attribute)
        ]
        if not hasattr(self, "_renewer_args"):
            shown.append("<not fully constructed>")
        return f"EmmaAuth({', '.join(shown)})"

    # -- requests' entry points -------------------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        # The hot path: a range test for the URL spelling requests produces (see
        # _after_prefix), one comparison for a fresh token, a ready-made header value.
        url = request.url
        if url is None or not (
            self._prefix <= url < self._after_prefix or self._is_own_origin(url)
        ):
            if logger.isEnabledFor(logging.DEBUG):
                # Only the origin is logged: a query string may carry the caller's secrets.
                logger.debug(
                    "no token for %s: not the API's origin (%s)", _origin_text(url), self._base_url
                )
            return request
        until, header = self._lifecycle.fresh
        monotonic = self._monotonic  # read, then called: a call of self._monotonic() costs more
        if monotonic() >= until:
            header = self._usable().header
        request.headers["Authorization"] = header
        # Not register_hook(), which checks callability on every request.
        request.hooks["response"].append(self._hook)
        return request

    def get_token(self) -> Token:
        """A usable token: the current one, or a new one fetched (or renewed) now."""
        return self._usable().token

    def status(self) -> TokenStatus:
        """The token's state now, for health checks: a :class:`TokenStatus` (no secrets).

        It makes no network call and does not wait for a renewal in flight."""
        return self._lifecycle.status(self._monotonic())

    def _is_own_origin(self, url: str) -> bool:
        """Whether ``url`` is on the API's origin: a prefix test for the spelling requests
        produces (it always writes a path), the full parse for any other (an explicit
        default port, say)."""
        return url.startswith(self._prefix) or urls.origin(url) == self._origin

    # -- getting a token --------------------------------------------------------------------

    def _usable(self, renewer: Renewer | None = None) -> _Held:
        """A token that has not expired; one still valid but stale starts an early renewal
        in the background and is used meanwhile. ``renewer``: the one to renew with, if not
        this auth's own over requests."""
        now = self._monotonic()
        held = self._lifecycle.usable(now)
        if held is None:
            return self._renew_waiting(None, renewer)
        if self._lifecycle.freshness(now) is Freshness.STALE:
            self._start_early_renewal(now, renewer)
        return held

    def _start_early_renewal(self, now: float, renewer: Renewer | None = None) -> None:
        flight = self._coordinator.begin_early(now)
        if flight is None:
            return  # not granted: fresh, renewing already, backing off or held off
        from .._telemetry import request_link

        worker = threading.Thread(
            target=self._renew_early,
            args=(flight, renewer, request_link()),
            name="requests-emma token renewal",
            daemon=True,
        )
        self._worker = worker
        try:
            worker.start()
        except RuntimeError:  # no new threads (the interpreter is shutting down)
            self._coordinator.land(flight, self._monotonic(), self._retry)

    def _renew_early(
        self, flight: Flight, renewer: Renewer | None = None, link: object | None = None
    ) -> None:
        """The background renewal of a stale token. On failure the token keeps serving and
        the next early attempt waits for the backoff the lifecycle sets."""
        coordinator, token = self._coordinator, None
        try:
            if coordinator.early_renewal_due(self._monotonic()):
                token = self._renew(coordinator, renewer, link)
        except BaseException as exc:  # landed, so its waiters see it; re-raised unless ours
            backoff = coordinator.land(flight, self._monotonic(), self._retry, error=exc)
            if not isinstance(exc, EmmaAuthError):
                raise
            current = self._lifecycle.current
            left = 0.0 if current is None else max(0.0, current.expires_in(self._clock.wall()))
            logger.warning(
                "token renewal failed, still using the current token (valid %.0f s more); "
                "next renewal attempt in %.1f s: %s",
                left,
                backoff or 0.0,
                exc,
            )
            return
        coordinator.land(flight, self._monotonic(), self._retry, token)
        if token is not None:
            self._announce(token)

    def _renew_waiting(self, rejected: Secret | None, renewer: Renewer | None = None) -> _Held:
        """Return a valid token, renewing if nobody else is; else wait for the renewal in
        flight (whichever thread runs it).

        ``rejected`` is an access token the API answered 401 to: the lifecycle invalidates
        it if it is still current. If the renewal this caller waited for failed, its error
        is raised again rather than the endpoint called once more.
        """
        from concurrent.futures import TimeoutError as FlightTimeout

        from .coordinator import WAIT_GRACE, result

        coordinator = self._coordinator
        reject = None if rejected is None else rejected.reveal()
        while True:
            held, flight, mine = coordinator.join(self._monotonic(), reject)
            reject = None  # invalidated once; a later round only looks again
            if held is not None:
                return held
            assert flight is not None
            if not mine:
                if getattr(flight, "loop_thread", None) == threading.get_ident():
                    # Run by a task of the event loop this very thread blocks: it could
                    # never land while we wait. Renew here instead.
                    coordinator.abandon(flight, self._monotonic(), self._retry)
                    continue
                try:  # raises the failed renewal's error, or loops to look again
                    result(flight, self._retry.deadline + WAIT_GRACE)
                except FlightTimeout:
                    logger.warning("the token renewal in flight never ended; renewing anew")
                    coordinator.abandon(flight, self._monotonic(), self._retry)
                continue
            try:
                token = self._renew(coordinator, renewer)
            except BaseException as exc:
                coordinator.land(flight, self._monotonic(), self._retry, error=exc)
                raise
            coordinator.land(flight, self._monotonic(), self._retry, token)
            self._announce(token)
            held = self._lifecycle.usable(self._monotonic())
            if held is not None:  # else rejected or replaced already: look again
                return held

    def _renew(
        self, coordinator: Coordinator, renewer: Renewer | None = None, link: object | None = None
    ) -> Token:
        """Run one renewal in this thread, its decisions under the coordinator's lock."""
        if renewer is None:
            renewer = self._get_renewer()
        return renewer.renew(
            self._lifecycle, self._retry, self._clock, coordinator.lock, self._telemetry(), link
        )

    def _telemetry(self) -> Telemetry:
        """This auth's OpenTelemetry records, made at its first renewal (a no-op without
        opentelemetry); its token's remaining lifetime is watched from then on."""
        telemetry = self._telemetry_records
        if telemetry is None:
            from .._telemetry import Telemetry

            telemetry = self._telemetry_records = Telemetry(self._base_url)
            telemetry.watch(self._remaining_lifetime)
        return telemetry

    def _remaining_lifetime(self) -> float | None:
        return self.status().valid_for

    def _announce(self, token: Token) -> None:
        """Hand a new token to ``on_token``, outside the renewal lock: the callback may be
        slow, or make API requests with this very auth.

        Callbacks run one at a time (re-entrantly, for one that renews through the auth), and
        a token already superseded by a newer one is skipped, so the last token a callback
        received is always the current one.
        """
        if self._on_token is None:
            return
        with self._announcing:
            if token is not self._lifecycle.current:
                return
            try:
                self._on_token(token)
            except Exception as exc:  # noqa: BLE001 - a callback bug must not fail the request
                logger.warning("on_token callback raised %s; ignored", type(exc).__name__)

    # -- the 401 replay ---------------------------------------------------------------------

    def _replay_after_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401:
            return response
        sent = response.request
        if sent.url is None or not self._is_own_origin(sent.url):
            return response  # a redirect took it elsewhere: never send our token there
        from .body_rewind import can_be_resent  # at the first 401, not with the package
        from .replay import bearer_token, resend

        rejected = bearer_token(sent.headers.get("Authorization"))
        if rejected is None or getattr(response, "connection", None) is None:
            return response

        if not can_be_resent(sent):
            logger.debug("401 not replayed: the request body cannot be rewound")
            with self._coordinator.lock:  # but the token is not sent again: the next
                self._lifecycle.reject(rejected.reveal())  # request renews
            return response

        # Drain and close first: the connection goes back to the pool while we wait for the
        # renewal, and is not left open if the renewal fails.
        response.content  # noqa: B018
        response.close()
        held = self._renew_waiting(rejected)
        logger.debug("API answered 401; replaying %s once with a renewed token", sent.method)
        return resend(response, held.header, self._telemetry(), **kwargs)

    # -- pickling and forking ---------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_renewer"] = None  # rebuilt at the first renewal, with a session of its own
        state["_plan"] = None  # its cipher is rebuilt too
        state["_telemetry_records"] = None  # watched again from the first renewal there
        # Tokens stay behind: a worker process gets its own rather than share a refresh
        # token the server may rotate under the other.
        state["_lifecycle"] = self._lifecycle.across_processes(forked=False)
        for name in ("_hook", "_coordinator", "_announcing", "_worker", "_monotonic"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._clock = self._clock_in_use  # binds its monotonic reading again
        self._new_process_state()
        _instances.add(self)

    def _after_fork_in_child(self) -> None:
        # The parent's locks may have been held by a thread that does not exist here, and its
        # token session's pooled connections are the parent's.
        self._lifecycle = self._lifecycle.across_processes(forked=True)
        self._new_process_state()
        self._renewer = None


def _after_fork() -> None:
    for auth in list(_instances):
        auth._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork)


def _origin_prefix(base_url: str) -> str:
    """``scheme://host[:port]/`` as requests writes it for URLs on ``base_url``'s origin."""
    return urls.origin_prefixes(base_url)[0]


def _after_prefix(prefix: str) -> str:
    """The least string greater than every string that starts with ``prefix``.

    So ``prefix <= url < _after_prefix(prefix)`` holds exactly when ``url`` starts with
    ``prefix``: strings sort character by character, and the first one past all of
    ``prefix``'s extensions is ``prefix`` with its last character raised by one. On the
    per-request path the two comparisons cost about half of ``str.startswith``, whose
    argument parsing (on Python 3.11 and 3.12) outweighs comparing a few bytes.
    """
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _origin_text(url: str | None) -> str:
    origin = None if url is None else urls.origin(url)
    return "an unknown origin" if origin is None else f"{origin[0]}://{origin[1]}:{origin[2]}"
