"""Interop with requests-oauthlib: emma tokens handed to an OAuth2Session."""

from __future__ import annotations

import pytest
import requests
from fakes import auth_for
from requests_oauthlib import OAuth2Session

from requests_emma import EmmaAuth, Token
from requests_emma.testing import FakeEmmaServer


def as_oauth2_token(token: Token) -> dict[str, object]:
    """The token dict requests-oauthlib expects, as docs/interop.md shows."""
    return {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_at": token.expires_at,
    }


@pytest.fixture(autouse=True)
def _plain_http_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # oauthlib refuses http:// unless told otherwise; the fake server is on 127.0.0.1.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def test_oauth2_session_authenticates_with_an_emma_token(
    server: FakeEmmaServer, auth: EmmaAuth
) -> None:
    """An OAuth2Session given an EmmaAuth token is accepted by the API."""
    session = OAuth2Session(server.client_id, token=as_oauth2_token(auth.get_token()))
    with session:
        assert session.get(server.base_url + "/v1/locations", timeout=10).status_code == 200


def test_on_token_keeps_an_oauth2_session_current(server: FakeEmmaServer) -> None:
    """on_token hands each renewed token to an OAuth2Session, which then uses the new one."""
    session = OAuth2Session(server.client_id)
    auth = auth_for(
        server,
        on_token=lambda token: setattr(session, "token", as_oauth2_token(token)),
    )
    url = server.base_url + "/v1/locations"
    with session:
        auth.get_token()
        assert session.get(url, timeout=10).status_code == 200
        server.revoke()
        assert session.get(url, timeout=10).status_code == 401
        assert requests.get(url, auth=auth, timeout=10).status_code == 200  # 401, renew, replay
        assert session.get(url, timeout=10).status_code == 200
