"""EmmaSession against the real FakeEmmaServer: URLs, timeout, retries, auth, threads, pickling."""

from __future__ import annotations

import contextlib
import pickle
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import urllib3.util.connection
from urllib3.util.retry import Retry

from requests_emma import CredentialsError, EmmaAuth, EmmaSession
from requests_emma._requests.session import RETRY_AFTER_LIMIT, IdempotentRetry
from requests_emma.testing import FakeEmmaServer, no_retry_waits

IDEMPOTENT = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]
# What the fake server answers each of them on /v1/locations with a valid token: it lists
# locations for GET only, and gives the others its authorised 404.
ANSWERED = {"GET": 200, "HEAD": 404, "OPTIONS": 404, "PUT": 404, "DELETE": 404}


@contextlib.contextmanager
def api_held(server: FakeEmmaServer, longest: float = 10.0) -> Iterator[None]:
    """Hold every API answer until the block ends (or ``longest`` seconds pass)."""
    release = threading.Event()

    def hold() -> None:
        release.wait(longest)

    server.api_hook = hold
    try:
        yield
    finally:
        release.set()
        server.api_hook = None


@pytest.fixture
def connections_to(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], int]:
    """Count the connections requests opens (or tries to open: a refused one counts):
    ``connections_to(base_url)`` is how many went to that URL's port."""
    opened: list[int] = []
    create_connection = urllib3.util.connection.create_connection

    def counted(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(address[1])
        return create_connection(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counted)
    return lambda base_url: opened.count(int(urllib.parse.urlsplit(base_url).port or 0))


# -- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/locations", "v1/locations", "//v1/locations"])
def test_relative_url_keeps_the_external_prefix(
    session: EmmaSession, server: FakeEmmaServer, path: str
) -> None:
    """A relative URL, with or without a leading slash, resolves below /external."""
    response = session.get(path)
    assert response.status_code == 200
    assert response.url == server.base_url + "/v1/locations"
    assert server.requests[-1].path == "/v1/locations"


def test_query_string_survives_resolution(session: EmmaSession, server: FakeEmmaServer) -> None:
    """Query strings in a relative URL and params= both reach the server."""
    response = session.get("v1/locations?name=London", params={"name": "Singapore"})
    assert sorted(location["name"] for location in response.json()) == ["London", "Singapore"]


def test_absolute_url_is_used_as_it_is(session: EmmaSession) -> None:
    """An absolute URL to another server goes there, without the token and without retries."""
    with FakeEmmaServer() as other:
        other.fail_next_api_calls(1, 503)
        response = session.get(other.base_url + "/v1/locations")
    assert response.status_code == 503
    assert other.api_calls == 1
    assert "Authorization" not in other.requests[0].headers


def test_prepared_request_resolves_without_changing_the_request(session: EmmaSession) -> None:
    """prepare_request() resolves a relative Request and leaves the caller's object alone."""
    request = requests.Request("GET", "v1/locations/18")
    prepared = session.prepare_request(request)
    assert prepared.url == session.base_url + "/v1/locations/18"
    assert request.url == "v1/locations/18"
    assert session.send(prepared).json()["name"] == "London"


def test_base_url_defaults_to_the_auths(
    session: EmmaSession, auth: EmmaAuth, server: FakeEmmaServer
) -> None:
    """Without base_url the session uses the auth's, /external included."""
    assert session.base_url == server.base_url
    assert session.auth is auth


def test_base_url_below_the_auths(auth: EmmaAuth, server: FakeEmmaServer) -> None:
    """A base_url deeper on the auth's origin is where relative URLs point."""
    with EmmaSession(auth, base_url=server.base_url + "/v1/") as emma:
        assert emma.base_url == server.base_url + "/v1"
        assert emma.get("locations/7").json()["name"] == "Frankfurt"


def test_base_url_on_another_origin_is_refused(auth: EmmaAuth) -> None:
    """A base_url the token would never be sent to is a ValueError."""
    with pytest.raises(ValueError, match="origin"):
        EmmaSession(auth, base_url="https://api.emma.ms/external")


def test_auth_from_the_environment(server: FakeEmmaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without auth, EmmaAuth reads EMMA_CLIENT_ID, EMMA_CLIENT_SECRET and EMMA_API_URL."""
    monkeypatch.setenv("EMMA_CLIENT_ID", server.client_id)
    monkeypatch.setenv("EMMA_CLIENT_SECRET", server.client_secret)
    monkeypatch.setenv("EMMA_API_URL", server.base_url)
    with EmmaSession() as emma:
        assert emma.base_url == server.base_url
        assert emma.get("/v1/locations").status_code == 200
    assert server.issue_calls == 1


def test_base_url_argument_reaches_the_auth_it_creates(
    server: FakeEmmaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EmmaSession(base_url=...) without auth points the new EmmaAuth there too."""
    monkeypatch.setenv("EMMA_CLIENT_ID", server.client_id)
    monkeypatch.setenv("EMMA_CLIENT_SECRET", server.client_secret)
    with EmmaSession(base_url=server.base_url) as emma:
        assert emma.get("/v1/locations").status_code == 200
    assert server.issue_calls == 1


def test_missing_credentials() -> None:
    """Without auth and without credentials in the environment: CredentialsError."""
    with pytest.raises(CredentialsError, match="EMMA_CLIENT_ID"):
        EmmaSession()


def test_auth_must_be_an_emma_auth() -> None:
    """Any other auth object is a ValueError naming its type."""
    with pytest.raises(ValueError, match="HTTPBasicAuth"):
        EmmaSession(requests.auth.HTTPBasicAuth("user", "pass"))  # type: ignore[arg-type]


def test_repr_shows_no_secret(session: EmmaSession, server: FakeEmmaServer) -> None:
    """The repr names the base URL and no credential or token."""
    session.get("/v1/locations")
    text = repr(session)
    assert server.base_url in text
    assert server.client_secret not in text
    assert "Bearer" not in text


# -- timeout -------------------------------------------------------------------------------


def test_default_timeout_applies(auth: EmmaAuth, server: FakeEmmaServer) -> None:
    """A request passing no timeout times out after the session's."""
    auth.get_token()
    with EmmaSession(auth, timeout=0.5) as emma, api_held(server):
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            emma.get("/v1/locations")
        assert time.monotonic() - started < 8.0
    assert server.api_calls == 1  # a read timeout is not retried


def test_request_timeout_wins_over_the_default(auth: EmmaAuth, server: FakeEmmaServer) -> None:
    """timeout= on the request replaces the session's default."""
    auth.get_token()
    with EmmaSession(auth, timeout=60.0) as emma, api_held(server):
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            emma.get("/v1/locations", timeout=0.5)
        assert time.monotonic() - started < 8.0


@pytest.mark.parametrize(
    ("timeout", "expected"), [(10, 10.0), (2.5, 2.5), ((1, 20), (1.0, 20.0)), (None, None)]
)
def test_timeout_values(auth: EmmaAuth, timeout: object, expected: object) -> None:
    """Seconds, a (connect, read) pair or None are accepted, numbers kept as floats."""
    with EmmaSession(auth, timeout=timeout) as emma:  # type: ignore[arg-type]
        kept = emma.timeout
    assert kept == expected
    parts = kept if isinstance(kept, tuple) else () if kept is None else (kept,)
    assert [type(part) for part in parts] == [float] * len(parts)


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), "30", (1, 2, 3)])
def test_bad_timeout_is_refused(auth: EmmaAuth, timeout: object) -> None:
    """A timeout that is not a positive finite number (or pair) is a ValueError."""
    with pytest.raises(ValueError, match="timeout"):
        EmmaSession(auth, timeout=timeout)  # type: ignore[arg-type]


