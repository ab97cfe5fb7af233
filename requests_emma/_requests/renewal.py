"""One renewal: ask the lifecycle what to renew with, call the endpoints, report the result.

The steps are the lifecycle's decisions carried out in order: the refresh token first if the
lifecycle offers one; issue-token if there is none or the lifecycle says a failed refresh
falls back; retries by the policy, within one deadline for the whole renewal. Nothing here
decides anything about the token itself; this module turns the last outcome into the
exception the caller sees.

With a shared cache, the renewal runs under the cache's lock, waiting for it no longer than
the deadline leaves; a lock held by another process for all that time ends the renewal with
a :class:`TokenRequestError` and no call (the holder is renewing; a stuck one must not make
every process call emma). Under the lock, the entry is loaded and opened (``_entry.Sealer``:
one that does not open is logged at DEBUG and treated as absent), the lifecycle adopts what
is newer in it, and what the lifecycle then holds (a new token, or a hold on token calls
after a ``Retry-After`` or refused credentials) is sealed and saved for the others.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._caches.protocol import TokenCache, cache_key
from .._core import wire as _wire
from .._core.cache_entry import REFUSED
from .._core.clock import Clock
from .._core.lifecycle import Freshness, TokenLifecycle
from .._core.outcome import Kind, Outcome
from .._core.retry_policy import RetryPolicy
from .._core.secret import Secret, secret_or_none
from .._core.token import Token
from .._errors import CredentialsError, EmmaAuthError, TokenRequestError, TokenResponseError
from .transport import TokenEndpoint

if TYPE_CHECKING:
    from .._core import backoff as _retrying
    from .._core.cache_entry import Sealer

#: Statuses whose ``Retry-After`` holds off every token call until it has passed.
HOLD_STATUSES = frozenset({429, 503})

logger = logging.getLogger("requests_emma")


class Renewer:
    """Renews the token of one client: its endpoint, credentials and shared cache."""

    def __init__(
        self,
        endpoint: TokenEndpoint,
        client_id: str,
        client_secret: Secret,
        cache: TokenCache | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self.client_secret = client_secret
        self.cache = cache
        self.cache_key = (
            None
            if cache is None
            else cache_key(endpoint.base_url, client_id, client_secret.reveal())
        )
        self._sealer: Sealer | None = None
        if cache is not None:
            from .._core.cache_entry import Sealer  # cryptography, at the first use of a cache only

            self._sealer = Sealer(endpoint.base_url, client_id, client_secret.reveal())

    def renew(self, lifecycle: TokenLifecycle, policy: RetryPolicy, clock: Clock) -> Token:
        """Get a new token into ``lifecycle``, or raise an :class:`EmmaAuthError`.

        Called with the in-process lock held. The policy's deadline covers the whole
        renewal, the wait for a shared cache's lock included. With a shared cache, its lock
        is held too, and a token another process saved is adopted when the lifecycle finds
        it newer (and fresh), instead of a call. While the lifecycle holds token calls off
        (``Retry-After``, refused credentials), no call is made: the error says until when.
        The endpoint's idle connection is closed afterwards.
        """
        started = clock.monotonic()
        deadline = started + policy.deadline
        try:
            if self.cache is None:
                return self._renew(lifecycle, policy, clock, started, deadline)
            return self._renew_shared(self.cache, lifecycle, policy, clock, started, deadline)
        finally:
            self.endpoint.close()

    def _renew_shared(
        self,
        cache: TokenCache,
        lifecycle: TokenLifecycle,
        policy: RetryPolicy,
        clock: Clock,
        started: float,
        deadline: float,
    ) -> Token:
        key, sealer = self.cache_key, self._sealer
        assert key is not None and sealer is not None
        held_off = lifecycle.calls_held(started)
        if held_off is not None:  # known here already: not even the lock is needed
            raise self._held_error(held_off)
        try:
            lock = cache.lock(key, max(0.0, deadline - clock.monotonic()))
            lock.__enter__()
        except TimeoutError:
            waited = clock.monotonic() - started
            raise TokenRequestError(
                f"another process held the token cache lock for the whole wait ({waited:.1f} s, "
                f"deadline {policy.deadline:g} s) while it renews the token; no token call made "
                f"here, so that a stuck holder does not make every process call emma "
                f"(base URL {self.endpoint.base_url})",
                attempts=0,
                elapsed=waited,
            ) from None
        except Exception as exc:  # noqa: BLE001 - any other cache failure is an outage
            _cache_unavailable(cache, "lock", exc)
            return self._renew(lifecycle, policy, clock, started, deadline)
        try:
            try:
                sealed = cache.load(key)
            except Exception as exc:  # noqa: BLE001
                _cache_unavailable(cache, "load", exc)
                sealed = None
            now = clock.monotonic()
            entry = None if sealed is None else sealer.open(key, sealed)
            if sealed is not None and entry is None:
                logger.debug(
                    "token cache entry ignored: it does not open with this client's key "
                    "(changed, truncated, foreign, of another format or another secret)"
                )
            if (
                entry is not None
                and lifecycle.adopt(entry, now, clock.wall())
                and lifecycle.freshness(now) is Freshness.FRESH
            ):
                logger.debug("token taken from the shared cache; no token call")
                token = lifecycle.current
                assert token is not None
                return token
            held_off = lifecycle.calls_held(now)
            if held_off is not None:  # another process was told to wait
                raise self._held_error(held_off)
            try:
                token = self._renew(lifecycle, policy, clock, started, deadline)
            except EmmaAuthError:
                if lifecycle.calls_held(clock.monotonic()) is not None:
                    self._save(cache, key, sealer, lifecycle, clock)  # the fleet waits too
                raise
            self._save(cache, key, sealer, lifecycle, clock)
            return token
        finally:
            try:
                lock.__exit__(None, None, None)
            except Exception as exc:  # noqa: BLE001
                _cache_unavailable(cache, "unlock", exc)

    @staticmethod
    def _save(
        cache: TokenCache, key: str, sealer: Sealer, lifecycle: TokenLifecycle, clock: Clock
    ) -> None:
        wall = clock.wall()
        entry = lifecycle.entry_to_save(clock.monotonic(), wall)
        try:
            cache.save(key, sealer.seal(key, entry), entry.useful_until() - wall)
        except Exception as exc:  # noqa: BLE001
            _cache_unavailable(cache, "save", exc)
            return
        lifecycle.saved(entry)

    def _renew(
        self,
        lifecycle: TokenLifecycle,
        policy: RetryPolicy,
        clock: Clock,
        started: float,
        deadline: float,
    ) -> Token:
        held_off = lifecycle.calls_held(clock.monotonic())
        if held_off is not None:
            raise self._held_error(held_off)
        refresh_token = secret_or_none(lifecycle.refresh_token(clock.monotonic()))
        if refresh_token is not None:
            path = _wire.REFRESH_TOKEN_PATH
            run = self._call(
                path, lambda: _wire.refresh_token_body(refresh_token.reveal()), policy, clock,
                deadline,
            )  # fmt: skip
            outcome = run.outcome
            if outcome.kind is Kind.GRANT:
                return self._accept(lifecycle, outcome, "refreshed")
            if not lifecycle.refresh_failed(outcome.kind):
                raise self._failed(lifecycle, path, run, policy, clock, started, deadline)
            logger.debug("refresh token refused (%s); issuing a new token", outcome.detail())
        path = _wire.ISSUE_TOKEN_PATH
        run = self._call(
            path,
            lambda: _wire.issue_token_body(self.client_id, self.client_secret.reveal()),
            policy,
            clock,
            deadline,
        )
        if run.outcome.kind is Kind.GRANT:
            return self._accept(lifecycle, run.outcome, "issued")
        raise self._failed(lifecycle, path, run, policy, clock, started, deadline)

    def _failed(
        self,
        lifecycle: TokenLifecycle,
        path: str,
        run: _retrying.Run,
        policy: RetryPolicy,
        clock: Clock,
        started: float,
        deadline: float,
    ) -> EmmaAuthError:
        """The error for a renewal that failed with ``run``; emma's request to wait, or its
        refusal of the credentials, becomes the lifecycle's hold on token calls."""
        error = self._error(path, run, policy, clock, started, deadline)
        outcome, now = run.outcome, clock.monotonic()
        if isinstance(error, CredentialsError):
            error.retry_after = lifecycle.credentials_refused(now, outcome.detail())
        elif outcome.retry_after is not None and outcome.status in HOLD_STATUSES:
            lifecycle.hold_calls(now, outcome.retry_after, f"HTTP {outcome.status}")
            if isinstance(error, TokenRequestError):
                error.retry_after = outcome.retry_after
        return error

    def _held_error(self, held_off: tuple[float, str, str]) -> EmmaAuthError:
        seconds, kind, detail = held_off
        wait = f"{math.ceil(seconds):.0f} s"
        if kind == REFUSED:
            return CredentialsError(
                f"no token call made: emma rejected the client credentials ({detail}), and "
                f"token calls wait {wait} more before the next try; check the client ID and "
                "secret (EMMA_CLIENT_ID, EMMA_CLIENT_SECRET)",
                retry_after=seconds,
            )
        return TokenRequestError(
            f"no token call made: emma asked to wait ({detail} with Retry-After), and takes "
            f"token calls again in {wait} (base URL {self.endpoint.base_url})",
            attempts=0,
            elapsed=0.0,
            retry_after=seconds,
        )

    def _call(
        self,
        path: str,
        body: Callable[[], dict[str, str]],
        policy: RetryPolicy,
        clock: Clock,
        deadline: float,
    ) -> _retrying.Run:
        from .._core import (
            backoff as _retrying,  # tenacity is imported at the first token call only
        )

        return _retrying.run(
            lambda: self.endpoint.attempt(path, body, deadline, clock),
            policy,
            clock,
            deadline,
            f"token call POST {path}",
        )

    @staticmethod
    def _accept(lifecycle: TokenLifecycle, outcome: Outcome, how: str) -> Token:
        grant = outcome.grant
        assert grant is not None
        token = lifecycle.accept(grant, outcome.sent_at, outcome.sent_wall)
        logger.debug(
            "token %s; lifetime %.0f s (from %s), refresh token %s",
            how,
            grant.lifetime,
            grant.lifetime_source,
            "received" if grant.refresh_token else "kept" if token.refresh_token else "none",
        )
        return token

    def _error(
        self,
        path: str,
        run: _retrying.Run,
        policy: RetryPolicy,
        clock: Clock,
        started: float,
        deadline: float,
    ) -> EmmaAuthError:
        now = clock.monotonic()
        outcome, attempts = run.outcome, run.attempts
        gave_up = ""
        if run.out_of_time:
            gave_up = f"no time left before the {policy.deadline:g} s deadline"
        elif outcome.kind is Kind.TRANSIENT and attempts < policy.attempts:
            retry_after = outcome.retry_after
            if retry_after is not None and now + retry_after >= deadline:
                gave_up = (
                    f"the server asked to wait {retry_after:.0f} seconds (Retry-After), "
                    f"past the {policy.deadline:g} s deadline"
                )
            else:
                gave_up = f"the next attempt would pass the {policy.deadline:g} s deadline"
        error = _error_for(self.endpoint.base_url, path, outcome, attempts, now - started, gave_up)
        error.__cause__ = outcome.cause
        return error


