"""EmmaAuth against the fake emma server: which requests get the token, renewal, errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import pytest
import requests
import responses
from fakes import FakeClock, announce_late, auth_for, join_renewal, use_clock

from requests_emma import (
    CredentialsError,
    EmmaAuth,
    RetryPolicy,
    Token,
    TokenRequestError,
    TokenResponseError,
)
from requests_emma.testing import FakeEmmaServer


@pytest.fixture
def token_session() -> Iterator[requests.Session]:
    """A plain requests.Session for EmmaAuth's token calls (session=...)."""
    with requests.Session() as session:
        yield session


@pytest.fixture
def other_server() -> Iterator[FakeEmmaServer]:
    with FakeEmmaServer() as fake:
        yield fake


def bearer(recorded_headers: dict[str, str] | object) -> str | None:
    assert isinstance(recorded_headers, dict)
    return recorded_headers.get("Authorization")


def carries_the_token(auth: EmmaAuth, request: requests.PreparedRequest) -> bool:
    """Whether ``request`` carries ``auth``'s bearer token (not just any Authorization)."""
    return request.headers.get("Authorization") == f"Bearer {auth.get_token().access_token}"


# -- which requests get the token --------------------------------------------------------------


def test_api_request_gets_bearer_token(
    server: FakeEmmaServer, auth: EmmaAuth, get: Callable[..., requests.Response]
) -> None:
    """A request to the API's origin carries Authorization: Bearer <accessToken>."""
    response = get(auth)
    assert response.status_code == 200
    assert response.json()[0]["name"] == "London"
    sent = server.requests[-1]
    assert sent.headers["Authorization"] == f"Bearer {auth.get_token().access_token}"


def test_other_origin_is_left_untouched(
    server: FakeEmmaServer, auth: EmmaAuth, other_server: FakeEmmaServer
) -> None:
    """A request to another origin gets no token and causes no token call."""
    response = requests.get(other_server.base_url + "/v1/locations", auth=auth, timeout=10)
    assert response.status_code == 401
    assert "Authorization" not in other_server.requests[-1].headers
    assert server.token_calls == 0


@pytest.mark.parametrize(
    ("url", "gets_token"),
    [
        ("http://127.0.0.1:{port}/external/v1/locations", True),
        ("HTTP://127.0.0.1:{port}/v1?page=2", True),
        ("http://127.0.0.1:{port}", True),
        ("https://127.0.0.1:{port}/external/v1/locations", False),
        ("http://127.0.0.10:{port}/external/v1/locations", False),
        ("http://localhost:{port}/external/v1/locations", False),
        ("http://127.0.0.1:{port}@example.invalid/external", False),
        ("http://127.0.0.1:{other_port}/external", False),
        ("http://127.0.0.1/external", False),
    ],
)
def test_token_goes_to_the_api_origin_only(
    server: FakeEmmaServer, auth: EmmaAuth, url: str, gets_token: bool
) -> None:
    """A prepared request gets the token exactly when its scheme, host and port are the API's."""
    auth.get_token()
    url = url.format(port=server.port, other_port=server.port % 60000 + 1)
    assert carries_the_token(auth, auth(requests.Request("GET", url).prepare())) is gets_token
    assert server.token_calls == 1


@pytest.mark.parametrize(
    ("url", "gets_token"),
    [
        ("HTTP://127.0.0.1:{port}/external/v1/locations", True),
        ("http://127.0.0.1:{port}./external", False),
        ("http://example.invalid\\@127.0.0.1:{port}/external", False),
        ("http://127.0.0.1:{port}\\@example.invalid/external", False),
        ("http://127.0.0.1 :{port}/external", False),
    ],
)
def test_a_url_set_by_hand_gets_the_token_only_when_unambiguous(
    server: FakeEmmaServer, auth: EmmaAuth, url: str, gets_token: bool
) -> None:
    """A URL set by hand (not prepared by requests) takes the full origin check: another
    spelling of the API's origin gets the token; one with a backslash or a space in its
    authority, which urllib3 may read as another host, does not."""
    auth.get_token()
    request = requests.Request("GET", server.base_url).prepare()
    request.url = url.format(port=server.port)
    assert carries_the_token(auth, auth(request)) is gets_token


