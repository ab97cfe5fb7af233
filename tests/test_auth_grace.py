"""Grace: a token inside its refresh margin keeps serving while its renewal runs or fails.

A fake monotonic clock moves the token into its margin (300 s token, 60 s margin: stale
from 240 s, expired at 300 s); the server's own clock is real, so the token stays valid
there. The early renewal runs on a thread of its own; tests wait for it with
``join_renewal``. Token calls are held with the server's token_hook and events; a watched
flight watcher counts who waited for a renewal.
"""

from __future__ import annotations

import logging
import threading
import traceback
from typing import Any

import pytest
import requests
from fakes import WAIT, FakeClock, WatchedFlights, auth_for, join_renewal, use_clock

from requests_emma import EmmaAuth, RetryPolicy, TokenRequestError
from requests_emma.testing import FakeEmmaServer

STALE = 250  # seconds after the token was issued: inside the 60 s margin, not expired
EXPIRED = 301
LATE_STALE = 290  # stale too, 11 s before it expires


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
def flights(auth: EmmaAuth) -> WatchedFlights:
    return WatchedFlights(auth)


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


# -- the early renewal runs off the request path ----------------------------------------------


def test_a_stale_token_is_sent_at_once_while_its_renewal_is_held(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, flights: WatchedFlights
) -> None:
    """While the early renewal is held in the server, requests go out with the current token."""
    first = auth.get_token()
    clock.advance(STALE)
    entered, release = held_token_calls(server)
    try:
        assert get(server, auth).status_code == 200  # starts the renewal, does not wait
        assert entered.wait(WAIT), "the renewal never reached the server"
        assert get(server, auth).status_code == 200
        assert sent_token(server) == first.access_token
        assert flights.waited == 0
    finally:
        release.set()
    join_renewal(auth)
    assert server.token_calls == 2  # the first token, then the one renewal
    assert get(server, auth).status_code == 200
    assert sent_token(server) == auth.get_token().access_token != first.access_token