# -- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", IDEMPOTENT)
def test_idempotent_methods_are_retried(
    session: EmmaSession, server: FakeEmmaServer, method: str
) -> None:
    """GET, HEAD, OPTIONS, PUT and DELETE are sent again after a 503."""
    server.fail_next_api_calls(1, 503)
    response = session.request(method, "/v1/locations")
    assert response.status_code == ANSWERED[method]
    assert [r.method for r in server.requests if r.path == "/v1/locations"] == [method] * 2


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_statuses_are_retried(
    session: EmmaSession, server: FakeEmmaServer, status: int
) -> None:
    """502, 503 and 504 are retried."""
    server.fail_next_api_calls(1, status)
    assert session.get("/v1/locations").status_code == 200
    assert server.api_calls == 2


@pytest.mark.parametrize("status", [500, 429, 404])
def test_other_statuses_are_not_retried(
    session: EmmaSession, server: FakeEmmaServer, waits: list[float], status: int
) -> None:
    """500, 429 and other errors come back at once, Retry-After or not."""
    server.fail_next_api_calls(1, status, {"Retry-After": "1"})
    assert session.get("/v1/locations").status_code == status
    assert server.api_calls == 1
    assert waits == []


def test_post_is_never_retried(session: EmmaSession, server: FakeEmmaServer) -> None:
    """A POST answered 503 is returned as it is: it may have had an effect."""
    server.fail_next_api_calls(1, 503)
    response = session.post("/v1/ssh-keys", json={"name": "deploy"})
    assert response.status_code == 503
    assert server.api_calls == 1


