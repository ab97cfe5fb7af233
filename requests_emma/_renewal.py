"""One renewal: ask the lifecycle what to renew with, call the endpoints, report the result.

The steps are the lifecycle's decisions carried out in order: the refresh token first if the
lifecycle offers one; issue-token if there is none or the lifecycle says a failed refresh
falls back; retries by the policy, within one deadline for the whole renewal. Nothing here
decides anything about the token itself; this module turns the last outcome into the
exception the caller sees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import _wire
from ._cache import TokenCache, cache_key
from ._clock import Clock
from ._config import Secret, secret_or_none
from ._errors import CredentialsError, EmmaAuthError, TokenRequestError, TokenResponseError
from ._lifecycle import Freshness, TokenLifecycle
from ._outcome import Kind, Outcome
from ._retry import RetryPolicy
from ._token import Token
from ._transport import TokenEndpoint

if TYPE_CHECKING:
    from . import _retrying

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

    def renew(self, lifecycle: TokenLifecycle, policy: RetryPolicy, clock: Clock) -> Token:
        """Get a new token into ``lifecycle``, or raise an :class:`EmmaAuthError`.

        Called with the in-process lock held. With a shared cache, the cache's lock is held
        too, and a token another process saved is adopted when the lifecycle finds it newer
        (and fresh), instead of a call. The endpoint's idle connection is closed afterwards.
        """
        try:
            if self.cache is None:
                return self._renew(lifecycle, policy, clock)
            return self._renew_shared(self.cache, lifecycle, policy, clock)
        finally:
            self.endpoint.close()

    def _renew_shared(
        self, cache: TokenCache, lifecycle: TokenLifecycle, policy: RetryPolicy, clock: Clock
    ) -> Token:
        key = self.cache_key
        assert key is not None
        try:
            lock = cache.lock(key)
            lock.__enter__()
        except Exception as exc:  # noqa: BLE001 - any cache failure is an outage
            _cache_unavailable(cache, "lock", exc)
            return self._renew(lifecycle, policy, clock)
        try:
            try:
                cached = cache.load(key)
            except Exception as exc:  # noqa: BLE001
                _cache_unavailable(cache, "load", exc)
                cached = None
            now = clock.monotonic()
            if (
                cached is not None
                and lifecycle.adopt(cached, now, clock.wall())
                and lifecycle.freshness(now) is Freshness.FRESH
            ):
                logger.debug("token taken from the shared cache; no token call")
                return cached
            token = self._renew(lifecycle, policy, clock)
            try:
                cache.save(key, token)
            except Exception as exc:  # noqa: BLE001
                _cache_unavailable(cache, "save", exc)
            return token
        finally:
            try:
                lock.__exit__(None, None, None)
            except Exception as exc:  # noqa: BLE001
                _cache_unavailable(cache, "unlock", exc)

    def _renew(self, lifecycle: TokenLifecycle, policy: RetryPolicy, clock: Clock) -> Token:
        started = clock.monotonic()
        deadline = started + policy.deadline
        refresh_token = secret_or_none(lifecycle.refresh_token(started))
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
                raise self._error(path, run, policy, clock, started, deadline)
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
        raise self._error(path, run, policy, clock, started, deadline)

    def _call(
        self,
        path: str,
        body: Callable[[], dict[str, str]],
        policy: RetryPolicy,
        clock: Clock,
        deadline: float,
    ) -> _retrying.Run:
        from . import _retrying  # tenacity is imported at the first token call only

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