def test_other_origin_is_logged_without_its_query(
    auth: EmmaAuth, other_server: FakeEmmaServer, debug_log: pytest.LogCaptureFixture
) -> None:
    """A request sent without a token says why at DEBUG, naming the origin only."""
    url = other_server.base_url + "/v1/locations?signature=caller-secret"
    requests.get(url, auth=auth, timeout=10)
    port = other_server.port
    assert f"no token for http://127.0.0.1:{port}: not the API's origin" in debug_log.text
    assert "caller-secret" not in debug_log.text


def test_session_talks_to_other_hosts_without_leaking(
    server: FakeEmmaServer, auth: EmmaAuth, other_server: FakeEmmaServer
) -> None:
    """One Session with EmmaAuth mounted sends the token to emma only."""
    with requests.Session() as session:
        session.auth = auth
        assert session.get(server.base_url + "/v1/locations", timeout=10).status_code == 200
        session.get(other_server.base_url + "/v1/locations", timeout=10)
    assert "Authorization" not in other_server.requests[-1].headers


def test_cross_host_redirect_never_gets_the_token(
    server: FakeEmmaServer, auth: EmmaAuth, other_server: FakeEmmaServer
) -> None:
    """A redirect to another host arrives without the token and its 401 is not replayed."""
    elsewhere = other_server.base_url.replace("127.0.0.1", "localhost") + "/v1/locations"
    server.add_redirect("/v1/moved", elsewhere)
    response = requests.get(server.base_url + "/v1/moved", auth=auth, timeout=10)
    assert response.status_code == 401
    assert [bearer(r.headers) for r in other_server.requests] == [None]
    assert server.token_calls == 1


def test_401_from_another_origin_is_never_replayed(
    server: FakeEmmaServer, auth: EmmaAuth, other_server: FakeEmmaServer
) -> None:
    """The replay hook ignores a 401 from another origin even if it carried our token."""
    token = auth.get_token()
    response = requests.get(
        other_server.base_url + "/v1/locations",
        headers={"Authorization": f"Bearer {token.access_token}"},
        timeout=10,
    )
    prepared = auth(requests.Request("GET", server.base_url + "/v1/locations").prepare())
    replay_after_401 = prepared.hooks["response"][-1]  # the hook the auth put on a request
    assert replay_after_401(response) is response
    assert (other_server.api_calls, server.token_calls) == (1, 1)


def test_same_origin_redirect_keeps_the_token(server: FakeEmmaServer, auth: EmmaAuth) -> None:
    """A redirect within the API's origin keeps the token (requests keeps it on the same host)."""
    server.add_redirect("/v1/old-locations", server.base_url + "/v1/locations")
    response = requests.get(server.base_url + "/v1/old-locations", auth=auth, timeout=10)
    assert response.status_code == 200


# -- renewing before sending -------------------------------------------------------------------


def test_token_is_reused_while_fresh(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, get: Callable[..., requests.Response]
) -> None:
    """Requests inside the token's fresh period reuse it: one token call."""
    for _ in range(3):
        assert get(auth).status_code == 200
        clock.advance(60)
    assert server.token_calls == 1


def test_token_inside_margin_is_sent_and_renewed_in_the_background(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, get: Callable[..., requests.Response]
) -> None:
    """A token inside the refresh margin goes out at once; one background renewal replaces it."""
    first = auth.get_token()
    clock.advance(250)  # 300 s token, default margin 60 s
    assert get(auth).status_code == 200
    join_renewal(auth)
    sent = [bearer(r.headers) for r in server.requests if r.path == "/v1/locations"]
    assert sent == [f"Bearer {first.access_token}"]
    assert server.refresh_calls == 1
    assert auth.get_token().access_token != first.access_token