def test_retries_run_out(auth: EmmaAuth, server: FakeEmmaServer, waits: list[float]) -> None:
    """After the last retry the final 503 is returned, not an exception."""
    server.fail_next_api_calls(3, 503)
    with EmmaSession(auth, retries=2) as emma:
        response = emma.get("/v1/locations")
    assert response.status_code == 503
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert server.api_calls == 3


def test_backoff_doubles_between_retries(
    auth: EmmaAuth, server: FakeEmmaServer, waits: list[float]
) -> None:
    """Without Retry-After, the waits before the retries are 0 s, 1 s, 2 s."""
    server.fail_next_api_calls(3, 503)
    with EmmaSession(auth, retries=3) as emma:
        assert emma.get("/v1/locations").status_code == 200
    assert waits == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("status", [502, 503])
def test_retry_after_is_honoured(
    session: EmmaSession, server: FakeEmmaServer, waits: list[float], status: int
) -> None:
    """The retry waits as long as Retry-After says, not the shorter backoff."""
    server.fail_next_api_calls(1, status, {"Retry-After": "7"})
    assert session.get("/v1/locations").status_code == 200
    assert waits == [7.0]
    assert server.api_calls == 2


def test_no_retry_waits_skips_the_sessions_waits(
    session: EmmaSession, server: FakeEmmaServer
) -> None:
    """Inside no_retry_waits() a retry does not wait for Retry-After."""
    server.fail_next_api_calls(1, 503, {"Retry-After": "20"})
    started = time.monotonic()
    with no_retry_waits():
        assert session.get("/v1/locations").status_code == 200
    assert time.monotonic() - started < 10.0
    assert server.api_calls == 2


def test_too_long_retry_after_returns_at_once(
    session: EmmaSession, server: FakeEmmaServer, waits: list[float]
) -> None:
    """A Retry-After beyond the limit is not slept through: the 503 comes back."""
    too_long = str(int(RETRY_AFTER_LIMIT) + 1)
    server.fail_next_api_calls(1, 503, {"Retry-After": too_long})
    response = session.get("/v1/locations")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == too_long
    assert waits == []
    assert server.api_calls == 1


def test_retry_after_at_the_limit_is_waited_for(
    session: EmmaSession, server: FakeEmmaServer, waits: list[float]
) -> None:
    """A Retry-After of exactly the limit is still waited for, and the request retried."""
    server.fail_next_api_calls(1, 503, {"Retry-After": str(int(RETRY_AFTER_LIMIT))})
    assert session.get("/v1/locations").status_code == 200
    assert waits == [RETRY_AFTER_LIMIT]


