"""Fault injection on the token endpoint: retries, Retry-After, the deadline, errors, logs.

Waits are recorded through the clock's sleep, not measured; the few tests that must
measure wall time (a slow endpoint, a trickling response) use wide margins.
"""

from __future__ import annotations

import copy
import email.utils
import json
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from cli_runs import closed_port
from fakes import FakeClock, RawServer, answer, auth_for, cut_short, one_byte_every, use_clock

from requests_emma import (
    CredentialsError,
    EmmaAuth,
    EmmaAuthError,
    RetryPolicy,
    TokenRequestError,
    TokenResponseError,
    _errors,
    _system_clock,
)
from requests_emma._core.outcome import MAX_BODY
from requests_emma.testing import FakeEmmaServer, no_retry_waits

RETRYABLE = [408, 425, 429, 500, 502, 503, 504]


class RecordingSession(requests.Session):
    """A real Session that notes the timeout of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[Any] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self.timeouts.append(kwargs.get("timeout"))
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def recording_session() -> Iterator[RecordingSession]:
    """A requests session for token calls that records what it sends."""
    with RecordingSession() as recording:
        yield recording


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on: connections are refused."""
    return f"http://127.0.0.1:{closed_port()}/external"


def make_auth(server: FakeEmmaServer, **policy: Any) -> EmmaAuth:
    return auth_for(
        server,
        retry=RetryPolicy(**policy),
    )


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


