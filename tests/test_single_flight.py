"""Single flight, through the public API: at most one renewal at a time, whichever callers
need it; its token, or a copy of its error, reaches each of them.

Threads are real and meet on barriers; token calls are held with the fake server's
``token_hook`` (or a raw server's handler) until the other callers wait for the renewal,
which ``WatchedFlights`` counts. A fake clock moves the token through its life (300 s,
60 s margin: stale from 240 s, expired at 300 s).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests
from fakes import (
    WAIT,
    FakeClock,
    RawServer,
    WatchedFlights,
    auth_for,
    cut_short,
    join_renewal,
    renewal_thread,
    use_clock,
)

from requests_emma import EmmaAuth, RetryPolicy, TokenRequestError
from requests_emma.testing import FakeEmmaServer

THREADS = 8
STALE = 250.0  # seconds after the token was sent: inside its 60 s margin, not expired


def in_threads(count: int, call: Callable[[], Any]) -> list[Any]:
    """Run ``call`` in ``count`` threads that start together (a barrier); what each returned
    or raised, in no particular order."""
    barrier = threading.Barrier(count)
    got: list[Any] = []
    guard = threading.Lock()

    def run() -> None:
        barrier.wait(WAIT)
        try:
            outcome = call()
        except BaseException as exc:  # noqa: BLE001 - what the caller got is the point
            outcome = exc
        with guard:
            got.append(outcome)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive(), "a caller never returned"
    return got


def hold_token_calls(server: FakeEmmaServer, flights: WatchedFlights, waiters: int) -> list[bool]:
    """Hold each token call until ``waiters`` callers wait for the renewal; per call, whether
    they did (rather than the wait timing out)."""
    held: list[bool] = []
    server.token_hook = lambda: held.append(flights.wait_for_waiters(waiters))
    return held


def test_threads_on_a_cold_start_make_one_token_call() -> None:
    """Eight threads needing a first token at once make one token call, and all get it."""
    with FakeEmmaServer() as server:
        auth = auth_for(server)
        held = hold_token_calls(server, WatchedFlights(auth), THREADS - 1)
        tokens = in_threads(THREADS, auth.get_token)
    assert held == [True], "the other threads never waited for the token call"
    assert server.token_calls == 1
    assert len({token.access_token for token in tokens}) == 1


def test_a_401_during_a_renewal_joins_it(server: FakeEmmaServer, auth: EmmaAuth) -> None:
    """Two requests rejected with the same token (401) make one renewal: the second joins
    the first's, and both are replayed with its token."""
    auth.get_token()
    server.expire_access_tokens()  # the refresh token still works: one call renews
    both_at_the_server = threading.Barrier(2)
    api_calls = iter(range(1_000))
    # Both requests reach the server with the revoked token before either is answered.
    server.api_hook = lambda: next(api_calls) < 2 and both_at_the_server.wait(WAIT)
    held = hold_token_calls(server, WatchedFlights(auth), 1)
    url = server.base_url + "/v1/locations"
    responses = in_threads(2, lambda: requests.get(url, auth=auth, timeout=WAIT))
    assert [response.status_code for response in responses] == [200, 200]
    assert held == [True], "the second 401 never waited for the renewal"
    assert server.token_calls == 2  # the first token, and one renewal


def failing_renewal(
    raw_server: Callable[..., RawServer], waiters: int
) -> tuple[EmmaAuth, list[Any]]:
    """``waiters + 1`` threads on a cold start whose one token call fails (its connection is
    cut short, once waiters wait for it); what each got."""
    flights_of: list[WatchedFlights] = []

    def cut_once_all_wait(conn: socket.socket, stopping: threading.Event) -> None:
        flights_of[0].wait_for_waiters(waiters)
        cut_short(conn, stopping)

    server = raw_server(cut_once_all_wait)
    auth = EmmaAuth("id", "secret", base_url=server.base_url, retry=RetryPolicy(attempts=1))
    flights_of.append(WatchedFlights(auth))
    return auth, in_threads(waiters + 1, auth.get_token)


