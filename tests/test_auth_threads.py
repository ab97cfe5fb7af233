"""One EmmaAuth shared by many threads: single flight, and no lock around API calls."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests
from fakes import WAIT, FakeClock, WatchedFlights, use_clock

from requests_emma import EmmaAuth
from requests_emma.testing import FakeEmmaServer

THREADS = 12


def hold_token_calls_until_others_wait(
    server: FakeEmmaServer, flights: WatchedFlights, waiters: int
) -> list[bool]:
    """Keep each token call in flight until `waiters` threads wait for the renewal.

    Returns, per token call, whether they had (rather than the wait timing out): the race a
    test names only happened if every entry is True.
    """
    held: list[bool] = []
    server.token_hook = lambda: held.append(flights.wait_for_waiters(waiters))
    return held


def get_all(server: FakeEmmaServer, auth: EmmaAuth, session: requests.Session | None) -> list[int]:
    start = threading.Barrier(THREADS)
    client = session or requests

    def one(_: int) -> int:
        start.wait(timeout=30)
        return client.get(server.base_url + "/v1/locations", auth=auth, timeout=30).status_code

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, range(THREADS)))


def test_concurrent_first_requests_make_one_token_call(
    server: FakeEmmaServer, auth: EmmaAuth
) -> None:
    """N threads needing the first token at once cause exactly one token call."""
    flights = WatchedFlights(auth)
    held = hold_token_calls_until_others_wait(server, flights, THREADS - 1)
    assert get_all(server, auth, None) == [200] * THREADS
    assert held == [True], "the other threads never waited for the token call"
    assert server.token_calls == 1


def test_concurrent_401s_for_one_token_make_one_renewal(
    server: FakeEmmaServer, auth: EmmaAuth
) -> None:
    """N threads getting a 401 for the same token cause exactly one renewal."""
    auth.get_token()
    flights = WatchedFlights(auth)
    server.expire_access_tokens()
    all_sent = threading.Barrier(THREADS)
    first_round = iter(range(THREADS))
    # Every thread's first request reaches the server with the old token before any 401.
    server.api_hook = lambda: next(first_round, None) is not None and all_sent.wait(30)
    held = hold_token_calls_until_others_wait(server, flights, THREADS - 1)
    assert get_all(server, auth, None) == [200] * THREADS
    assert held == [True], "the other threads never waited for the renewal"
    assert (server.issue_calls, server.refresh_calls) == (1, 1)
    assert server.api_calls == 2 * THREADS


def test_shared_session_across_threads(server: FakeEmmaServer, auth: EmmaAuth) -> None:
    """A Session carrying the auth, shared by N threads, makes one token call."""
    flights = WatchedFlights(auth)
    held = hold_token_calls_until_others_wait(server, flights, THREADS - 1)
    with requests.Session() as session:
        session.auth = auth
        assert get_all(server, auth, session) == [200] * THREADS
    assert held == [True], "the other threads never waited for the token call"
    assert server.token_calls == 1


def test_no_lock_is_held_while_an_api_request_is_in_flight(
    server: FakeEmmaServer, auth: EmmaAuth
) -> None:
    """While the API handles a request, the auth's lock is free for other threads: another
    thread renews the token meanwhile (the token expired, by the fake clock)."""
    clock = use_clock(auth, FakeClock())
    seen: list[bool] = []

    def renew_in_another_thread() -> None:
        clock.advance(301)  # expired: a renewal needs the lock
        renewer = threading.Thread(target=auth.get_token, daemon=True)
        renewer.start()
        renewer.join(WAIT)
        seen.append(not renewer.is_alive())

    server.api_hook = renew_in_another_thread
    auth.get_token()
    server.revoke()  # the call below goes through a 401, a renewal and a replay
    requests.get(server.base_url + "/v1/locations", auth=auth, timeout=10)
    assert seen == [True, True]


def test_slow_api_request_does_not_block_another_thread(
    server: FakeEmmaServer, auth: EmmaAuth
) -> None:
    """A thread whose API call is stuck does not keep another thread from its own call."""
    auth.get_token()
    inside, release = threading.Event(), threading.Event()

    def hook() -> None:
        if not inside.is_set():
            inside.set()
            release.wait(30)

    server.api_hook = hook
    with ThreadPoolExecutor(2) as pool:
        stuck = pool.submit(requests.get, server.base_url + "/v1/locations", auth=auth, timeout=30)
        assert inside.wait(30)
        other = requests.get(server.base_url + "/v1/locations/18", auth=auth, timeout=30)
        assert other.status_code == 200
        release.set()
        assert stuck.result().status_code == 200
