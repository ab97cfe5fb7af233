"""Calls to emma's token endpoints, retried with tenacity.

The calls go through their own ``requests.Session`` (or the one the user passes for proxies
and TLS), never through ``EmmaAuth``: an explicit no-op auth keeps a session-level auth or
a ``.netrc`` entry from adding an ``Authorization`` header, and redirects are not followed,
so the client secret is never sent anywhere but the configured endpoint.

The deadline bounds each attempt as well as the retries: the body is read as it arrives and
abandoned once the deadline passes, since requests' read timeout applies to each socket read
and a server trickling bytes would never trip it. Secrets (the client secret, a refresh
token) travel as :class:`~._config.Secret` and the request body is built inside the
``post`` call, so no frame of ours holds them in plain text for a traceback to show.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

import requests
import tenacity

from . import _retry, _wire
from ._config import Secret
from ._errors import CredentialsError, EmmaAuthError, TokenRequestError, TokenResponseError
from ._retry import RetryPolicy

logger = logging.getLogger("requests_emma")

Timeout = tuple[float, float]

_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
_CREDENTIAL_REJECTIONS = frozenset({400, 401, 403})
#: A token response is a few kilobytes; anything beyond this is not one (and reading byte
#: by byte, below, costs about 2.5 µs a byte: 0.16 s at this cap).
MAX_BODY = 64 << 10


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
        unusable: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status_code = status_code
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.cause = cause
        self.unusable = unusable  # a 2xx whose body is not a usable token

    def detail(self) -> str:
        """What failed, for messages: ``HTTP 503 SERVICE_UNAVAILABLE: <emma's message>``."""
        emma = ": ".join(part for part in (self.code, self.message) if part)
        return f"{self.reason} {emma}" if emma else self.reason


_STILL_ARRIVING = "timed out (the response was still arriving at the deadline)"


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The socket under a streamed response (urllib3 1.26 and 2 keep it in ``_connection``);
    ``None`` where it cannot be found, and each read then has the attempt's timeout."""
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    return sock if isinstance(sock, socket.socket) else None