def test_expired_token_is_renewed_before_sending(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, get: Callable[..., requests.Response]
) -> None:
    """An expired token is never sent: a new one is fetched first."""
    first = auth.get_token()
    clock.advance(301)
    assert get(auth).status_code == 200
    sent = [bearer(r.headers) for r in server.requests if r.path == "/v1/locations"]
    assert sent == [f"Bearer {auth.get_token().access_token}"]
    assert auth.get_token() != first


def test_explicit_margin_is_honoured(server: FakeEmmaServer, clock: FakeClock) -> None:
    """refresh_margin=10 keeps a 300 s token fresh until 290 s."""
    auth = auth_for(server, refresh_margin=10)
    use_clock(auth, clock)
    auth.get_token()
    clock.advance(285)
    auth.get_token()
    assert server.token_calls == 1
    clock.advance(6)
    auth.get_token()
    join_renewal(auth)
    assert server.token_calls == 2


def test_short_lived_token_is_not_renewed_on_every_request(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """A 2 s token serves several requests before it is renewed."""
    server.token_lifetime = 2
    for _ in range(5):
        auth.get_token()
        clock.advance(0.25)
    assert server.token_calls == 1


def test_lifetime_from_jwt_exp_without_expires_in(server: FakeEmmaServer, auth: EmmaAuth) -> None:
    """Without expiresIn the token's expiry comes from its JWT exp claim."""
    server.send_expires_in, server.token_lifetime = False, 120
    assert 100 < auth.get_token().expires_in() <= 121


@responses.activate
def test_opaque_token_without_expiry_works() -> None:
    """An opaque token with no expiry information is used, not a crash."""
    base = "https://api.emma.ms/external"
    responses.post(f"{base}/v1/issue-token", json={"accessToken": "opaque"})
    responses.get(f"{base}/v1/locations", json=[])
    response = requests.get(f"{base}/v1/locations", auth=EmmaAuth("id", "secret"), timeout=10)
    assert response.status_code == 200
    assert responses.calls[1].request.headers["Authorization"] == "Bearer opaque"


# -- refresh token first, newest kept, fall back to issue-token --------------------------------


def test_renewal_uses_the_refresh_token(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """Renewal calls refresh-token with the refresh token, not issue-token."""
    first = auth.get_token()
    clock.advance(301)
    auth.get_token()
    assert (server.issue_calls, server.refresh_calls) == (1, 1)
    assert json.loads(server.requests[-1].body) == {"refreshToken": first.refresh_token}


def test_newest_refresh_token_is_used_after_rotation(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """Each refresh uses the refresh token of the previous response (the old one is revoked)."""
    auth.get_token()
    for _ in range(3):
        clock.advance(301)
        auth.get_token()
    assert (server.issue_calls, server.refresh_calls) == (1, 3)


def test_refused_refresh_falls_back_to_issue_token(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """A refresh answered 4xx falls back to issue-token with the client credentials."""
    auth.get_token()
    server.revoke()
    clock.advance(301)
    token = auth.get_token()
    assert (server.issue_calls, server.refresh_calls) == (2, 1)
    assert server.is_valid_access_token(token.access_token)


def test_expired_refresh_token_is_not_tried(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """Once the refresh token has expired, renewal goes straight to issue-token."""
    auth.get_token()
    clock.advance(1801)
    auth.get_token()
    assert (server.issue_calls, server.refresh_calls) == (2, 0)


def test_refresh_server_error_falls_back_to_issue_token(
    server: FakeEmmaServer, clock: FakeClock
) -> None:
    """A 500 from refresh-token may come after emma carried the call out (and rotated the
    refresh token): the refresh token is not sent again, and a token is issued."""
    auth = auth_for(
        server,
        retry=RetryPolicy(attempts=1),
    )
    use_clock(auth, clock)
    auth.get_token()
    clock.advance(301)
    server.fail_next_token_calls(1, 500)
    auth.get_token()
    assert (server.issue_calls, server.refresh_calls) == (2, 1)


def test_rate_limited_refresh_keeps_the_refresh_token(
    server: FakeEmmaServer, clock: FakeClock
) -> None:
    """A 429 from refresh-token is an endpoint failure: no fallback, refresh token kept."""
    auth = auth_for(
        server,
        retry=RetryPolicy(attempts=1),
    )
    use_clock(auth, clock)
    auth.get_token()
    clock.advance(301)
    server.fail_next_token_calls(1, 429)
    with pytest.raises(TokenRequestError):
        auth.get_token()
    auth.get_token()
    assert (server.issue_calls, server.refresh_calls) == (1, 2)


def test_on_token_gets_every_new_token(server: FakeEmmaServer, clock: FakeClock) -> None:
    """on_token is called once with each new Token."""
    seen: list[Token] = []
    auth = auth_for(server, on_token=seen.append)
    use_clock(auth, clock)
    first = auth.get_token()
    clock.advance(301)
    second = auth.get_token()
    assert seen == [first, second]


def test_on_token_never_ends_on_a_superseded_token(
    server: FakeEmmaServer, clock: FakeClock
) -> None:
    """A late announcement of a token already replaced (a preempted thread) is skipped."""
    seen: list[Token] = []
    auth = auth_for(server, on_token=seen.append)
    use_clock(auth, clock)
    first = auth.get_token()
    clock.advance(301)
    second = auth.get_token()
    announce_late(auth, first)  # what a thread preempted between renewal and callback does
    assert seen == [first, second]


def test_failing_on_token_is_logged_and_ignored(
    server: FakeEmmaServer,
    debug_log: pytest.LogCaptureFixture,
    get: Callable[..., requests.Response],
) -> None:
    """A callback that raises is logged as a warning and ignored; the request still goes out."""

    def broken(token: Token) -> None:
        raise RuntimeError("bug in user code")

    auth = auth_for(server, on_token=broken)
    assert get(auth).status_code == 200
    warnings = [r.getMessage() for r in debug_log.records if r.levelname == "WARNING"]
    assert warnings == ["on_token callback raised RuntimeError; ignored"]


def test_on_token_may_use_the_auth_itself(
    server: FakeEmmaServer, get: Callable[..., requests.Response]
) -> None:
    """on_token runs outside the lock: a callback calling the API (even through a 401) works."""
    statuses: list[int] = []
    first = threading.Event()

    def call_api(token: Token) -> None:
        if not first.is_set():
            first.set()
            server.revoke()  # the callback's own request gets a 401, renewal and replay
            statuses.append(get(auth).status_code)

    auth = auth_for(server, on_token=call_api)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (auth.get_token(), done.set()), daemon=True)
    worker.start()
    assert done.wait(30), "get_token() deadlocked in on_token"
    assert statuses == [200]


# -- how token calls are made ------------------------------------------------------------------


def test_token_call_is_json_without_authorization(
    server: FakeEmmaServer, token_session: requests.Session
) -> None:
    """issue-token gets a JSON body, JSON Content-Type and Accept, and no Authorization."""
    session = token_session
    session.auth = ("someone", "else")  # must not leak into token calls
    auth = auth_for(server, session=session)
    auth.get_token()
    call = server.requests[0]
    assert call.path == "/v1/issue-token" and call.method == "POST"
    assert json.loads(call.body) == {
        "clientId": server.client_id,
        "clientSecret": server.client_secret,
    }
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["Accept"] == "application/json"
    assert "Authorization" not in call.headers


def test_token_calls_use_the_given_session(
    server: FakeEmmaServer, token_session: requests.Session, get: Callable[..., requests.Response]
) -> None:
    """session= is used for token calls (its headers show there), not for API calls."""
    session = token_session
    session.headers["X-Corporate-Proxy"] = "yes"
    auth = auth_for(server, session=session)
    get(auth)
    token_call, api_call = server.requests
    assert token_call.headers.get("X-Corporate-Proxy") == "yes"
    assert "X-Corporate-Proxy" not in api_call.headers


def test_token_call_does_not_go_through_a_session_carrying_the_auth(
    server: FakeEmmaServer,
    token_session: requests.Session,
) -> None:
    """A token session that has EmmaAuth mounted does not recurse into it."""
    session = token_session
    auth = auth_for(server, session=session)
    session.auth = auth
    assert session.get(server.base_url + "/v1/locations", timeout=10).status_code == 200
    assert server.token_calls == 1


def test_token_call_timeout_applies(server: FakeEmmaServer) -> None:
    """timeout= bounds a token call: a slow endpoint fails with TokenRequestError."""
    release = threading.Event()
    server.token_hook = lambda: release.wait(30)
    auth = auth_for(
        server,
        timeout=0.2,
        retry=RetryPolicy(attempts=1),
    )
    try:
        with pytest.raises(TokenRequestError, match="timed out"):
            auth.get_token()
    finally:
        release.set()


# -- errors from the token endpoint ------------------------------------------------------------


def test_wrong_secret_raises_credentials_error_with_emmas_message(
    server: FakeEmmaServer, get: Callable[..., requests.Response]
) -> None:
    """issue-token refusing the credentials raises CredentialsError with emma's message."""
    auth = EmmaAuth(server.client_id, "wrong-secret", base_url=server.base_url)
    with pytest.raises(CredentialsError) as caught:
        get(auth)
    assert caught.value.status_code == 400
    assert caught.value.message == "Invalid client credentials"
    assert "Invalid client credentials" in str(caught.value)
    assert "wrong-secret" not in str(caught.value)


@pytest.mark.parametrize("status", [400, 403])
def test_credential_rejection_is_not_retried(
    server: FakeEmmaServer, auth: EmmaAuth, status: int
) -> None:
    """issue-token answering 400, 401 or 403 is final: one call, CredentialsError."""
    body = json.dumps({"code": "UNAUTHORIZED", "message": "Client disabled"}).encode()
    server.fail_next_token_calls(1, status, body=body)
    with pytest.raises(CredentialsError, match="Client disabled"):
        auth.get_token()
    assert server.issue_calls == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>ok</html>", "not JSON"),
        (b'{"tokenType": "Bearer"}', "no accessToken"),
        (b'{"accessToken": 12345}', "expected a string"),
    ],
)
def test_unusable_2xx_raises_token_response_error(
    server: FakeEmmaServer, auth: EmmaAuth, body: bytes, reason: str
) -> None:
    """A 2xx token response that is not a usable token raises TokenResponseError."""
    server.fail_next_token_calls(1, 200, body=body)
    with pytest.raises(TokenResponseError, match=reason):
        auth.get_token()


def test_token_request_error_carries_status_and_emma_fields(
    server: FakeEmmaServer,
) -> None:
    """TokenRequestError exposes the status and emma's code and message."""
    auth = auth_for(
        server,
        retry=RetryPolicy(attempts=1),
    )
    body = json.dumps({"code": "INTERNAL_ERROR", "message": "Keycloak down"}).encode()
    server.fail_next_token_calls(1, 500, body=body)
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    error = caught.value
    assert (error.status_code, error.code, error.message) == (
        500,
        "INTERNAL_ERROR",
        "Keycloak down",
    )
    assert error.endpoint == "/v1/issue-token"
    assert "Keycloak down" in str(error)


def test_unreachable_endpoint_error_names_the_reason_and_base_url(server: FakeEmmaServer) -> None:
    """A refused connection says so, with the base URL to check."""
    base_url = server.base_url
    server.stop()  # its port now refuses connections
    auth = EmmaAuth("id", "secret", base_url=base_url, retry=RetryPolicy(attempts=1))
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    assert "Connection refused" in str(caught.value)
    assert base_url in str(caught.value)


def test_token_endpoint_not_found_points_at_the_base_url(server: FakeEmmaServer) -> None:
    """A 404 from the token endpoint (a base URL without /external) says to check it."""
    wrong = server.base_url.removesuffix("/external")
    auth = EmmaAuth(server.client_id, server.client_secret, base_url=wrong)
    with pytest.raises(TokenRequestError, match="check the base URL") as caught:
        auth.get_token()
    assert caught.value.status_code == 404
