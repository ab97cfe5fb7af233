"""EmmaAuth construction: configuration, the environment, laziness, the exception hierarchy."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

import requests_emma
from requests_emma import CredentialsError, EmmaAuth, EmmaAuthError
from requests_emma.testing import FakeEmmaServer


def test_errors_are_request_exceptions() -> None:
    """Every exception the package exports derives from EmmaAuthError, itself a
    requests.RequestException."""
    exported = [getattr(requests_emma, name) for name in requests_emma.__all__]
    errors = [kind for kind in exported if isinstance(kind, type) and issubclass(kind, Exception)]
    assert {"CredentialsError", "TokenRequestError", "TokenResponseError"} < {
        error.__name__ for error in errors
    }
    assert [error for error in errors if not issubclass(error, EmmaAuthError)] == []
    assert issubclass(EmmaAuthError, requests.RequestException)


def test_construction_makes_no_network_call(
    server: FakeEmmaServer, auth: EmmaAuth, get: Callable[..., requests.Response]
) -> None:
    """Constructing EmmaAuth contacts nobody; the first request does."""
    assert server.token_calls == 0
    get(auth)
    assert server.token_calls == 1


def test_credentials_and_url_come_from_the_environment(
    server: FakeEmmaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EMMA_CLIENT_ID, EMMA_CLIENT_SECRET and EMMA_API_URL fill arguments left as None."""
    monkeypatch.setenv("EMMA_CLIENT_ID", server.client_id)
    monkeypatch.setenv("EMMA_CLIENT_SECRET", server.client_secret)
    monkeypatch.setenv("EMMA_API_URL", server.base_url + "/")
    auth = EmmaAuth()
    assert auth.base_url == server.base_url
    assert requests.get(auth.base_url + "/v1/locations", auth=auth, timeout=10).status_code == 200


def test_default_base_url_is_emma() -> None:
    """Without EMMA_API_URL the base URL is emma's external API."""
    assert EmmaAuth("id", "secret").base_url == "https://api.emma.ms/external"


@pytest.mark.parametrize(
    ("client_id", "client_secret", "named"),
    [
        (None, None, ["EMMA_CLIENT_ID", "EMMA_CLIENT_SECRET"]),
        ("id", None, ["EMMA_CLIENT_SECRET"]),
        (None, "secret", ["EMMA_CLIENT_ID"]),
        ("", "", ["EMMA_CLIENT_ID", "EMMA_CLIENT_SECRET"]),
    ],
)
def test_missing_credentials_name_the_variables(
    client_id: str | None, client_secret: str | None, named: list[str]
) -> None:
    """Missing credentials raise CredentialsError at construction naming what to set."""
    with pytest.raises(CredentialsError) as caught:
        EmmaAuth(client_id, client_secret)
    for variable in named:
        assert variable in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.emma.ms/external",
        "http://10.0.0.1/external",
        "ftp://api.emma.ms",
        "api.emma.ms/external",
        "https://api.emma.ms/external?x=1",
        "https://api.emma.ms:99999/external",
        "https://api.emma.ms\\x/external",
        "https://api emma.ms/external",
    ],
)
def test_bad_base_url_is_rejected(url: str) -> None:
    """A base URL that is not https (or http on loopback) raises ValueError saying so."""
    with pytest.raises(ValueError, match="base_url"):
        EmmaAuth("id", "secret", base_url=url)


def test_base_url_with_password_is_rejected_without_echoing_it() -> None:
    """A base URL carrying user info is refused and the password is not repeated."""
    with pytest.raises(ValueError, match="base_url must not contain a user name") as caught:
        EmmaAuth("id", "secret", base_url="https://user:hunter2@api.emma.ms/external")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/external", "http://localhost/x", "http://[::1]:9/"]
)
def test_plain_http_is_allowed_on_loopback(url: str) -> None:
    """Plain http is accepted for a loopback host, as a local test server needs."""
    assert EmmaAuth("id", "secret", base_url=url).base_url == url.rstrip("/")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"refresh_margin": -1}, "refresh_margin"),
        ({"refresh_margin": float("nan")}, "refresh_margin"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": (1, 2, 3)}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"session": object()}, "session"),
        ({"on_token": 42}, "on_token"),
        ({"retry": 3}, "retry"),
    ],
)
def test_bad_options_raise_value_error_naming_them(kwargs: dict[str, object], named: str) -> None:
    """Each invalid keyword option raises ValueError naming that option."""
    with pytest.raises(ValueError, match=named):
        EmmaAuth("id", "secret", **kwargs)  # type: ignore[arg-type]


def test_repr_shows_client_id_but_not_the_secret() -> None:
    """repr(EmmaAuth) names the client and URL, never the secret."""
    text = repr(EmmaAuth("my-client", "s3cr3t-value"))
    assert "my-client" in text and "api.emma.ms" in text
    assert "s3cr3t-value" not in text


def test_a_secret_that_is_not_text_is_refused_without_showing_it() -> None:
    """A client secret with bytes that are not UTF-8 (from the environment) is a
    CredentialsError at construction that does not quote it."""
    secret = "abc\udcff-secret"
    with pytest.raises(CredentialsError, match="client_secret is not valid text") as caught:
        EmmaAuth("id", secret)
    assert secret not in repr(caught.value) and caught.value.__context__ is None