def test_unreadable_retry_after_falls_back_to_backoff(
    session: EmmaSession, server: FakeEmmaServer, waits: list[float]
) -> None:
    """A Retry-After that is neither seconds nor a date is ignored, not an error: the backoff
    applies."""
    server.fail_next_api_calls(2, 503, {"Retry-After": "soon"})
    assert session.get("/v1/locations").status_code == 200
    assert waits == [0.0, 1.0]
    assert server.api_calls == 3


@pytest.mark.parametrize("disabled", [0, None, False])
def test_retries_can_be_disabled(
    auth: EmmaAuth, server: FakeEmmaServer, disabled: int | None
) -> None:
    """retries=0, None or False sends each request once."""
    server.fail_next_api_calls(1, 503)
    with EmmaSession(auth, retries=disabled) as emma:
        assert emma.get("/v1/locations").status_code == 503
    assert server.api_calls == 1


def test_a_urllib3_retry_is_used_as_given(auth: EmmaAuth, server: FakeEmmaServer) -> None:
    """retries=Retry(...) replaces the policy: here 500 is retried, which the default is not."""
    server.fail_next_api_calls(1, 500)
    policy = Retry(total=1, status_forcelist=[500], raise_on_status=False)
    with EmmaSession(auth, retries=policy) as emma:
        assert emma.get("/v1/locations").status_code == 200
    assert server.api_calls == 2


@pytest.mark.parametrize("retries", [-1, True, 1.5, "3"])
def test_bad_retries_are_refused(auth: EmmaAuth, retries: object) -> None:
    """retries= must be a count, a Retry, or None/False."""
    with pytest.raises(ValueError, match="retries"):
        EmmaSession(auth, retries=retries)  # type: ignore[arg-type]


def closed_port_after_token(server: FakeEmmaServer, auth: EmmaAuth) -> None:
    """Get a token, then stop the server: its port now refuses connections."""
    auth.get_token()
    server.stop()


def test_get_is_retried_after_a_connection_error(
    auth: EmmaAuth, server: FakeEmmaServer, connections_to: Callable[[str], int]
) -> None:
    """A refused connection is retried for GET, then raises ConnectionError."""
    base_url = server.base_url
    closed_port_after_token(server, auth)
    before = connections_to(base_url)  # the token call's
    with (
        EmmaSession(auth, base_url=base_url, retries=1) as emma,
        pytest.raises(requests.ConnectionError),
    ):
        emma.get("/v1/locations")
    assert connections_to(base_url) - before == 2  # the request, and its one retry


def test_post_is_not_retried_after_a_connection_error(
    auth: EmmaAuth, server: FakeEmmaServer, connections_to: Callable[[str], int]
) -> None:
    """Even a refused connection is not retried for POST."""
    base_url = server.base_url
    closed_port_after_token(server, auth)
    before = connections_to(base_url)
    with (
        EmmaSession(auth, base_url=base_url, retries=1) as emma,
        pytest.raises(requests.ConnectionError),
    ):
        emma.post("/v1/ssh-keys", json={"name": "deploy"})
    assert connections_to(base_url) - before == 1  # the request alone


@pytest.mark.parametrize("method", IDEMPOTENT)
def test_idempotent_methods_are_retried_after_a_dropped_connection(
    session: EmmaSession, server: FakeEmmaServer, method: str
) -> None:
    """A connection closed without an answer is retried for the idempotent methods."""
    server.drop_next_api_calls(1)
    response = session.request(method, "/v1/locations")
    assert response.status_code == ANSWERED[method]
    assert server.api_calls == 2


def test_post_is_not_retried_after_a_dropped_connection(
    session: EmmaSession, server: FakeEmmaServer
) -> None:
    """A POST whose connection closes without an answer raises ConnectionError, sent once."""
    server.drop_next_api_calls(1)
    with pytest.raises(requests.ConnectionError):
        session.post("/v1/ssh-keys", json={"name": "deploy"})
    assert server.api_calls == 1


