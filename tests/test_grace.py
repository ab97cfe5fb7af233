"""Grace: a token inside its refresh margin keeps serving while its renewal fails or runs.

A fake monotonic clock moves the token into its margin (300 s token, 60 s margin: stale
from 240 s, expired at 300 s); the server's own clock is real, so the token stays valid
there. Threads are held with the server's token_hook and events; a watched lock shows who
waited for a renewal.
"""

from __future__ import annotations

import logging
import threading
import traceback
from typing import Any

import pytest
import requests
from fakes import WAIT, FakeClock, WatchedLock, auth_for

from requests_emma import EmmaAuth, RetryPolicy, TokenRequestError, _retry
from requests_emma.testing import FakeEmmaServer

STALE = 250  # seconds after the token was issued: inside the 60 s margin, not expired
EXPIRED = 301


class Worker(threading.Thread):
    """Runs one call in a thread and keeps its result or exception."""

    def __init__(self, call: Any) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc


@pytest.fixture
def clock(auth: EmmaAuth) -> FakeClock:
    fake = FakeClock()
    auth._clock = fake
    auth._endpoint.clock = fake
    return fake


@pytest.fixture
def lock(auth: EmmaAuth) -> WatchedLock:
    watched = WatchedLock()
    auth._lock = watched  # type: ignore[assignment]
    return watched


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(_retry, "sleep", recorded.append)
    return recorded


def get(server: FakeEmmaServer, auth: EmmaAuth) -> requests.Response:
    return requests.get(server.base_url + "/v1/locations", auth=auth, timeout=WAIT)


def sent_token(server: FakeEmmaServer) -> str:
    """The bearer token of the last API request the server received."""
    api = [r for r in server.requests if "token" not in r.path]
    return api[-1].headers["Authorization"].removeprefix("Bearer ")


def held_token_calls(server: FakeEmmaServer) -> tuple[threading.Event, threading.Event]:
    """Make the next token call wait in the server until released; returns (entered, release)."""
    entered, release = threading.Event(), threading.Event()
    calls = 0

    def hook() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            release.wait(WAIT)

    server.token_hook = hook
    return entered, release


# -- a failing renewal inside the margin --------------------------------------------------------


