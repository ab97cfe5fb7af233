"""``EmmaAuth``: the token lifecycle as a ``requests`` auth plugin.

The adapter adds what the pure lifecycle leaves out: a lock, the token calls, and the 401
replay.

Single flight
    Callers read the lifecycle without the lock. A fresh token is used as it is. A stale one
    (inside the refresh margin) is renewed by whichever caller takes the lock first without
    waiting; the others keep sending it. Only callers with no valid token left wait on the
    lock, and after it look again, so N threads cause one token call. The lock guards token
    calls only, never an API request.

The 401 replay
    requests' own ``HTTPDigestAuth`` recipe: a response hook drains and closes the 401,
    copies the request, carries its cookies, sets the new header, rewinds the body and sends
    the copy straight to the connection adapter (so the hook does not run again and a second
    401 is returned as it is). The token is renewed only if the rejected token is still the
    current one; otherwise another thread already renewed it. A body that cannot be replayed
    byte for byte (a generator, an unseekable stream) is never replayed: the 401 is returned.

Origins
    Only requests to the base URL's scheme, host and port get the token. ``requests`` strips
    ``Authorization`` from a redirect to another host and does not call the auth again, so
    nothing here may re-add it: the hook checks the origin of the request that got the 401.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.auth import AuthBase
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar, get_cookie_header
from requests.utils import rewind_body

from . import _config
from ._body import can_be_resent
from ._errors import EmmaAuthError, TokenRequestError
from ._lifecycle import Freshness, TokenLifecycle
from ._retry import RETRYABLE_STATUSES, RetryPolicy
from ._token import Token
from ._transport import TokenEndpoint
from ._wire import TokenGrant

logger = logging.getLogger("requests_emma")


class EmmaAuth(AuthBase):
    """Authenticates requests to the emma API with a self-renewing bearer token.

    Arguments left as ``None`` are read from ``EMMA_CLIENT_ID``, ``EMMA_CLIENT_SECRET`` and
    ``EMMA_API_URL`` (default ``https://api.emma.ms/external``). Constructing it makes no
    network call; the first request fetches the token.

    ``refresh_margin``: renew this many seconds before expiry (``None``: a fifth of the
    token's lifetime, at most 60 s). ``timeout``: for each token call, seconds or
    ``(connect, read)``. ``session``: the ``requests.Session`` for token calls (proxies,
    TLS). ``on_token``: called with every new :class:`Token`. ``retry``: how token calls are
    retried (:class:`RetryPolicy`).
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
    ) -> None:
        self._client_id, self._client_secret = _config.credentials(client_id, client_secret)
        self._base_url = _config.base_url(base_url)
        self._origin = _config.origin(self._base_url)
        if refresh_margin is not None:
            refresh_margin = _config.seconds("refresh_margin", refresh_margin)
        if session is not None and not isinstance(session, requests.Session):
            raise ValueError(f"session must be a requests.Session, got {type(session).__name__}")
        if on_token is not None and not callable(on_token):
            raise ValueError(f"on_token must be callable, got {type(on_token).__name__}")
        if retry is None:
            retry = RetryPolicy()
        elif not isinstance(retry, RetryPolicy):
            raise ValueError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        self._retry = retry
        self._on_token = on_token
        self._clock: Callable[[], float] = time.monotonic
        self._lifecycle = TokenLifecycle(refresh_margin)
        self._owns_session = session is None
        self._endpoint = TokenEndpoint(
            self._base_url, session or requests.Session(), _config.timeout(timeout)
        )
        self._lock = threading.Lock()
        self._announcing = threading.RLock()
        self._last_failure: EmmaAuthError | None = None

    @property
    def base_url(self) -> str:
        """The API base URL, without a trailing slash."""
        return self._base_url

    def __repr__(self) -> str:
        return f"EmmaAuth(client_id={self._client_id!r}, base_url={self._base_url!r})"

    # -- requests' entry points -------------------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if request.url is None or _config.origin(request.url) != self._origin:
            # Only the origin is logged: a query string may carry the caller's secrets.
            logger.debug(
                "no token for %s: not the API's origin (%s)",
                _origin_text(request.url),
                self._base_url,
            )
            return request
        token = self._usable_token()
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        request.register_hook("response", self._replay_after_401)  # type: ignore[no-untyped-call]
        return request

    def get_token(self) -> Token:
        """A usable token: the current one, or a new one fetched (or renewed) now."""
        return self._usable_token()

    # -- getting a token --------------------------------------------------------------------

    def _usable_token(self) -> Token:
        now = self._clock()
        freshness = self._lifecycle.freshness(now)
        if freshness is Freshness.FRESH:
            token = self._lifecycle.usable(now)
            if token is not None:
                return token
        elif freshness is Freshness.STALE:
            if self._lifecycle.may_renew_early(now) and self._lock.acquire(blocking=False):
                try:
                    renewed = self._renew_early()
                finally:
                    self._lock.release()
                if renewed is not None:
                    self._announce(renewed)
            token = self._lifecycle.usable(self._clock())
            if token is not None:
                return token
        return self._renew_waiting(rejected=None)

    def _renew_early(self) -> Token | None:
        """Renew a still-valid token with one attempt; on failure keep serving it.

        Called with the lock held; returns the new token, if any. A failure is not retried by
        the next request: early renewals back off (from 1 s, doubling up to ``wait_max``)
        while the token serves.
        """
        if self._lifecycle.freshness(self._clock()) is not Freshness.STALE:
            return None  # another thread renewed it meanwhile
        try:
            return self._renew(
                dataclasses.replace(self._retry, attempts=1), fall_back_to_issue=False
            )
        except EmmaAuthError as exc:
            backoff = self._lifecycle.renewal_failed(
                self._clock(), max(self._retry.wait_initial, 1.0), max(self._retry.wait_max, 1.0)
            )
            current = self._lifecycle.current
            left = 0.0 if current is None else max(0.0, current.expires_in())
            logger.warning(
                "token renewal failed, still using the current token (valid %.0f s more); "
                "next renewal attempt in %.1f s: %s",
                left,
                backoff,
                exc,
            )
            return None

    def _renew_waiting(self, rejected: _config.Secret | None) -> Token:
        """Wait for the lock, then return a valid token, renewing if nobody else did.

        ``rejected`` is an access token the API answered 401 to: if it is still the current
        one it is invalidated first. If the renewal this caller waited for failed, its error
        is raised again rather than the endpoint called once more.
        """
        failed_before = self._last_failure
        with self._lock:
            if rejected is not None and self._lifecycle.is_current(rejected.reveal()):
                self._lifecycle.invalidate()
            token = self._lifecycle.usable(self._clock())
            if token is not None:
                return token
            failure = self._last_failure
            if failure is not None and failure is not failed_before:
                # The renewal this caller waited for failed: share its error, as a Future
                # shares its exception with every waiter, rather than call again. A copy
                # each, or one traceback would collect the frames of every waiting thread.
                raise copy.copy(failure) from failure.__cause__
            try:
                token = self._renew(self._retry)
            except EmmaAuthError as exc:
                self._last_failure = exc
                logger.warning("token renewal failed: %s", exc)
                raise
        self._announce(token)
        return token

    def _renew(self, policy: RetryPolicy, *, fall_back_to_issue: bool = True) -> Token:
        """Get a new token and store it. Called with the lock held."""
        try:
            grant, how = self._fetch_grant(policy, fall_back_to_issue=fall_back_to_issue)
        finally:
            if self._owns_session:
                # Token calls are minutes apart: an idle pooled connection would only be
                # dropped by the server, or left open when the auth is discarded.
                self._endpoint.session.close()
        token = self._lifecycle.accept(grant, self._clock(), time.time())
        self._last_failure = None
        logger.debug(
            "token %s; lifetime %.0f s (from %s), refresh token %s",
            how,
            grant.lifetime,
            grant.lifetime_source,
            "received" if grant.refresh_token else "kept" if token.refresh_token else "none",
        )
        return token

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

    def _fetch_grant(
        self, policy: RetryPolicy, *, fall_back_to_issue: bool = True
    ) -> tuple[TokenGrant, str]:
        """Refresh token first; issue-token if there is none or the server refuses it.

        With ``fall_back_to_issue=False`` (a renewal inside the margin, which may delay its
        request by one call only) a refused refresh token is dropped and the error raised:
        the next renewal uses issue-token.
        """
        # The deadline is kept on the endpoint's clock, which times the calls and sleeps.
        deadline = self._endpoint.clock() + policy.deadline
        refresh_token = _config.secret_or_none(self._lifecycle.refresh_token(self._clock()))
        if refresh_token is not None:
            try:
                return self._endpoint.refresh(refresh_token, policy, deadline), "refreshed"
            except TokenRequestError as exc:
                # Any other 4xx means this refresh token is dead; a retryable status (429...)
                # that outlived its retries says nothing about the token: keep it.
                status = exc.status_code
                if status is None or not 400 <= status < 500 or status in RETRYABLE_STATUSES:
                    raise
                self._lifecycle.drop_refresh_token()
                if not fall_back_to_issue:
                    logger.debug(
                        "refresh token refused (HTTP %d); the next renewal issues a new token",
                        status,
                    )
                    raise
                logger.debug("refresh token refused (HTTP %d); issuing a new token", status)
        grant = self._endpoint.issue(self._client_id, self._client_secret, policy, deadline)
        return grant, "issued"

    # -- the 401 replay ---------------------------------------------------------------------

    def _replay_after_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401:
            return response
        sent = response.request
        if sent.url is None or _config.origin(sent.url) != self._origin:
            return response  # a redirect took it elsewhere: never send our token there
        rejected = _bearer_token(sent.headers.get("Authorization"))
        if rejected is None or getattr(response, "connection", None) is None:
            return response
        if not can_be_resent(sent):
            logger.debug("401 not replayed: the request body cannot be rewound")
            return response

        # Drain and close first: the connection goes back to the pool while we wait for the
        # renewal, and is not left open if the renewal fails.
        response.content  # noqa: B018
        response.close()
        token = self._renew_waiting(rejected)

        replay = sent.copy()
        _carry_cookies(response, replay)
        replay.headers["Authorization"] = f"Bearer {token.access_token}"
        if isinstance(getattr(replay, "_body_position", None), int):
            rewind_body(replay)
        logger.debug("API answered 401; replaying %s once with a renewed token", sent.method)
        new_response: requests.Response = response.connection.send(replay, **kwargs)
        new_response.history.append(response)
        new_response.request = replay
        return new_response

    # -- pickling ---------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # Tokens stay behind: a worker process gets its own rather than share a refresh
        # token the server may rotate under the other.
        state["_lifecycle"] = TokenLifecycle(self._lifecycle.refresh_margin)
        state["_last_failure"] = None
        del state["_lock"], state["_announcing"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._announcing = threading.RLock()


def _carry_cookies(response: requests.Response, replay: requests.PreparedRequest) -> None:
    """Send the replay with the cookies as the 401 left them, as a browser would.

    requests' recipe (``prepare_cookies``) writes a ``Cookie`` header only when there is none,
    so a request that already carried cookies would not see what the 401 set or deleted.
    Pairs for names the 401 did not touch are kept as sent (duplicates and all); the names it
    touched are sent as the jar now has them.
    """
    jar: RequestsCookieJar = replay._cookies  # type: ignore[attr-defined]
    before = _cookie_values(jar)
    extract_cookies_to_jar(jar, response.request, response.raw)  # type: ignore[no-untyped-call]
    after = _cookie_values(jar)
    touched = {key[0] for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    if not touched:
        return
    kept = [
        pair.strip()
        for pair in str(replay.headers.get("Cookie", "")).split(";")
        if pair.strip() and pair.split("=", 1)[0].strip() not in touched
    ]
    now_set = RequestsCookieJar()
    for cookie in jar:
        if cookie.name in touched:
            now_set.set_cookie(cookie)
    probe = replay.copy()  # the jar writes a Cookie header only where there is none
    probe.headers.pop("Cookie", None)
    header = get_cookie_header(now_set, probe)  # type: ignore[no-untyped-call]
    pairs = kept + ([header] if header else [])
    if pairs:
        replay.headers["Cookie"] = "; ".join(pairs)
    else:
        replay.headers.pop("Cookie", None)


def _cookie_values(jar: RequestsCookieJar) -> dict[tuple[str, str, str], str | None]:
    return {(cookie.name, cookie.domain, cookie.path): cookie.value for cookie in jar}


def _origin_text(url: str | None) -> str:
    origin = None if url is None else _config.origin(url)
    return "an unknown origin" if origin is None else f"{origin[0]}://{origin[1]}:{origin[2]}"


def _bearer_token(header: str | bytes | None) -> _config.Secret | None:
    """The token of a bearer ``Authorization`` header, wrapped so no traceback shows it."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if header is None or not header.startswith("Bearer "):
        return None
    return _config.Secret(header[len("Bearer ") :])