def chain(error: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts."""
    seen: BaseException | None = error
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


# -- what is retried ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", RETRYABLE)
def test_retryable_status_is_retried(
    server: FakeEmmaServer, waits: list[float], status: int
) -> None:
    """A retryable status is retried and the renewal then succeeds."""
    server.fail_next_token_calls(2, status)
    auth = make_auth(server)
    assert server.is_valid_access_token(auth.get_token().access_token)
    assert server.issue_calls == 3
    assert len(waits) == 2


@pytest.mark.parametrize("status", [400, 403])
def test_issue_token_rejecting_credentials_is_not_retried(
    server: FakeEmmaServer, waits: list[float], status: int
) -> None:
    """issue-token answering 400, 401 or 403 raises CredentialsError after one call."""
    server.fail_next_token_calls(1, status, body=error_body("UNAUTHORIZED", "Bad client"))
    with pytest.raises(CredentialsError) as caught:
        make_auth(server).get_token()
    assert server.issue_calls == 1
    assert waits == []
    assert caught.value.status_code == status
    assert caught.value.message == "Bad client"


@pytest.mark.parametrize("status", [404, 405, 409, 422, 501, 505])
def test_other_failure_statuses_are_not_retried(
    server: FakeEmmaServer, waits: list[float], status: int
) -> None:
    """Other 4xx (and 5xx not known to be passing) raise TokenRequestError after one call."""
    server.fail_next_token_calls(1, status, body=error_body("NOPE", "Not this way"))
    with pytest.raises(TokenRequestError) as caught:
        make_auth(server).get_token()
    assert server.issue_calls == 1
    assert waits == []
    assert caught.value.status_code == status


def test_refused_refresh_token_falls_back_without_retrying(
    server: FakeEmmaServer, waits: list[float]
) -> None:
    """refresh-token answering 401 is not retried: issue-token is called instead."""
    auth = make_auth(server)
    clock = FakeClock()
    use_clock(auth, clock)
    first = auth.get_token()
    clock.advance(301)
    server.fail_next_token_calls(1, 401, body=error_body("UNAUTHORIZED", "Token is not valid"))
    second = auth.get_token()
    assert second.access_token != first.access_token
    assert (server.refresh_calls, server.issue_calls) == (1, 2)
    assert waits == []


def test_planned_sequence_of_failures_then_success(
    server: FakeEmmaServer, waits: list[float]
) -> None:
    """503, 429, 502, 504 then a token: four retries, then success."""
    for status in (503, 429, 502, 504):
        server.fail_next_token_calls(1, status)
    auth = make_auth(server, attempts=5)
    assert server.is_valid_access_token(auth.get_token().access_token)
    assert server.issue_calls == 5
    assert len(waits) == 4


def test_retryable_then_non_retryable_stops_at_the_latter(
    server: FakeEmmaServer, waits: list[float]
) -> None:
    """A 503 is retried; the 400 after it ends the renewal at once."""
    server.fail_next_token_calls(1, 503)
    server.fail_next_token_calls(1, 400, body=error_body("BAD_REQUEST", "Bad client"))
    with pytest.raises(CredentialsError):
        make_auth(server).get_token()
    assert server.issue_calls == 2
    assert len(waits) == 1


def test_attempts_bound_the_calls(server: FakeEmmaServer, waits: list[float]) -> None:
    """With every call failing, exactly `attempts` calls are made."""
    server.fail_next_token_calls(10, 503)
    with pytest.raises(TokenRequestError) as caught:
        make_auth(server, attempts=3).get_token()
    assert server.issue_calls == 3
    assert caught.value.attempts == 3
    assert len(waits) == 2


def test_one_attempt_means_no_retry(server: FakeEmmaServer, waits: list[float]) -> None:
    """RetryPolicy(attempts=1) makes a single call and never waits."""
    server.fail_next_token_calls(2, 503)
    with pytest.raises(TokenRequestError):
        make_auth(server, attempts=1).get_token()
    assert server.issue_calls == 1
    assert waits == []


def test_timeout_is_retried(server: FakeEmmaServer) -> None:
    """A call that times out is retried, and the next one succeeds."""
    answered = threading.Event()
    calls = 0

    def hold_the_first_call() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            answered.wait(10)  # until the client has given up on it

    class ReleasingClock(_system_clock.SystemClock):
        """Real time; the wait before the retry releases the held first call instead."""

        def sleep(self, seconds: float) -> None:
            answered.set()

    server.token_hook = hold_the_first_call
    auth = auth_for(
        server,
        timeout=(3.05, 0.2),
        retry=RetryPolicy(attempts=3),
    )
    use_clock(auth, ReleasingClock())
    assert server.is_valid_access_token(auth.get_token().access_token)
    assert server.issue_calls == 2


def test_closed_port_is_retried_then_fails_with_the_connection_error_chained(
    closed_port_url: str, waits: list[float]
) -> None:
    """A refused connection is retried; the last requests.ConnectionError is the cause."""
    auth = EmmaAuth("id", "secret", base_url=closed_port_url, retry=RetryPolicy(attempts=3))
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    error = caught.value
    assert error.attempts == 3
    assert len(waits) == 2
    assert error.status_code is None
    assert isinstance(error.__cause__, requests.ConnectionError)
    assert "connection failed" in str(error)


# -- backoff and Retry-After -------------------------------------------------------------------


def test_waits_grow_exponentially_up_to_wait_max(
    server: FakeEmmaServer, waits: list[float]
) -> None:
    """Without jitter, waits double from wait_initial and stop growing at wait_max."""
    server.fail_next_token_calls(5, 503)
    auth = make_auth(server, attempts=6, wait_initial=1, wait_max=4, wait_jitter=0)
    auth.get_token()
    assert waits == [1, 2, 4, 4, 4]


def test_jitter_adds_at_most_wait_jitter(server: FakeEmmaServer, waits: list[float]) -> None:
    """Jitter adds between 0 and wait_jitter seconds to each wait."""
    server.fail_next_token_calls(4, 503)
    auth = make_auth(server, attempts=5, wait_initial=1, wait_max=100, wait_jitter=0.5)
    auth.get_token()
    assert len(waits) == 4
    for base, wait in zip([1, 2, 4, 8], waits):
        assert base <= wait <= base + 0.5


def test_retry_after_seconds_is_a_floor(server: FakeEmmaServer, waits: list[float]) -> None:
    """Retry-After: 7 makes the next attempt wait 7 s, more than the backoff would."""
    server.fail_next_token_calls(1, 429, headers={"Retry-After": "7"})
    auth = make_auth(server, wait_initial=0.1, wait_max=1, wait_jitter=0)
    auth.get_token()
    assert waits == [7.0]


def test_retry_after_shorter_than_backoff_does_not_shorten_it(
    server: FakeEmmaServer, waits: list[float]
) -> None:
    """Retry-After is a floor only: a longer backoff still applies."""
    server.fail_next_token_calls(1, 503, headers={"Retry-After": "1"})
    auth = make_auth(server, wait_initial=3, wait_max=10, wait_jitter=0)
    auth.get_token()
    assert waits == [3.0]


def test_retry_after_http_date_is_a_floor(server: FakeEmmaServer, waits: list[float]) -> None:
    """Retry-After as an HTTP-date 12 s ahead makes the next attempt wait 12 s."""
    auth = make_auth(server, wait_initial=0.1, wait_max=1, wait_jitter=0)
    clock = use_clock(auth, FakeClock())
    date = email.utils.formatdate(clock.wall() + 12, usegmt=True)
    server.fail_next_token_calls(1, 503, headers={"Retry-After": date})
    auth.get_token()
    assert clock.sleeps == [12.0]


@pytest.mark.parametrize("form", ["seconds", "date"])
def test_retry_after_past_the_deadline_stops_at_once(
    server: FakeEmmaServer, waits: list[float], form: str
) -> None:
    """A Retry-After beyond the deadline ends the renewal at once, saying so; no sleep."""
    auth = make_auth(server, attempts=5, deadline=10)
    clock = use_clock(auth, FakeClock())
    header = "60" if form == "seconds" else email.utils.formatdate(clock.wall() + 60, usegmt=True)
    server.fail_next_token_calls(3, 503, headers={"Retry-After": header})
    started = time.monotonic()
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    assert time.monotonic() - started < 5
    assert server.issue_calls == 1
    assert clock.sleeps == []
    assert "asked to wait 60 seconds" in str(caught.value)
    assert caught.value.status_code == 503


# -- the deadline ------------------------------------------------------------------------------


def test_deadline_cuts_waits_and_timeouts(
    server: FakeEmmaServer, recording_session: RecordingSession
) -> None:
    """Sleeps and attempt timeouts together stay within the deadline (fake clock)."""
    clock = FakeClock()
    auth = auth_for(
        server,
        session=recording_session,
        timeout=(3.05, 10.0),
        retry=RetryPolicy(attempts=10, deadline=12, wait_initial=4, wait_max=100, wait_jitter=0),
    )
    use_clock(auth, clock)
    server.fail_next_token_calls(10, 503)
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    # t=0 attempt, wait 4, t=4 attempt, wait 8 would end at 12: the deadline. Stop.
    assert clock.sleeps == [4]
    assert caught.value.attempts == 2
    assert recording_session.timeouts == [(3.05, 10.0), (3.05, 8.0)]


class OversleepingClock(FakeClock):
    """A fake clock whose every sleep overruns by 10 s (a loaded machine, exaggerated)."""

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.advance(10)


def test_no_attempt_starts_after_the_deadline(server: FakeEmmaServer) -> None:
    """If a wait overruns the deadline, no attempt follows; the last failure is reported."""
    clock = OversleepingClock()
    auth = make_auth(server, deadline=12, wait_initial=4, wait_jitter=0)
    use_clock(auth, clock)
    server.fail_next_token_calls(5, 503)
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    assert server.issue_calls == 1
    assert (caught.value.attempts, caught.value.status_code) == (1, 503)
    assert "no time left before the 12 s deadline" in str(caught.value)


def test_a_refresh_refused_at_the_deadline_leaves_issue_token_uncalled(
    server: FakeEmmaServer,
) -> None:
    """A refusal that arrives after the deadline drops the refresh token; issue-token, with no
    time left, is not called."""
    clock = FakeClock()
    auth = make_auth(server, deadline=20)
    use_clock(auth, clock)
    auth.get_token()
    clock.advance(301)
    server.fail_next_token_calls(1, 400, body=error_body("BAD_REQUEST", "Invalid refresh token"))
    server.token_hook = lambda: clock.advance(25)  # the refresh call takes 25 s
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    assert (server.refresh_calls, server.issue_calls) == (1, 1)  # the first token only
    assert caught.value.endpoint == "/v1/issue-token"
    assert "still arriving at the deadline" in str(caught.value)
    server.token_hook = None
    auth.get_token()  # the next renewal has no refresh token left: issue-token
    assert (server.refresh_calls, server.issue_calls) == (1, 2)


@pytest.mark.slow
def test_a_read_never_outlasts_the_deadline(raw_server: Callable[..., RawServer]) -> None:
    """A body whose bytes each come within every read timeout, one gap ending just short of
    the deadline and the next past it, is cut off at the deadline, not read out."""
    server = raw_server(one_byte_every(0.8))  # bytes at 0.8 s and 1.6 s: the deadline between
    auth = EmmaAuth(
        "id",
        "secret",
        base_url=server.base_url,
        timeout=(3.05, 10.0),
        retry=RetryPolicy(deadline=1.0),
    )
    started = time.monotonic()
    with pytest.raises(TokenRequestError, match="still arriving at the deadline"):
        auth.get_token()
    # Read timeouts alone (even cut to the 1 s left) never trip on 0.8 s gaps: 80 s in all.
    assert time.monotonic() - started < 4.5


@pytest.mark.slow
def test_slow_endpoint_fails_within_the_deadline(server: FakeEmmaServer) -> None:
    """A token endpoint slower than the deadline fails by the deadline, not when it answers."""
    server.token_delay = 6  # each answer would succeed, but only after 6 s
    auth = make_auth(server, attempts=5, deadline=1.0, wait_initial=0.1)
    started = time.monotonic()
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 4.5
    assert "timed out" in str(caught.value)
    assert caught.value.elapsed < 4.5


@pytest.mark.slow
def test_a_trickling_response_is_abandoned_at_the_deadline(
    raw_server: Callable[..., RawServer],
) -> None:
    """A token response arriving a byte at a time is given up at the deadline, not read out."""
    server = raw_server(one_byte_every(0.1))  # 10 s in all
    auth = EmmaAuth("id", "secret", base_url=server.base_url, retry=RetryPolicy(deadline=1.0))
    started = time.monotonic()
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    elapsed = time.monotonic() - started
    assert elapsed < 5  # the whole body takes 10 s
    assert caught.value.attempts == 1
    assert caught.value.elapsed < 5
    assert str(caught.value).startswith("POST /v1/issue-token failed: timed out (the response")


def test_a_connection_lost_while_reading_the_body_is_retried(
    raw_server: Callable[..., RawServer], waits: list[float]
) -> None:
    """A connection that closes halfway through the token response is retried."""
    server = raw_server(cut_short, answer)
    auth = EmmaAuth("id", "secret", base_url=server.base_url)
    assert auth.get_token().access_token == "raw-access"
    assert server.connections == 2
    assert len(waits) == 1


@pytest.mark.slow
def test_unreachable_endpoint_fails_within_the_deadline(closed_port_url: str) -> None:
    """Against a closed port, attempts go on with backoff waits until the next wait would pass
    the deadline: the renewal then fails, never having slept past it (fake clock)."""
    policy = RetryPolicy(
        attempts=1000, deadline=1.5, wait_initial=0.05, wait_max=0.2, wait_jitter=0
    )
    auth = EmmaAuth("id", "secret", base_url=closed_port_url, retry=policy)
    clock = use_clock(auth, FakeClock())
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    # 0.05 + 0.1 + 6 * 0.2 = 1.35 s slept; one more 0.2 s wait would end past 1.5 s.
    assert clock.sleeps == pytest.approx([0.05, 0.1] + [0.2] * 6)
    assert caught.value.attempts == 9
    assert caught.value.status_code is None


def test_deadline_spans_refresh_and_issue(
    server: FakeEmmaServer, recording_session: RecordingSession
) -> None:
    """After a refused refresh, issue-token gets only the time left of the same deadline."""
    clock = FakeClock()
    auth = auth_for(
        server,
        session=recording_session,
        timeout=(3.05, 30.0),
        retry=RetryPolicy(deadline=20, wait_initial=6, wait_jitter=0),
    )
    use_clock(auth, clock)
    auth.get_token()
    clock.advance(301)
    server.fail_next_token_calls(1, 503)
    server.fail_next_token_calls(1, 400, body=error_body("BAD_REQUEST", "Invalid refresh token"))
    auth.get_token()
    # refresh: attempt, wait 6 s, attempt (400); issue: the 14 s left, not a fresh 20 s.
    assert recording_session.timeouts[-3:] == [(3.05, 20.0), (3.05, 14.0), (3.05, 14.0)]
    assert (server.refresh_calls, server.issue_calls) == (2, 2)


# -- what the user gets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("situation", "kind", "fields"),
    [
        ("exhausted", TokenRequestError, {"status_code": 503, "attempts": 2}),
        ("retry-after", TokenRequestError, {"status_code": 503, "attempts": 1}),
        ("closed-port", TokenRequestError, {"status_code": None, "attempts": 2}),
        ("rejected", CredentialsError, {"status_code": 403}),
    ],
)
def test_no_tenacity_type_reaches_the_user(
    server: FakeEmmaServer,
    closed_port_url: str,
    waits: list[float],
    situation: str,
    kind: type[EmmaAuthError],
    fields: dict[str, object],
) -> None:
    """Every failure is one of ours, with its status and attempts; no tenacity (or private)
    type is in its chain."""
    auth = make_auth(server, attempts=2, deadline=10)
    if situation == "exhausted":
        server.fail_next_token_calls(5, 503)
    elif situation == "retry-after":
        server.fail_next_token_calls(5, 503, headers={"Retry-After": "60"})
    elif situation == "rejected":
        server.fail_next_token_calls(1, 403)
    else:
        auth = EmmaAuth("id", "secret", base_url=closed_port_url, retry=RetryPolicy(attempts=2))
    with pytest.raises(EmmaAuthError) as caught:
        auth.get_token()
    assert type(caught.value) is kind
    assert {name: getattr(caught.value, name) for name in fields} == fields
    for link in chain(caught.value):
        module = type(link).__module__
        assert not module.startswith("tenacity")
        assert not type(link).__name__.startswith("_"), type(link)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"tokenType": "Bearer"}', "the token response has no accessToken"),
        (b'{"accessToken": "abc", ', "the token response is not JSON"),
        (b"[" * 50_000, "the token response is not JSON"),
    ],
)
def test_unusable_token_response_says_what_failed(
    server: FakeEmmaServer, waits: list[float], body: bytes, reason: str
) -> None:
    """TokenResponseError names the path, the status, what is wrong, attempts and time."""
    server.fail_next_token_calls(1, 200, body=body)
    with pytest.raises(TokenResponseError) as caught:
        make_auth(server).get_token()
    text = str(caught.value)
    assert f"POST /v1/issue-token answered HTTP 200, but {reason}; 1 attempt in " in text
    assert (caught.value.__cause__, caught.value.__context__) == (None, None)
    assert server.issue_calls == 1


def test_an_oversized_token_response_fails_clearly(
    server: FakeEmmaServer, waits: list[float]
) -> None:
    """A 2xx body over 64 KiB raises TokenResponseError saying so, after one call."""
    server.fail_next_token_calls(1, 200, body=b"{" + b" " * MAX_BODY + b"}")
    with pytest.raises(TokenResponseError, match="larger than 64 KiB"):
        make_auth(server).get_token()
    assert server.issue_calls == 1


def test_every_error_survives_pickle_and_copy() -> None:
    """Each exception type round-trips through pickle and copy with its message and fields."""
    errors = [
        EmmaAuthError("failed"),
        CredentialsError("rejected", status_code=401, code="UNAUTHORIZED", message="Bad client"),
        TokenRequestError(
            "failed",
            endpoint="/v1/issue-token",
            status_code=503,
            code="SERVICE_UNAVAILABLE",
            message="Down",
            attempts=3,
            elapsed=1.5,
        ),
        TokenResponseError("not JSON"),
    ]
    # Each one raised: the private base of two of them is never raised itself.
    ours = {
        kind
        for name, kind in vars(_errors).items()
        if isinstance(kind, type) and not name.startswith("_")
    }
    assert {type(error) for error in errors} == ours
    for error in errors:
        for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
            assert type(clone) is type(error)
            assert (str(clone), vars(clone)) == (str(error), vars(error))


def test_error_says_what_failed(server: FakeEmmaServer, waits: list[float]) -> None:
    """The error names the path, status, emma's code and message, attempts and time."""
    body = error_body("SERVICE_UNAVAILABLE", "Keycloak is restarting")
    server.fail_next_token_calls(3, 503, body=body)
    with pytest.raises(TokenRequestError) as caught:
        make_auth(server, attempts=3).get_token()
    error = caught.value
    text = str(error)
    for part in ("/v1/issue-token", "503", "SERVICE_UNAVAILABLE", "Keycloak is restarting"):
        assert part in text
    assert "3 attempts in " in text
    assert (error.endpoint, error.status_code, error.attempts) == ("/v1/issue-token", 503, 3)
    assert (error.code, error.message) == ("SERVICE_UNAVAILABLE", "Keycloak is restarting")
    assert 0 <= error.elapsed < 10


def test_credentials_error_says_what_failed(server: FakeEmmaServer, waits: list[float]) -> None:
    """A rejection after retries still names the path, status, emma's message and attempts."""
    server.fail_next_token_calls(1, 502)
    server.fail_next_token_calls(1, 400, body=error_body("BAD_REQUEST", "Unknown client"))
    with pytest.raises(CredentialsError) as caught:
        make_auth(server).get_token()
    text = str(caught.value)
    for part in ("/v1/issue-token", "400", "BAD_REQUEST", "Unknown client", "2 attempts"):
        assert part in text


def test_a_base_url_with_an_extra_path_says_check_the_base_url(server: FakeEmmaServer) -> None:
    """A base URL ending in /v1 sends the token call to /v1/v1/issue-token; the 401 there
    blames the base URL, with the URL called, not the credentials."""
    auth = EmmaAuth(server.client_id, server.client_secret, base_url=server.base_url + "/v1")
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    assert not isinstance(caught.value, CredentialsError)
    assert f"check the base URL: {server.base_url}/v1/v1/issue-token" in str(caught.value)
    assert server.client_secret not in str(caught.value)


@pytest.mark.parametrize("situation", ["issue", "refresh", "closed-port"])
def test_errors_never_carry_a_secret(
    server: FakeEmmaServer, closed_port_url: str, waits: list[float], situation: str
) -> None:
    """No exception in the chain shows the client secret or a token, in str, repr or args."""
    auth = make_auth(server, attempts=2)
    secrets = [server.client_secret]
    if situation == "refresh":
        clock = FakeClock()
        use_clock(auth, clock)
        token = auth.get_token()
        assert token.refresh_token is not None
        secrets += [token.access_token, token.refresh_token]
        clock.advance(301)
        server.fail_next_token_calls(5, 500)
    elif situation == "issue":
        server.fail_next_token_calls(5, 500)
    else:
        auth = EmmaAuth(
            "id", server.client_secret, base_url=closed_port_url, retry=RetryPolicy(attempts=2)
        )
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    for link in chain(caught.value):
        shown = f"{link} {link!r} {link.args!r} {vars(link)!r}"
        for secret in secrets:
            assert secret not in shown
        if isinstance(link, requests.RequestException):
            assert link.request is None  # the token request body holds a secret


# -- logging -----------------------------------------------------------------------------------


def test_logs_retry_scheduled_and_token_issued(
    server: FakeEmmaServer, waits: list[float], debug_log: pytest.LogCaptureFixture
) -> None:
    """A retry is a WARNING with attempt, wait and reason; the new token a DEBUG with lifetime."""
    server.fail_next_token_calls(1, 503, headers={"Retry-After": "2"})
    token = make_auth(server, wait_initial=0.1, wait_jitter=0).get_token()
    retries = [r for r in debug_log.records if "retrying" in r.getMessage()]
    assert len(retries) == 1
    assert retries[0].levelno == logging.WARNING
    message = retries[0].getMessage()
    assert "/v1/issue-token" in message
    assert "HTTP 503" in message
    assert "attempt 1 of 5" in message
    assert "2.00 s" in message
    issued = [r for r in debug_log.records if "lifetime" in r.getMessage()]
    assert [r.levelno for r in issued] == [logging.DEBUG]
    assert "300 s" in issued[0].getMessage()
    for record in debug_log.records:
        assert server.client_secret not in record.getMessage()
        assert token.access_token not in record.getMessage()


def test_routine_renewal_logs_nothing_above_debug(
    server: FakeEmmaServer, debug_log: pytest.LogCaptureFixture
) -> None:
    """Issuing and refreshing a token without trouble logs at DEBUG only."""
    auth = make_auth(server)
    clock = FakeClock()
    use_clock(auth, clock)
    auth.get_token()
    clock.advance(301)
    auth.get_token()
    ours = [r for r in debug_log.records if r.name == "requests_emma"]
    assert ours
    assert {r.levelno for r in ours} == {logging.DEBUG}


def test_a_failure_raised_to_the_caller_is_not_logged_too(
    server: FakeEmmaServer, waits: list[float], debug_log: pytest.LogCaptureFixture
) -> None:
    """A renewal that fails with no token to fall back on raises; the caller reports it once,
    so the library logs only the scheduled retries, not the failure again."""
    server.fail_next_token_calls(2, 503)
    with pytest.raises(TokenRequestError, match="2 attempts"):
        make_auth(server, attempts=2).get_token()
    messages = [r.getMessage() for r in debug_log.records if r.levelno >= logging.WARNING]
    assert len(messages) == 1
    assert "retrying" in messages[0]


# -- no_retry_waits --------------------------------------------------------------------------


class SleepRecorder:
    """Stands in for the time module in requests_emma._system_clock: real time, recorded sleeps."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def real_sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    """Sleeps that would really happen between attempts, recorded instead."""
    recorder = SleepRecorder()
    monkeypatch.setattr(_system_clock, "time", recorder)
    return recorder


def test_waits_really_sleep_by_default(server: FakeEmmaServer, real_sleeps: SleepRecorder) -> None:
    """Outside no_retry_waits, the wait between attempts is slept."""
    server.fail_next_token_calls(1, 503, headers={"Retry-After": "20"})
    make_auth(server).get_token()
    assert real_sleeps.slept == [20.0]


def test_no_retry_waits_skips_the_sleeps(
    server: FakeEmmaServer, real_sleeps: SleepRecorder
) -> None:
    """Inside no_retry_waits, retries happen at once; attempts and results are unchanged."""
    server.fail_next_token_calls(2, 503, headers={"Retry-After": "20"})
    with no_retry_waits():
        assert server.is_valid_access_token(make_auth(server).get_token().access_token)
    assert server.issue_calls == 3
    assert real_sleeps.slept == []


def test_no_retry_waits_applies_to_other_threads(
    server: FakeEmmaServer, real_sleeps: SleepRecorder
) -> None:
    """A renewal in another thread skips its waits too."""
    server.fail_next_token_calls(1, 503, headers={"Retry-After": "20"})
    auth = make_auth(server)
    results: list[object] = []
    with no_retry_waits():
        worker = threading.Thread(target=lambda: results.append(auth.get_token()))
        worker.start()
        worker.join(30)
    assert len(results) == 1
    assert real_sleeps.slept == []


def test_no_retry_waits_restores_the_previous_setting(real_sleeps: SleepRecorder) -> None:
    """Leaving the block, nested or by an exception, restores what was there before."""
    with no_retry_waits():
        with no_retry_waits():
            pass
        _system_clock.SYSTEM_CLOCK.sleep(1)
        assert real_sleeps.slept == []
    with pytest.raises(KeyError), no_retry_waits():
        raise KeyError
    _system_clock.SYSTEM_CLOCK.sleep(1)
    assert real_sleeps.slept == [1]


def test_no_retry_waits_keeps_the_deadline(server: FakeEmmaServer) -> None:
    """Skipping waits does not skip the rule: a Retry-After past the deadline still stops."""
    server.fail_next_token_calls(1, 503, headers={"Retry-After": "60"})
    with no_retry_waits(), pytest.raises(TokenRequestError, match="asked to wait 60 seconds"):
        make_auth(server, deadline=10).get_token()
    assert server.issue_calls == 1