def test_failed_renewal_keeps_serving_the_valid_token(
    server: FakeEmmaServer,
    auth: EmmaAuth,
    clock: FakeClock,
    waits: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Renewal failing inside the margin: the request goes out with the current token."""
    first = auth.get_token()
    clock.advance(STALE)
    server.fail_next_token_calls(10, 503)
    with caplog.at_level(logging.WARNING, logger="requests_emma"):
        response = get(server, auth)
    assert response.status_code == 200
    assert sent_token(server) == first.access_token
    grace = [r for r in caplog.records if "still using the current token" in r.getMessage()]
    assert [r.levelno for r in grace] == [logging.WARNING]
    assert "503" in grace[0].getMessage()
    assert first.access_token not in grace[0].getMessage()


def test_renewal_inside_the_margin_costs_one_attempt_at_most(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, waits: list[float]
) -> None:
    """With the token still valid, a failing renewal makes one call and never waits."""
    auth.get_token()
    clock.advance(STALE)
    server.fail_next_token_calls(10, 503, headers={"Retry-After": "5"})
    calls_before = server.token_calls
    assert get(server, auth).status_code == 200
    assert server.token_calls - calls_before == 1
    assert waits == []


def test_renewal_inside_the_margin_backs_off(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, waits: list[float]
) -> None:
    """After a failed early renewal, requests don't retry it until a backoff has passed."""
    auth.get_token()
    clock.advance(STALE)
    server.fail_next_token_calls(2, 503)
    calls_before = server.token_calls
    for _ in range(10):
        assert get(server, auth).status_code == 200
    assert server.token_calls - calls_before == 1
    clock.advance(1.0)  # the first backoff: one second
    for _ in range(10):
        assert get(server, auth).status_code == 200
    assert server.token_calls - calls_before == 2
    clock.advance(1.0)  # the backoff doubled: not yet
    get(server, auth)
    assert server.token_calls - calls_before == 2
    clock.advance(1.0)
    get(server, auth)  # now it is tried again, and succeeds
    assert server.token_calls - calls_before == 3
    renewed = auth.get_token()
    assert sent_token(server) == renewed.access_token
    get(server, auth)
    assert server.token_calls - calls_before == 3


def test_rejected_credentials_inside_the_margin_keep_serving(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, waits: list[float]
) -> None:
    """Even a CredentialsError inside the margin leaves the still-valid token in use."""
    first = auth.get_token()
    clock.advance(STALE)
    server.fail_next_token_calls(1, 401)  # the refresh token is refused...
    assert get(server, auth).status_code == 200
    clock.advance(1.0)  # the backoff after a failed early renewal
    server.fail_next_token_calls(1, 403)  # ...and so are the credentials
    assert get(server, auth).status_code == 200
    assert sent_token(server) == first.access_token
    assert (server.refresh_calls, server.issue_calls) == (1, 2)


def test_refused_refresh_inside_the_margin_costs_one_call(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, waits: list[float]
) -> None:
    """Inside the margin a refused refresh costs one call; issue-token waits for the next renewal."""
    first = auth.get_token()
    clock.advance(STALE)
    server.fail_next_token_calls(1, 401, body=b'{"code":"UNAUTHORIZED","message":"Expired"}')
    calls_before = server.token_calls
    assert get(server, auth).status_code == 200
    assert server.token_calls - calls_before == 1
    assert sent_token(server) == first.access_token
    clock.advance(0.5)  # within the backoff: no call
    get(server, auth)
    assert server.token_calls - calls_before == 1
    clock.advance(0.5)
    get(server, auth)  # the next early renewal issues a new token: the refresh token is gone
    assert (server.refresh_calls, server.issue_calls) == (1, 2)
    assert sent_token(server) == auth.get_token().access_token != first.access_token


def test_raises_only_when_no_valid_token_is_left(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, waits: list[float]
) -> None:
    """Failing renewals are absorbed until the token expires; then the error is raised."""
    auth.get_token()
    clock.advance(STALE)
    server.fail_next_token_calls(100, 503)
    for _ in range(5):
        assert get(server, auth).status_code == 200
        clock.advance(9.5)  # 297.5 s at the end: still valid
    clock.advance(EXPIRED - STALE - 5 * 9.5)
    with pytest.raises(TokenRequestError) as caught:
        get(server, auth)
    assert caught.value.status_code == 503
    assert caught.value.attempts == RetryPolicy().attempts


# -- threads during a renewal -------------------------------------------------------------------


def test_threads_with_a_valid_token_do_not_wait_for_the_renewal(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, lock: WatchedLock
) -> None:
    """While one thread renews, another with a valid token sends its request at once."""
    first = auth.get_token()
    clock.advance(STALE)
    entered, release = held_token_calls(server)
    renewer = Worker(lambda: get(server, auth))
    renewer.start()
    try:
        assert entered.wait(WAIT), "the renewal never reached the server"
        response = get(server, auth)  # the renewal is still held in the server
        assert response.status_code == 200
        assert sent_token(server) == first.access_token
        assert not release.is_set()
        assert renewer.is_alive()
        assert lock.blocked == 0
    finally:
        release.set()
        renewer.join(WAIT)
    assert renewer.error is None
    assert renewer.result.status_code == 200
    assert server.token_calls == 2  # the first token, then the one renewal
    assert auth.get_token().access_token != first.access_token


def test_a_thread_that_saw_the_stale_token_does_not_renew_it_again(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, lock: WatchedLock
) -> None:
    """A thread that found the token stale just as another renewed it uses the new one."""
    auth.get_token()
    clock.advance(STALE)
    trying, renewed = threading.Event(), threading.Event()

    def hold_the_first_try() -> None:
        if not trying.is_set():
            trying.set()
            renewed.wait(WAIT)

    lock.on_try = hold_the_first_try
    late = Worker(lambda: get(server, auth))
    late.start()
    try:
        assert trying.wait(WAIT)  # `late` saw a stale token and is about to take the lock
        new = auth.get_token()  # meanwhile this thread renews it
    finally:
        renewed.set()
        late.join(WAIT)
    assert late.error is None
    assert sent_token(server) == new.access_token
    assert server.token_calls == 2


def test_only_callers_without_a_valid_token_wait_for_the_renewal_in_flight(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, lock: WatchedLock
) -> None:
    """Callers whose token expired wait for the one renewal in flight and share its result."""
    auth.get_token()
    clock.advance(STALE)
    auth._endpoint.clock = FakeClock()  # stands still: the held call takes no time of its own
    entered, release = held_token_calls(server)
    renewer = Worker(auth.get_token)
    renewer.start()
    waiters: list[Worker] = []
    try:
        assert entered.wait(WAIT)
        clock.advance(EXPIRED - STALE)  # the token expires while the renewal is held
        waiters = [Worker(auth.get_token) for _ in range(4)]
        for waiter in waiters:
            waiter.start()
        assert lock.wait_for_blocked(4), "callers without a token did not wait"
        assert all(waiter.is_alive() for waiter in waiters)
        assert server.token_calls == 2  # one renewal in flight, no second one
    finally:
        release.set()
        for worker in [renewer, *waiters]:
            worker.join(WAIT)
    renewed = renewer.result
    assert renewer.error is None
    assert [w.result for w in waiters] == [renewed] * 4
    assert server.token_calls == 2


def test_waiters_share_a_failed_renewal_instead_of_retrying_it(
    server: FakeEmmaServer, lock: WatchedLock, waits: list[float]
) -> None:
    """Callers that waited for a failed renewal each get a copy of its error, without a call."""
    auth = auth_for(
        server,
        retry=RetryPolicy(attempts=2),
    )
    auth._lock = lock  # type: ignore[assignment]
    server.fail_next_token_calls(2, 503)
    entered, release = held_token_calls(server)
    first = Worker(auth.get_token)
    first.start()
    waiters: list[Worker] = []
    try:
        assert entered.wait(WAIT)
        waiters = [Worker(auth.get_token) for _ in range(3)]
        for waiter in waiters:
            waiter.start()
        assert lock.wait_for_blocked(3)
    finally:
        release.set()
        for worker in [first, *waiters]:
            worker.join(WAIT)
    assert isinstance(first.error, TokenRequestError)
    for waiter in waiters:
        assert isinstance(waiter.error, TokenRequestError)
        assert str(waiter.error) == str(first.error)
        assert waiter.error.attempts == 2
    assert server.token_calls == 2
    errors = [first.error, *(waiter.error for waiter in waiters)]
    assert len({id(error) for error in errors}) == len(errors)
    for error in errors:  # each traceback holds its own thread's frames only
        frames = traceback.extract_tb(error.__traceback__)
        assert [frame.name for frame in frames].count("run") == 1


def test_a_caller_after_a_failed_renewal_tries_again(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, waits: list[float]
) -> None:
    """A failure is shared only with callers that waited for it; a later call tries anew."""
    server.fail_next_token_calls(5, 503)
    with pytest.raises(TokenRequestError):
        auth.get_token()
    assert server.token_calls == 5
    assert auth.get_token().access_token  # same (fake) instant, but a new call
    assert server.token_calls == 6