class _OutOfTime(Exception):
    """The deadline passed before the next attempt could start."""


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
        self, client_id: str, client_secret: Secret, policy: RetryPolicy, deadline: float
    ) -> _wire.TokenGrant:
        def body() -> dict[str, str]:
            return _wire.issue_token_body(client_id, client_secret.reveal())

        return self._call(_wire.ISSUE_TOKEN_PATH, body, policy, deadline)

    def refresh(
        self, refresh_token: Secret, policy: RetryPolicy, deadline: float
    ) -> _wire.TokenGrant:
        def body() -> dict[str, str]:
            return _wire.refresh_token_body(refresh_token.reveal())

        return self._call(_wire.REFRESH_TOKEN_PATH, body, policy, deadline)

    def _call(
        self,
        path: str,
        body: Callable[[], dict[str, str]],
        policy: RetryPolicy,
        deadline: float,
    ) -> _wire.TokenGrant:
        started = self.clock()
        attempts = 0
        last: _AttemptFailed | None = None
        gave_up = ""  # why the retries stopped early, for the error message

        def attempt() -> _wire.TokenGrant:
            nonlocal attempts, last
            if deadline - self.clock() <= 0:
                raise _OutOfTime
            attempts += 1
            try:
                return self._attempt(path, body, deadline)
            except _AttemptFailed as failure:
                last = failure
                raise

        backoff = tenacity.wait_exponential(
            multiplier=policy.wait_initial, max=policy.wait_max
        ) + tenacity.wait_random(0, policy.wait_jitter)

        def wait(state: tenacity.RetryCallState) -> float:
            return max(backoff(state), _failure_of(state).retry_after or 0.0)

        def stop(state: tenacity.RetryCallState) -> bool:
            nonlocal gave_up
            if state.attempt_number >= policy.attempts:
                return True
            now = self.clock()
            if now + (state.upcoming_sleep or 0.0) < deadline:
                return False
            retry_after = _failure_of(state).retry_after
            if retry_after is not None and now + retry_after >= deadline:
                gave_up = (
                    f"the server asked to wait {retry_after:.0f} seconds (Retry-After), "
                    f"past the {policy.deadline:g} s deadline"
                )
            else:
                gave_up = f"the next attempt would pass the {policy.deadline:g} s deadline"
            return True

        def before_sleep(state: tenacity.RetryCallState) -> None:
            logger.warning(
                "token call POST %s failed (%s), attempt %d of %d; retrying in %.2f s",
                path,
                _failure_of(state).detail(),
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
            last = failure
        except _OutOfTime:
            gave_up = f"no time left before the {policy.deadline:g} s deadline"
        # Raised outside the except clauses, so no private type rides along as __context__.
        error = self._error(path, last, attempts, self.clock() - started, gave_up)
        raise error from (last.cause if last is not None else None)

    def _attempt(
        self, path: str, body: Callable[[], dict[str, str]], deadline: float
    ) -> _wire.TokenGrant:
        """One call, its timeouts cut to the time left and its body read by the deadline."""
        left = deadline - self.clock()
        timeout = (min(self.timeout[0], left), min(self.timeout[1], left))
        try:
            with self.session.post(
                self.base_url + path,
                json=body(),  # built here only, so no local of ours holds the secret
                headers=_HEADERS,
                timeout=timeout,
                allow_redirects=False,
                auth=_no_authorization,
                stream=True,
            ) as response:
                content = self._read(response, deadline)
        except requests.exceptions.SSLError as exc:
            raise _AttemptFailed("TLS failed", retryable=False, cause=_scrubbed(exc)) from None
        except requests.Timeout as exc:
            raise _AttemptFailed("timed out", retryable=True, cause=_scrubbed(exc)) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            reason = _os_reason(exc)
            raise _AttemptFailed(
                f"connection failed ({reason})" if reason else "connection failed",
                retryable=True,
                cause=_scrubbed(exc),
            ) from None
        except _AttemptFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. OSError for a missing CA bundle
            # Anything else requests or urllib3 raise still becomes an EmmaAuthError, its
            # traceback (whose frames hold the body) scrubbed like the rest.
            raise _AttemptFailed(
                f"request failed ({type(exc).__name__}: {exc})",
                retryable=False,
                cause=_scrubbed(exc),
            ) from None

        status = response.status_code
        if 200 <= status < 300:
            if content is None:
                reason = f"token response is larger than {MAX_BODY // 1024} KiB"
            else:
                try:
                    return _wire.parse_token(content, self.wall_clock())
                except TokenResponseError as exc:
                    reason = str(exc)
            raise _AttemptFailed(reason, retryable=False, status_code=status, unusable=True)
        code, message = _wire.parse_error(content or b"")
        raise _AttemptFailed(
            f"HTTP {status}",
            retryable=status in _retry.RETRYABLE_STATUSES,
            status_code=status,
            code=code,
            message=message,
            retry_after=_retry.parse_retry_after(
                response.headers.get("Retry-After"), self.wall_clock()
            ),
        )

    def _read(self, response: requests.Response, deadline: float) -> bytes | None:
        """The body, or ``None`` past :data:`MAX_BODY`; abandoned once the deadline passes.

        One byte at a time, each read's socket timeout cut to the time left: a larger chunk
        blocks until it is full, and a timeout set once per attempt lets a server trickling
        bytes hold a read past the deadline. A token is a few kilobytes.
        """
        content = bytearray()
        expected = response.headers.get("Content-Length")
        sock = _socket_of(response)
        chunks = response.iter_content(chunk_size=1)
        while expected is None or not expected.isdigit() or len(content) < int(expected):
            left = deadline - self.clock()
            if left <= 0:
                raise _AttemptFailed(_STILL_ARRIVING, retryable=True)
            if sock is not None:
                sock.settimeout(min(self.timeout[1], left))
            try:
                chunk = next(chunks, None)
            except requests.ConnectionError:  # how iter_content reports a read timeout
                if self.clock() >= deadline:
                    raise _AttemptFailed(_STILL_ARRIVING, retryable=True) from None
                raise
            if chunk is None:
                break
            content += chunk
            if len(content) > MAX_BODY:
                return None
        return bytes(content)

    def _error(
        self,
        path: str,
        failure: _AttemptFailed | None,
        attempts: int,
        elapsed: float,
        gave_up: str,
    ) -> EmmaAuthError:
        detail = "no attempt made" if failure is None else failure.detail()
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f} s"
        status = None if failure is None else failure.status_code
        if failure is not None and failure.unusable:
            return TokenResponseError(
                f"POST {path} answered HTTP {status}, but the {failure.reason}; "
                f"{tries} (base URL {self.base_url})"
            )
        if path == _wire.ISSUE_TOKEN_PATH and status in _CREDENTIAL_REJECTIONS:
            assert failure is not None
            return CredentialsError(
                f"emma rejected the client credentials (POST {path}: {detail}; {tries}); "
                "check the client ID and secret (EMMA_CLIENT_ID, EMMA_CLIENT_SECRET) "
                "and that the service app still exists",
                status_code=status,
                code=failure.code,
                message=failure.message,
            )
        text = f"POST {path} failed: {detail}; "
        text += f"{gave_up}; gave up after {tries}" if gave_up else tries
        text += f" (base URL {self.base_url})"
        if status == 404:
            text += "; check the base URL: emma's ends in /external"
        return TokenRequestError(
            text,
            endpoint=path,
            status_code=status,
            code=None if failure is None else failure.code,
            message=None if failure is None else failure.message,
            attempts=attempts,
            elapsed=elapsed,
        )


def _failure_of(state: tenacity.RetryCallState) -> _AttemptFailed:
    assert state.outcome is not None
    failure = state.outcome.exception()
    assert isinstance(failure, _AttemptFailed)
    return failure


def _os_reason(exc: BaseException) -> str | None:
    """The operating system's words for a network failure ("Connection refused", "Name or
    service not known"), found down the chain of causes urllib3 and requests wrap it in."""
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        pending.extend((current.__cause__, current.__context__, getattr(current, "reason", None)))
        pending.extend(current.args)
    return None


def _scrubbed(exc: BaseException) -> BaseException:
    """``exc`` without what would show the request body, which holds the client secret or a
    refresh token: the request itself, and the tracebacks down its chain of causes, whose
    frames (ours, requests', urllib3's) hold the body in their locals."""
    if isinstance(exc, requests.RequestException):
        exc.request = None
        exc.response = None
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        link = pending.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        link.__traceback__ = None
        pending += (link.__cause__, link.__context__)
    return exc
