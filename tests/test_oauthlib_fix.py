"""emma_compliance_fix: the real requests-oauthlib against FakeEmmaServer."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests
from oauthlib.oauth2 import BackendApplicationClient, InvalidClientError, InvalidGrantError
from oauthlib.oauth2.rfc6749.clients import base as oauthlib_client_base
from oauthlib.oauth2.rfc6749.errors import OAuth2Error, TemporarilyUnavailableError
from requests_oauthlib import OAuth2Session

from requests_emma.oauthlib import emma_compliance_fix
from requests_emma.testing import FakeEmmaServer


@pytest.fixture(autouse=True)
def _plain_http_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # oauthlib refuses http:// unless told otherwise; the fake server is on 127.0.0.1.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def fixed_session(server: FakeEmmaServer, **options: object) -> OAuth2Session:
    client = BackendApplicationClient(client_id=server.client_id)
    return emma_compliance_fix(OAuth2Session(client=client, **options))  # type: ignore[arg-type]


def fetch(session: OAuth2Session, server: FakeEmmaServer, secret: str | None = None) -> dict:  # type: ignore[type-arg]
    return session.fetch_token(  # type: ignore[no-any-return]
        token_url=server.base_url + "/v1/issue-token",
        client_id=server.client_id,
        client_secret=server.client_secret if secret is None else secret,
        timeout=10,
    )


def test_the_fix_returns_the_session_it_was_given(emma_server: FakeEmmaServer) -> None:
    """emma_compliance_fix returns the same OAuth2Session object."""
    session = OAuth2Session(client=BackendApplicationClient(client_id=emma_server.client_id))
    assert emma_compliance_fix(session) is session


def test_fetch_token_sends_emmas_json_body(emma_server: FakeEmmaServer) -> None:
    """fetch_token posts {"clientId", "clientSecret"} as JSON, with no Basic header."""
    with fixed_session(emma_server) as session:
        fetch(session, emma_server)
    sent = emma_server.requests[-1]
    assert sent.path == "/v1/issue-token"
    assert json.loads(sent.body) == {
        "clientId": emma_server.client_id,
        "clientSecret": emma_server.client_secret,
    }
    assert sent.headers["Content-Type"] == "application/json"
    assert "Authorization" not in sent.headers
    assert emma_server.issue_calls == 1


def test_fetch_token_returns_an_rfc6749_token(emma_server: FakeEmmaServer) -> None:
    """The token dict has access_token, expires_in, expires_at, refresh_token, token_type."""
    with fixed_session(emma_server) as session:
        before = time.time()
        token = fetch(session, emma_server)
    assert {"access_token", "expires_in", "expires_at", "refresh_token", "token_type"} <= set(token)
    assert token["token_type"] == "Bearer"
    assert 298 <= token["expires_in"] <= 300
    assert before + 290 < token["expires_at"] <= time.time() + 300
    assert emma_server.is_valid_access_token(token["access_token"])


def test_the_fetched_token_is_accepted_by_the_api(emma_server: FakeEmmaServer) -> None:
    """The session then calls the API with the emma token: 200."""
    with fixed_session(emma_server) as session:
        fetch(session, emma_server)
        response = session.get(emma_server.base_url + "/v1/locations", timeout=10)
    assert response.status_code == 200


def test_the_credentials_may_also_travel_in_the_form(emma_server: FakeEmmaServer) -> None:
    """With include_client_id=True (credentials in the form) emma's JSON is sent too."""
    with fixed_session(emma_server) as session:
        session.fetch_token(
            token_url=emma_server.base_url + "/v1/issue-token",
            client_id=emma_server.client_id,
            client_secret=emma_server.client_secret,
            include_client_id=True,
            timeout=10,
        )
    assert json.loads(emma_server.requests[-1].body)["clientSecret"] == emma_server.client_secret


def test_a_wrong_secret_raises_invalid_client_with_emmas_message(
    emma_server: FakeEmmaServer,
) -> None:
    """emma's 400 for wrong credentials becomes oauthlib's InvalidClientError."""
    with fixed_session(emma_server) as session, pytest.raises(InvalidClientError) as raised:
        fetch(session, emma_server, secret="wrong-secret")
    assert raised.value.description == "Invalid client credentials"
    assert "wrong-secret" not in str(raised.value)


def test_a_missing_secret_is_a_clear_error_before_any_call(emma_server: FakeEmmaServer) -> None:
    """fetch_token without client_secret is a ValueError saying what to pass; nothing is sent."""
    with fixed_session(emma_server) as session, pytest.raises(ValueError, match="client_secret"):
        session.fetch_token(token_url=emma_server.base_url + "/v1/issue-token", timeout=10)
    assert emma_server.token_calls == 0


