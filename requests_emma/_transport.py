"""Calls to emma's token endpoints, retried with tenacity.

The calls go through their own ``requests.Session`` (or the one the user passes for proxies
and TLS), never through ``EmmaAuth``: an explicit no-op auth keeps a session-level auth or
a ``.netrc`` entry from adding an ``Authorization`` header, and redirects are not followed,
so the client secret is never sent anywhere but the configured endpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import requests
import tenacity

from . import _retry, _wire
from ._errors import CredentialsError, TokenRequestError
from ._retry import RetryPolicy

logger = logging.getLogger("requests_emma")

Timeout = tuple[float, float]

_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
_CREDENTIAL_REJECTIONS = frozenset({400, 401, 403})


class _AttemptFailed(Exception):
    """One failed call, before the decision to try again."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status_code = status_code
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.cause = cause


def _no_authorization(request: requests.PreparedRequest) -> requests.PreparedRequest:
    request.headers.pop("Authorization", None)
    return request


class TokenEndpoint:
    """Posts to issue-token and refresh-token and turns answers into ``TokenGrant``s."""

    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        timeout: Timeout,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url
        self.session = session
        self.timeout = timeout
        self.clock = clock
        self.wall_clock = wall_clock

    def issue(
        self, client_id: str, client_secret: str, policy: RetryPolicy, deadline: float
    ) -> _wire.TokenGrant:
        body = _wire.issue_token_body(client_id, client_secret)
        return self._call(_wire.ISSUE_TOKEN_PATH, body, policy, deadline)

    def refresh(self, refresh_token: str, policy: RetryPolicy, deadline: float) -> _wire.TokenGrant:
        body = _wire.refresh_token_body(refresh_token)
        return self._call(_wire.REFRESH_TOKEN_PATH, body, policy, deadline)

    def _call(
        self, path: str, body: dict[str, str], policy: RetryPolicy, deadline: float
    ) -> _wire.TokenGrant:
        started = self.clock()
        attempts = 0
        blocked_by: float | None = None  # a Retry-After that would pass the deadline

        def attempt() -> _wire.TokenGrant:
            nonlocal attempts
            attempts += 1
            return self._attempt(path, body, deadline)

        backoff = tenacity.wait_exponential(
            multiplier=policy.wait_initial, max=policy.wait_max
        ) + tenacity.wait_random(0, policy.wait_jitter)

        def wait(state: tenacity.RetryCallState) -> float:
            failure = _failure_of(state)
            return max(backoff(state), failure.retry_after or 0.0)

        def stop(state: tenacity.RetryCallState) -> bool:
            nonlocal blocked_by
            if state.attempt_number >= policy.attempts:
                return True
            if self.clock() + (state.upcoming_sleep or 0.0) < deadline:
                return False
            retry_after = _failure_of(state).retry_after
            if retry_after is not None and self.clock() + retry_after >= deadline:
                blocked_by = retry_after
            return True

        def before_sleep(state: tenacity.RetryCallState) -> None:
            logger.info(
                "token call %s failed (%s), attempt %d of %d; retrying in %.2f s",
                path,
                _failure_of(state).reason,
                state.attempt_number,
                policy.attempts,
                state.upcoming_sleep,
            )

        retrying = tenacity.Retrying(
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, _AttemptFailed) and e.retryable
            ),
            before_sleep=before_sleep,
            sleep=_retry.sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _AttemptFailed as failure:
            elapsed = self.clock() - started
            raise self._error(path, failure, attempts, elapsed, blocked_by, policy) from (
                failure.cause
            )

    def _attempt(self, path: str, body: dict[str, str], deadline: float) -> _wire.TokenGrant:
        left = deadline - self.clock()
        if left <= 0:
            raise _AttemptFailed("the deadline passed", retryable=False)
        timeout = (min(self.timeout[0], left), min(self.timeout[1], left))
        try:
            response = self.session.post(
                self.base_url + path,
                json=body,
                headers=_HEADERS,
                timeout=timeout,
                allow_redirects=False,
                auth=_no_authorization,
            )
        except requests.exceptions.SSLError as exc:
            raise _AttemptFailed("TLS failed", retryable=False, cause=_scrubbed(exc)) from None
        except requests.Timeout as exc:
            raise _AttemptFailed("timed out", retryable=True, cause=_scrubbed(exc)) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _AttemptFailed(
                "connection failed", retryable=True, cause=_scrubbed(exc)
            ) from None
        except requests.RequestException as exc:
            raise _AttemptFailed(
                f"request failed ({type(exc).__name__})", retryable=False, cause=_scrubbed(exc)
            ) from None

        with response:
            if 200 <= response.status_code < 300:
                return _wire.parse_token(response.content, self.wall_clock())
            code, message = _wire.parse_error(response.content)
            retry_after = _retry.parse_retry_after(
                response.headers.get("Retry-After"), self.wall_clock()
            )
            raise _AttemptFailed(
                f"HTTP {response.status_code}",
                retryable=response.status_code in _retry.RETRYABLE_STATUSES,
                status_code=response.status_code,
                code=code,
                message=message,
                retry_after=retry_after,
            )

    def _error(
        self,
        path: str,
        failure: _AttemptFailed,
        attempts: int,
        elapsed: float,
        blocked_by: float | None,
        policy: RetryPolicy,
    ) -> Exception:
        detail = failure.reason
        emma = ": ".join(part for part in (failure.code, failure.message) if part)
        if emma:
            detail += f" {emma}"
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f} s"
        if (
            path == _wire.ISSUE_TOKEN_PATH
            and failure.status_code in _CREDENTIAL_REJECTIONS
        ):
            return CredentialsError(
                f"emma rejected the client credentials (POST {path}: {detail}); "
                "check the client ID and secret (EMMA_CLIENT_ID, EMMA_CLIENT_SECRET) "
                "and that the service app still exists",
                status_code=failure.status_code,
                code=failure.code,
                message=failure.message,
            )
        if blocked_by is not None:
            text = (
                f"POST {path} failed ({detail}) and the server asked to wait "
                f"{blocked_by:.0f} s (Retry-After), past the {policy.deadline:g} s deadline; "
                f"gave up after {tries}"
            )
        else:
            text = f"POST {path} failed ({detail}) after {tries}"
        return TokenRequestError(
            text,
            endpoint=path,
            status_code=failure.status_code,
            code=failure.code,
            message=failure.message,
            attempts=attempts,
            elapsed=elapsed,
        )


def _failure_of(state: tenacity.RetryCallState) -> _AttemptFailed:
    assert state.outcome is not None
    failure = state.outcome.exception()
    assert isinstance(failure, _AttemptFailed)
    return failure


def _scrubbed(exc: requests.RequestException) -> requests.RequestException:
    # The failed request's body holds the client secret or a refresh token: don't let it
    # travel along in the exception chain.
    exc.request = None
    exc.response = None
    return exc