def test_a_failed_renewal_gives_each_caller_its_own_copy_of_the_error(
    raw_server: Callable[..., RawServer],
) -> None:
    """A failed renewal's error reaches each caller as an object of its own, with the same
    type, message, attributes and cause."""
    _, errors = failing_renewal(raw_server, 2)
    assert all(isinstance(error, TokenRequestError) for error in errors)
    assert len({id(error) for error in errors}) == 3
    assert len({str(error) for error in errors}) == 1
    assert {(error.attempts, error.status_code, error.endpoint) for error in errors} == {
        (errors[0].attempts, errors[0].status_code, errors[0].endpoint)
    }
    assert errors[0].__cause__ is not None
    assert all(error.__cause__ is errors[0].__cause__ for error in errors)


def test_status_shows_a_failed_renewals_message(raw_server: Callable[..., RawServer]) -> None:
    """After a failed renewal, status() reports its error's message."""
    auth, errors = failing_renewal(raw_server, 1)
    assert auth.status().last_error == str(errors[0])


class InterruptingClock(FakeClock):
    """A fake clock whose first retry wait, once ``waiters`` callers wait for the renewal,
    raises KeyboardInterrupt in the thread running the renewal (Ctrl-C lands there)."""

    def __init__(self, flights: WatchedFlights, waiters: int) -> None:
        super().__init__()
        self.flights, self.waiters, self.interrupted = flights, waiters, False

    def sleep(self, seconds: float) -> None:
        if not self.interrupted:
            self.interrupted = True
            assert self.flights.wait_for_waiters(self.waiters)
            raise KeyboardInterrupt
        super().sleep(seconds)


def test_an_interrupted_renewal_gives_the_others_a_fresh_try(server: FakeEmmaServer) -> None:
    """A KeyboardInterrupt in the thread running a renewal reaches that thread only: the
    callers waiting for it try again (one new renewal), and no error is recorded."""
    auth = auth_for(server)
    use_clock(auth, InterruptingClock(WatchedFlights(auth), 2))
    server.fail_next_token_calls(1, 503)  # a retry, so a wait to interrupt
    got = in_threads(3, auth.get_token)
    interrupts = [outcome for outcome in got if isinstance(outcome, KeyboardInterrupt)]
    tokens = {outcome.access_token for outcome in got if not isinstance(outcome, BaseException)}
    assert (len(interrupts), len(tokens)) == (1, 1)
    assert server.token_calls == 2  # the interrupted 503, then the fresh try's token


def test_an_interrupted_renewal_records_no_error(server: FakeEmmaServer) -> None:
    """A renewal interrupted (KeyboardInterrupt in its thread) says nothing about emma: no
    error recorded, no renewal left running, and the next caller renews at once."""
    auth = auth_for(server)
    clock = use_clock(auth, InterruptingClock(WatchedFlights(auth), 0))
    server.fail_next_token_calls(1, 503)
    with pytest.raises(KeyboardInterrupt):
        auth.get_token()
    status = auth.status()
    assert (status.last_error, status.renewing, status.retry_after) == (None, False, None)
    auth.get_token()
    assert server.token_calls == 2 and clock.sleeps == []


def test_one_early_renewal_at_a_time(server: FakeEmmaServer, auth: EmmaAuth) -> None:
    """Callers finding the token stale while its early renewal runs start no other: they
    send the current token."""
    clock = use_clock(auth, FakeClock())
    token = auth.get_token()
    clock.advance(STALE)
    inside, release = threading.Event(), threading.Event()
    server.token_hook = lambda: (inside.set(), release.wait(WAIT))
    assert auth.get_token() == token  # starts the early renewal, which is held
    assert inside.wait(WAIT)
    first = renewal_thread(auth)
    assert in_threads(THREADS, auth.get_token) == [token] * THREADS
    assert renewal_thread(auth) is first
    release.set()
    join_renewal(auth)
    assert server.token_calls == 2
    assert auth.get_token() != token


@pytest.mark.parametrize("elapsed", [0.0, 100.0, 239.0])
def test_no_early_renewal_while_the_token_is_fresh(
    server: FakeEmmaServer, auth: EmmaAuth, elapsed: float
) -> None:
    """A token not yet inside its refresh margin starts no early renewal."""
    clock = use_clock(auth, FakeClock())
    token = auth.get_token()
    clock.advance(elapsed)
    assert in_threads(THREADS, auth.get_token) == [token] * THREADS
    assert renewal_thread(auth) is None
    assert server.token_calls == 1