@pytest.mark.parametrize(("base_port", "url_port"), [("", ":80"), (":80", "")])
def test_default_port_spelled_or_not_gets_the_retries(base_port: str, url_port: str) -> None:
    """An absolute URL on the base URL's origin gets the retries whether it spells port 80."""
    # Which adapter serves a URL decides whether it is retried; the retries themselves are
    # tested above against the server. (A loopback port 80 can be neither bound here nor,
    # now that loopback skips proxies, reached through a proxy.)
    auth = EmmaAuth("id", "secret", base_url=f"http://127.0.0.1{base_port}/external")
    with EmmaSession(auth) as emma:
        adapter = emma.get_adapter(f"http://127.0.0.1{url_port}/external/v1/locations")
        assert isinstance(adapter.max_retries, IdempotentRetry)  # type: ignore[attr-defined]


# -- with EmmaAuth -------------------------------------------------------------------------


def test_revoked_token_is_replayed_once(
    session: EmmaSession, auth: EmmaAuth, server: FakeEmmaServer
) -> None:
    """The auth's 401 replay works through the session's retrying adapter."""
    auth.get_token()
    server.revoke()
    response = session.get("/v1/locations")
    assert response.status_code == 200
    assert [earlier.status_code for earlier in response.history] == [401]
    assert server.api_calls == 2


def test_gateway_error_and_revoked_token_together(
    session: EmmaSession, auth: EmmaAuth, server: FakeEmmaServer
) -> None:
    """A 503 is retried, the 401 behind it is replayed once: three API calls, then 200."""
    auth.get_token()
    server.revoke()
    server.fail_next_api_calls(1, 503)
    response = session.get("/v1/locations")
    assert response.status_code == 200
    assert server.api_calls == 3


def test_a_second_401_is_returned_not_retried(session: EmmaSession, server: FakeEmmaServer) -> None:
    """When the server rejects every token, one replay happens and its 401 comes back."""
    server.token_lifetime = 0  # issued already expired; the client assumes a default lifetime
    response = session.get("/v1/locations")
    assert response.status_code == 401
    assert server.api_calls == 2


def test_403_is_neither_retried_nor_renewed(session: EmmaSession, server: FakeEmmaServer) -> None:
    """A 403 (access level too low) comes back at once, with no token call."""
    server.access_level = "Read"
    response = session.delete("/v1/ssh-keys")
    assert response.status_code == 403
    assert (server.api_calls, server.token_calls) == (1, 1)


def test_threads_share_one_session(session: EmmaSession, server: FakeEmmaServer) -> None:
    """Many threads on one session: every call succeeds, and one token call serves them all."""
    threads = 8
    barrier = threading.Barrier(threads)
    statuses: list[int] = []

    def call() -> None:
        barrier.wait(timeout=30)
        statuses.append(session.get("/v1/locations").status_code)

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert statuses == [200] * threads
    assert server.token_calls == 1


def test_pickle_round_trip(session: EmmaSession, server: FakeEmmaServer) -> None:
    """A pickled session keeps base URL, timeout and retries, and works on its own."""
    session.get("/v1/locations")
    with pickle.loads(pickle.dumps(session)) as copy:
        assert (copy.base_url, copy.timeout) == (session.base_url, session.timeout)
        server.fail_next_api_calls(1, 503)
        assert copy.get("v1/locations").status_code == 200
    assert server.issue_calls == 2  # the copy fetched its own token


def test_context_manager_closes_connections(auth: EmmaAuth) -> None:
    """Leaving the with block closes the session's pooled connections."""
    with EmmaSession(auth) as emma:
        emma.get("/v1/locations")
        pools = emma.get_adapter(emma.base_url).poolmanager.pools  # type: ignore[attr-defined]
        assert len(pools) == 1
    assert len(pools) == 0