def _cache_unavailable(cache: TokenCache, step: str, exc: Exception) -> None:
    # The type only: a message could quote a stored value or a connection URL.
    logger.warning(
        "token cache %r unavailable (%s failed: %s); carrying on with the in-memory token",
        cache,
        step,
        type(exc).__name__,
    )


def _error_for(
    base_url: str, path: str, outcome: Outcome, attempts: int, elapsed: float, gave_up: str
) -> EmmaAuthError:
    detail = outcome.detail()
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f} s"
    status = outcome.status
    if outcome.kind is Kind.UNUSABLE:
        answered = f"answered HTTP {status}" if status is not None else "answered"
        return TokenResponseError(
            f"POST {path} {answered}, but the {outcome.reason}; {tries} (base URL {base_url})"
        )
    if outcome.kind is Kind.REFUSED and path == _wire.ISSUE_TOKEN_PATH:
        return CredentialsError(
            f"emma rejected the client credentials (POST {path}: {detail}; {tries}); "
            "check the client ID and secret (EMMA_CLIENT_ID, EMMA_CLIENT_SECRET) "
            "and that the service app still exists",
            status_code=status,
            code=outcome.code,
            message=outcome.message,
        )
    text = f"POST {path} failed: {detail}; "
    text += f"{gave_up}; gave up after {tries}" if gave_up else tries
    text += f" (base URL {base_url})"
    if status == 404:
        text += "; check the base URL: emma's ends in /external"
    return TokenRequestError(
        text,
        endpoint=path,
        status_code=status,
        code=outcome.code,
        message=outcome.message,
        attempts=attempts,
        elapsed=elapsed,
    )