def test_many_threads_on_a_stale_token_start_one_renewal(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """Twelve threads that find the token stale together cause one background renewal."""
    auth.get_token()
    clock.advance(STALE)
    entered, release = held_token_calls(server)
    barrier = threading.Barrier(12)

    def call() -> int:
        barrier.wait(WAIT)
        return get(server, auth).status_code

    workers = [Worker(call) for _ in range(12)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(WAIT)
        assert [worker.result for worker in workers] == [200] * 12
        assert entered.wait(WAIT)
    finally:
        release.set()
    join_renewal(auth)
    assert server.token_calls == 2


def test_only_callers_without_a_valid_token_wait_for_the_renewal_in_flight(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, flights: WatchedFlights
) -> None:
    """Callers whose token expired wait for the one renewal in flight and share its result."""
    auth.get_token()
    clock.advance(LATE_STALE)
    entered, release = held_token_calls(server)
    waiters: list[Worker] = []
    try:
        auth.get_token()  # starts the early renewal, held in the server
        assert entered.wait(WAIT)
        # The token expires while the renewal is held (within the renewal's deadline: one
        # held past it plus 5 s would be given up for stuck).
        clock.advance(EXPIRED - LATE_STALE)
        waiters = [Worker(auth.get_token) for _ in range(4)]
        for waiter in waiters:
            waiter.start()
        assert flights.wait_for_waiters(4), "callers without a token did not wait"
        assert all(waiter.is_alive() for waiter in waiters)
        assert server.token_calls == 2  # one renewal in flight, no second one
    finally:
        release.set()
        for waiter in waiters:
            waiter.join(WAIT)
    join_renewal(auth)
    renewed = auth.get_token()
    assert [w.result for w in waiters] == [renewed] * 4
    assert server.token_calls == 2


# -- a failing renewal inside the margin --------------------------------------------------------


def test_failed_renewal_keeps_serving_the_valid_token(
    server: FakeEmmaServer,
    auth: EmmaAuth,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An early renewal that fails leaves the current token in use, with one WARNING."""
    first = auth.get_token()
    clock.advance(STALE)
    server.fail_next_token_calls(10, 503)
    with caplog.at_level(logging.WARNING, logger="requests_emma"):
        assert get(server, auth).status_code == 200
        join_renewal(auth)
        assert get(server, auth).status_code == 200
    assert sent_token(server) == first.access_token
    grace = [r for r in caplog.records if "still using the current token" in r.getMessage()]
    assert [r.levelno for r in grace] == [logging.WARNING]
    assert "503" in grace[0].getMessage()
    assert first.access_token not in grace[0].getMessage()


def test_early_renewal_retries_by_the_policy_off_the_request_path(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """Off the request path the early renewal may wait and retry: two 503s, then a new token."""
    first = auth.get_token()
    clock.advance(STALE)
    server.fail_next_token_calls(2, 503, headers={"Retry-After": "5"})
    assert get(server, auth).status_code == 200
    join_renewal(auth)
    assert server.token_calls == 4
    assert min(clock.sleeps) >= 5
    assert auth.get_token().access_token != first.access_token


def test_failed_early_renewals_back_off(server: FakeEmmaServer) -> None:
    """After a failed early renewal, requests don't start another until a backoff has passed."""
    clock = FakeClock()
    auth = auth_for(server, retry=RetryPolicy(attempts=1))
    use_clock(auth, clock)
    auth.get_token()
    clock.advance(STALE)
    server.fail_next_token_calls(2, 503)

    def burst() -> None:
        for _ in range(5):
            assert get(server, auth).status_code == 200
        join_renewal(auth)

    burst()
    assert server.token_calls == 2
    burst()  # within the 1 s backoff
    assert server.token_calls == 2
    clock.advance(1.0)
    burst()  # the backoff has passed: tried again, fails again
    assert server.token_calls == 3
    clock.advance(1.0)  # the backoff doubled: not yet
    burst()
    assert server.token_calls == 3
    clock.advance(1.0)
    burst()  # tried again, and succeeds
    assert server.token_calls == 4
    renewed = auth.get_token()
    assert get(server, auth).status_code == 200
    assert sent_token(server) == renewed.access_token
    assert server.token_calls == 4


def test_rejected_credentials_inside_the_margin_keep_serving(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """A refused refresh falls back to issue-token; even refused credentials leave the valid
    token in use."""
    first = auth.get_token()
    clock.advance(STALE)
    server.fail_next_token_calls(1, 401)  # the refresh token is refused...
    server.fail_next_token_calls(1, 403)  # ...and so are the credentials
    assert get(server, auth).status_code == 200
    join_renewal(auth)
    assert get(server, auth).status_code == 200
    assert sent_token(server) == first.access_token
    assert (server.refresh_calls, server.issue_calls) == (1, 2)


def test_refused_refresh_inside_the_margin_issues_at_once(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """A refused refresh in an early renewal falls back to issue-token in the same renewal."""
    first = auth.get_token()
    clock.advance(STALE)
    server.fail_next_token_calls(1, 401, body=b'{"code":"UNAUTHORIZED","message":"Expired"}')
    assert get(server, auth).status_code == 200
    join_renewal(auth)
    assert (server.refresh_calls, server.issue_calls) == (1, 2)
    assert get(server, auth).status_code == 200
    assert sent_token(server) == auth.get_token().access_token != first.access_token


def test_raises_only_when_no_valid_token_is_left(server: FakeEmmaServer) -> None:
    """Failing renewals are absorbed until the token expires; then the error is raised."""
    no_waits = RetryPolicy(wait_initial=0, wait_max=0, wait_jitter=0)
    clock = FakeClock()
    auth = auth_for(server, retry=no_waits)
    use_clock(auth, clock)
    auth.get_token()
    clock.advance(STALE)
    server.fail_next_token_calls(100, 503)
    for _ in range(5):
        assert get(server, auth).status_code == 200
        join_renewal(auth)
        clock.advance(9.5)  # 297.5 s at the end: still valid
    clock.advance(EXPIRED - STALE - 5 * 9.5)
    with pytest.raises(TokenRequestError) as caught:
        get(server, auth)
    assert caught.value.status_code == 503
    assert caught.value.attempts == RetryPolicy().attempts


# -- waiting callers and failures ---------------------------------------------------------------


def shared_failure(server: FakeEmmaServer) -> tuple[Worker, list[Worker]]:
    """One caller's renewal fails (503 twice, 2 attempts) while three others wait for it:
    the caller, and the three waiters, each having run ``get_token``."""
    auth = auth_for(server, retry=RetryPolicy(attempts=2))
    flights = WatchedFlights(auth)
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
        assert flights.wait_for_waiters(3)
    finally:
        release.set()
        for worker in [first, *waiters]:
            worker.join(WAIT)
    return first, waiters


def test_waiters_share_a_failed_renewal_instead_of_retrying_it(
    server: FakeEmmaServer, waits: list[float]
) -> None:
    """Callers that waited for a failed renewal make no token call of their own."""
    shared_failure(server)
    assert server.token_calls == 2  # the failed renewal's two attempts, nothing more


def test_waiters_of_a_failed_renewal_get_its_error(
    server: FakeEmmaServer, waits: list[float]
) -> None:
    """Each caller that waited for a failed renewal raises its error: same type, message
    and attributes as the caller that ran it."""
    first, waiters = shared_failure(server)
    assert type(first.error) is TokenRequestError
    assert (first.error.status_code, first.error.attempts) == (503, 2)
    for waiter in waiters:
        assert type(waiter.error) is TokenRequestError
        assert str(waiter.error) == str(first.error)
        assert (waiter.error.status_code, waiter.error.attempts) == (503, 2)


def test_waiters_of_a_failed_renewal_each_get_their_own_error_object(
    server: FakeEmmaServer, waits: list[float]
) -> None:
    """The caller that ran a failed renewal and each waiter raise distinct error objects."""
    first, waiters = shared_failure(server)
    errors = [first.error, *(waiter.error for waiter in waiters)]
    assert len({id(error) for error in errors}) == len(errors)


def test_a_shared_errors_traceback_holds_its_own_threads_frames(
    server: FakeEmmaServer, waits: list[float]
) -> None:
    """Each caller's error has a traceback of its own thread's frames only."""
    first, waiters = shared_failure(server)
    for error in [first.error, *(waiter.error for waiter in waiters)]:
        assert error is not None
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
    # The same (fake) instant, but a new call:
    assert server.is_valid_access_token(auth.get_token().access_token)
    assert server.token_calls == 6
