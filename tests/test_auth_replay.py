"""The 401 replay: renew once, resend the same request byte for byte, never loop."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator

import pytest
import requests
import responses
from fakes import auth_for

from requests_emma import EmmaAuth
from requests_emma.testing import FakeEmmaServer, RecordedRequest

SSH_KEY = {"name": "deploy", "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBody"}


def ssh_key_posts(server: FakeEmmaServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path == "/v1/ssh-keys" and r.method == "POST"]


def test_rejected_token_is_renewed_and_request_replayed(
    server: FakeEmmaServer, auth: EmmaAuth, get: Callable[..., requests.Response]
) -> None:
    """A 401 for a revoked token renews it and the replay succeeds, the 401 in history."""
    old = auth.get_token()
    server.revoke()
    response = get(auth)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    new = auth.get_token()
    assert new.access_token != old.access_token
    assert response.request.headers["Authorization"] == f"Bearer {new.access_token}"
    assert server.api_calls == 2


def test_replay_after_expired_access_token_uses_refresh_token(
    server: FakeEmmaServer, auth: EmmaAuth, get: Callable[..., requests.Response]
) -> None:
    """An access token expired early on the server is renewed with the refresh token."""
    auth.get_token()
    server.expire_access_tokens()
    response = get(auth)
    assert response.status_code == 200
    assert (server.issue_calls, server.refresh_calls) == (1, 1)


def body_cases() -> Iterator[tuple[str, dict[str, object]]]:
    raw = json.dumps(SSH_KEY).encode()
    yield "bytes", {"data": raw, "headers": {"Content-Type": "application/json"}}
    yield "str", {"data": raw.decode(), "headers": {"Content-Type": "application/json"}}
    yield "json", {"json": SSH_KEY}
    yield "form", {"data": {"name": "deploy", "key": "ssh-ed25519 AAAA"}}
    yield "file", {"data": io.BytesIO(raw), "headers": {"Content-Type": "application/json"}}
    yield "bytearray", {"data": bytearray(raw), "headers": {"Content-Type": "application/json"}}


@pytest.mark.parametrize(("kind", "kwargs"), list(body_cases()), ids=[c[0] for c in body_cases()])
def test_replayed_body_is_byte_identical(
    server: FakeEmmaServer, auth: EmmaAuth, kind: str, kwargs: dict[str, object]
) -> None:
    """The replayed request carries exactly the bytes of the first attempt."""
    auth.get_token()
    server.revoke()
    response = requests.post(server.base_url + "/v1/ssh-keys", auth=auth, timeout=10, **kwargs)
    first, replay = ssh_key_posts(server)
    assert first.body == replay.body
    assert len(replay.body) > 0
    assert response.history[0].status_code == 401
    # The replay got past the token check: a key made, or, for the form (not JSON), emma's 400.
    assert response.status_code == (400 if kind == "form" else 201)


def test_file_body_is_rewound_from_its_starting_position(
    server: FakeEmmaServer, auth: EmmaAuth
) -> None:
    """A file body that started mid-file is replayed from that position, not from 0."""
    stream = io.BytesIO(b"HEADER" + json.dumps(SSH_KEY).encode())
    stream.seek(len(b"HEADER"))
    auth.get_token()
    server.revoke()
    response = requests.post(
        server.base_url + "/v1/ssh-keys",
        data=stream,
        headers={"Content-Type": "application/json"},
        auth=auth,
        timeout=10,
    )
    assert response.status_code == 201
    assert [r.body for r in ssh_key_posts(server)] == [json.dumps(SSH_KEY).encode()] * 2


def test_generator_body_is_never_replayed(server: FakeEmmaServer, auth: EmmaAuth) -> None:
    """A generator body cannot be rewound: the 401 is returned, nothing is resent."""
    auth.get_token()
    server.revoke()
    chunks = (part for part in [b'{"name": "deploy", ', b'"key": "ssh-ed25519 AAAA"}'])
    response = requests.post(
        server.base_url + "/v1/ssh-keys",
        data=chunks,
        headers={"Content-Type": "application/json"},
        auth=auth,
        timeout=10,
    )
    assert response.status_code == 401
    assert len(ssh_key_posts(server)) == 1
    assert server.token_calls == 1


def test_second_401_is_returned_not_looped(
    server: FakeEmmaServer, auth: EmmaAuth, get: Callable[..., requests.Response]
) -> None:
    """If the replay gets a 401 too, that 401 is returned: one renewal, two API calls."""
    server.api_hook = server.revoke  # every API call finds every token revoked
    response = get(auth)
    assert response.status_code == 401
    assert [r.status_code for r in response.history] == [401]
    assert server.api_calls == 2
    assert server.token_calls == 3  # issue; refresh refused (revoked); issue


def test_403_never_renews(server: FakeEmmaServer) -> None:
    """A 403 (access level too low) is returned as it is, with no token call."""
    server.access_level = "Read"
    auth = auth_for(server)
    response = requests.post(server.base_url + "/v1/ssh-keys", json=SSH_KEY, auth=auth, timeout=10)
    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"
    assert server.token_calls == 1 and server.api_calls == 1


def test_replay_works_through_a_session(server: FakeEmmaServer, auth: EmmaAuth) -> None:
    """Mounted on a Session, a 401 is replayed the same way."""
    with requests.Session() as session:
        session.auth = auth
        session.get(server.base_url + "/v1/locations", timeout=10)
        server.revoke()
        response = session.post(server.base_url + "/v1/ssh-keys", json=SSH_KEY, timeout=10)
    assert response.status_code == 201
    assert len(response.history) == 1


def test_streamed_response_replay(server: FakeEmmaServer, auth: EmmaAuth) -> None:
    """stream=True requests are replayed too and the final body is readable."""
    auth.get_token()
    server.revoke()
    url = server.base_url + "/v1/locations"
    with requests.get(url, auth=auth, timeout=10, stream=True) as response:
        assert response.status_code == 200
        assert json.loads(response.raw.read())[0]["id"] == 18


@responses.activate
def test_cookies_from_the_401_are_carried_to_the_replay() -> None:
    """Cookies set by the 401 response are sent with the replayed request."""
    base = "https://api.emma.ms/external"
    responses.post(f"{base}/v1/issue-token", json={"accessToken": "t1", "expiresIn": 300})
    responses.post(f"{base}/v1/issue-token", json={"accessToken": "t2", "expiresIn": 300})
    responses.get(
        f"{base}/v1/locations",
        status=401,
        json={"code": "UNAUTHORIZED", "message": "Token is not valid"},
        headers={"Set-Cookie": "route=node-7; Path=/"},
    )
    responses.get(f"{base}/v1/locations", json=[])
    response = requests.get(f"{base}/v1/locations", auth=EmmaAuth("id", "secret"), timeout=10)
    assert response.status_code == 200
    replay = responses.calls[-1].request
    assert replay.headers["Cookie"] == "route=node-7"
    assert replay.headers["Authorization"] == "Bearer t2"


def cookie_headers(set_cookie: str, jar_cookies: list[tuple[str, str, str]]) -> list[str | None]:
    """The Cookie headers of a request and of its replay after a 401 that sent ``set_cookie``."""
    base = "https://api.emma.ms/external"
    with responses.RequestsMock() as mock:
        mock.post(f"{base}/v1/issue-token", json={"accessToken": "t1", "expiresIn": 300})
        mock.post(f"{base}/v1/issue-token", json={"accessToken": "t2", "expiresIn": 300})
        mock.get(f"{base}/v1/locations", status=401, headers={"Set-Cookie": set_cookie})
        mock.get(f"{base}/v1/locations", json=[])
        with requests.Session() as session:
            session.auth = EmmaAuth("id", "secret")
            for name, value, path in jar_cookies:
                session.cookies.set(name, value, domain="api.emma.ms", path=path)
            assert session.get(f"{base}/v1/locations", timeout=10).status_code == 200
        return [call.request.headers.get("Cookie") for call in mock.calls[1::2]]


def test_cookies_from_the_401_join_the_cookies_already_sent() -> None:
    """A replay keeps the cookies the request had and adds (or updates) those the 401 set."""
    jar = [("lang", "en", "/"), ("route", "node-1", "/")]
    first, replay = cookie_headers("route=node-7; Path=/", jar)
    assert first == "lang=en; route=node-1"
    assert replay == "lang=en; route=node-7"


def test_replay_keeps_same_name_cookies_the_401_left_alone() -> None:
    """Two cookies of one name (different paths) both go with the replay beside the new one."""
    jar = [("sid", "SPECIFIC", "/external/v1"), ("sid", "GENERAL", "/")]
    assert cookie_headers("lb=node2; Path=/", jar)[-1] == "sid=SPECIFIC; sid=GENERAL; lb=node2"


def test_replay_drops_a_cookie_the_401_deleted() -> None:
    """A cookie the 401 expired (Max-Age=0) is not sent with the replay."""
    jar = [("a", "1", "/"), ("b", "2", "/")]
    assert cookie_headers("a=; Max-Age=0; Path=/", jar)[-1] == "b=2"


@pytest.mark.parametrize("status", [307, 308])
def test_a_redirect_after_the_replay_carries_the_new_token(
    server: FakeEmmaServer, auth: EmmaAuth, status: int
) -> None:
    """A 307/308 answered to the replay is followed with the renewed token: one 401 in all."""
    server.add_redirect(
        "/v1/moved", server.base_url + "/v1/ssh-keys", status=status, requires_token=True
    )
    auth.get_token()
    server.revoke()
    response = requests.post(
        server.base_url + "/v1/moved", json={"name": "k", "key": "ssh-ed25519 AAAA"}, auth=auth,
        timeout=10,
    )  # fmt: skip
    assert response.status_code == 201
    new = f"Bearer {auth.get_token().access_token}"
    api = [r for r in server.requests if "token" not in r.path]
    assert [(r.path, r.headers["Authorization"] == new) for r in api] == [
        ("/v1/moved", False),
        ("/v1/moved", True),
        ("/v1/ssh-keys", True),
    ]
    assert api[-1].body == api[0].body  # the body went along, whole
    assert server.token_calls == 3  # the first token; refresh refused (revoked), issue
    assert response.history[0].status_code == status