def test_an_unavailable_token_endpoint_raises_temporarily_unavailable(
    emma_server: FakeEmmaServer,
) -> None:
    """A 503 from issue-token becomes oauthlib's TemporarilyUnavailableError."""
    emma_server.fail_next_token_calls(1, status=503)
    with fixed_session(emma_server) as session, pytest.raises(TemporarilyUnavailableError):
        fetch(session, emma_server)


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, "invalid_client"), (502, "temporarily_unavailable"), (404, "invalid_request")],
)
def test_statuses_mean_what_they_mean_to_the_auth(
    emma_server: FakeEmmaServer, status: int, error: str
) -> None:
    """issue-token's statuses read as the auth reads them: a 403 refuses the credentials, a
    502 is passing, a 404 (no token endpoint there) is a request to the wrong URL."""
    emma_server.fail_next_token_calls(1, status=status)
    with fixed_session(emma_server) as session, pytest.raises(OAuth2Error) as raised:
        fetch(session, emma_server)
    assert raised.value.error == error


def test_refresh_token_sends_emmas_json_and_rotates(emma_server: FakeEmmaServer) -> None:
    """refresh_token posts {"refreshToken"} as JSON and keeps the new refresh token."""
    with fixed_session(emma_server) as session:
        first = fetch(session, emma_server)
        second = session.refresh_token(emma_server.base_url + "/v1/refresh-token", timeout=10)
        response = session.get(emma_server.base_url + "/v1/locations", timeout=10)
    assert json.loads(emma_server.requests[-2].body) == {"refreshToken": first["refresh_token"]}
    assert emma_server.requests[-2].headers["Content-Type"] == "application/json"
    assert emma_server.refresh_calls == 1
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert response.status_code == 200


def test_a_used_refresh_token_raises_invalid_grant(emma_server: FakeEmmaServer) -> None:
    """Refreshing with a refresh token already rotated away is oauthlib's InvalidGrantError."""
    refresh_url = emma_server.base_url + "/v1/refresh-token"
    with fixed_session(emma_server) as session:
        first = fetch(session, emma_server)
        session.refresh_token(refresh_url, timeout=10)
        with pytest.raises(InvalidGrantError):
            session.refresh_token(refresh_url, refresh_token=first["refresh_token"], timeout=10)


class LaterTime:
    """Stands in for the time module in oauthlib's client: real time, ``ahead`` seconds on."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def time(self) -> float:
        return time.time() + self.ahead


def test_auto_refresh_renews_an_expired_token_and_calls_the_updater(
    server: FakeEmmaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With auto_refresh_url and token_updater, an expired token is refreshed at the next call."""
    updates: list[dict[str, object]] = []
    server.token_lifetime = 1
    session = fixed_session(
        server,
        auto_refresh_url=server.base_url + "/v1/refresh-token",
        token_updater=updates.append,
    )
    with session:
        first = fetch(session, server)
        server.token_lifetime = 300
        # oauthlib judges expiry by its own clock: 2 s on, the 1 s token has expired.
        monkeypatch.setattr(oauthlib_client_base, "time", LaterTime(2.0))
        response = session.get(server.base_url + "/v1/locations", timeout=10)
    assert response.status_code == 200
    assert server.refresh_calls == 1
    assert len(updates) == 1 and updates[0]["refresh_token"] != first["refresh_token"]
    assert session.token["access_token"] == updates[0]["access_token"]


def test_other_requests_of_the_session_are_untouched(emma_server: FakeEmmaServer) -> None:
    """An API POST with a form body goes out as the caller built it."""
    with fixed_session(emma_server) as session:
        fetch(session, emma_server)
        session.post(
            emma_server.base_url + "/v1/ssh-keys",
            data={"grant_type": "client_credentials"},
            timeout=10,
        )
    assert emma_server.requests[-1].body == b"grant_type=client_credentials"


def test_a_session_that_is_not_an_oauth2_session_is_refused() -> None:
    """A plain requests.Session is a ValueError naming what is needed."""
    with pytest.raises(ValueError, match="needs a requests_oauthlib.OAuth2Session"):
        emma_compliance_fix(requests.Session())  # type: ignore[arg-type]


def test_without_requests_oauthlib_the_error_names_the_extra() -> None:
    """Importing requests_emma.oauthlib without requests-oauthlib names the extra to install."""
    code = (
        "import sys; sys.modules['requests_oauthlib'] = None\n"
        "import requests_emma\n"
        "try:\n"
        "    import requests_emma.oauthlib\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'requests-emma[oauthlib]'" in result.stdout
