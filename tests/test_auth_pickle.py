"""EmmaAuth and a Session carrying it survive pickling and work in worker processes."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import requests
from fakes import FakeClock, auth_for, join_renewal, renewal_thread, use_clock

from requests_emma import EmmaAuth
from requests_emma.testing import FakeEmmaServer


def fetch_locations_in_worker(session: requests.Session, url: str) -> int:
    return session.get(url, timeout=30).status_code


def test_auth_round_trips_through_pickle(server: FakeEmmaServer, auth: EmmaAuth) -> None:
    """An unpickled EmmaAuth has its configuration, a working lock and fetches its own token."""
    auth.get_token()
    copy = pickle.loads(pickle.dumps(auth))
    assert (copy.base_url, repr(copy)) == (auth.base_url, repr(auth))
    assert copy.get_token() != auth.get_token()
    assert server.issue_calls == 2


def test_pickle_leaves_the_tokens_behind(server: FakeEmmaServer, auth: EmmaAuth) -> None:
    """The pickled bytes hold neither the access token nor the refresh token."""
    token = auth.get_token()
    data = pickle.dumps(auth)
    assert token.access_token.encode() not in data
    assert token.refresh_token is not None and token.refresh_token.encode() not in data


def test_session_with_auth_works_in_worker_processes(
    server: FakeEmmaServer, auth: EmmaAuth
) -> None:
    """A Session carrying EmmaAuth goes to spawned worker processes and authenticates there."""
    with requests.Session() as session:
        session.auth = auth
        url = server.base_url + "/v1/locations"
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            statuses = list(pool.map(fetch_locations_in_worker, [session] * 3, [url] * 3))
    assert statuses == [200, 200, 200]
    assert server.issue_calls == 3  # each task unpickles its own copy, with its own token


def test_pickle_leaves_the_token_calls_machinery_behind(server: FakeEmmaServer) -> None:
    """A pickled auth carries no token session: the copy builds its own at its first renewal."""
    auth = auth_for(server)
    auth.get_token()  # the token calls' session is made
    pickled = pickle.dumps(auth)
    assert b"Session" not in pickled and b"Endpoint" not in pickled
    copy = pickle.loads(pickled)
    assert copy.get_token().access_token != auth.get_token().access_token
    assert server.issue_calls == 2


def test_a_pickled_copy_keeps_its_refresh_margin(server: FakeEmmaServer, clock: FakeClock) -> None:
    """An unpickled EmmaAuth keeps refresh_margin=10: its 300 s token stays fresh until 290 s."""
    copy = pickle.loads(pickle.dumps(auth_for(server, refresh_margin=10)))
    use_clock(copy, clock)
    copy.get_token()
    clock.advance(285)
    copy.get_token()
    assert renewal_thread(copy) is None  # still fresh at 285 s: no early renewal started
    assert server.token_calls == 1
    clock.advance(6)
    copy.get_token()
    join_renewal(copy)
    assert server.token_calls == 2
