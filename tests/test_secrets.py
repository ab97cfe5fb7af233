"""Secrets never show: not in reprs, logs, exceptions or their causes."""

from __future__ import annotations

import logging
import threading
import traceback
from typing import Any

import pytest
import requests
import requests.adapters
from fakes import FakeClock, auth_for, use_clock

from requests_emma import (
    EmmaAuth,
    RetryPolicy,
    Token,
    TokenRequestError,
    TokenResponseError,
)
from requests_emma._core.wire import parse_token
from requests_emma.testing import FakeEmmaServer


def secrets_of(server: FakeEmmaServer, tokens: list[Token]) -> list[str]:
    values = [server.client_secret]
    for token in tokens:
        values.append(token.access_token)
        if token.refresh_token:
            values.append(token.refresh_token)
    return values


def test_token_repr_hides_both_tokens() -> None:
    """repr and str of a Token show its times but neither token."""
    token = Token("access-abc", "Bearer", 1.0, "refresh-xyz", 2.0)
    for text in (repr(token), str(token)):
        assert "access-abc" not in text and "refresh-xyz" not in text
        assert "expires_at=1.0" in text


def test_logs_of_a_whole_lifecycle_hold_no_secret(
    server: FakeEmmaServer, debug_log: pytest.LogCaptureFixture
) -> None:
    """DEBUG logs across issue, refresh, 401 replay and failures contain no secret."""
    tokens: list[Token] = []
    auth = auth_for(
        server,
        on_token=tokens.append,
        retry=RetryPolicy(attempts=2, wait_initial=0, wait_max=0, wait_jitter=0),
    )
    url = server.base_url + "/v1/locations"
    requests.get(url, auth=auth, timeout=10)
    server.expire_access_tokens()
    requests.get(url, auth=auth, timeout=10)  # 401, refresh, replay
    server.revoke()
    requests.get(url, auth=auth, timeout=10)  # 401, refused refresh, issue, replay
    server.revoke()
    server.fail_next_token_calls(4, 503)
    with pytest.raises(TokenRequestError):
        requests.get(url, auth=auth, timeout=10)
    assert len(tokens) == 3
    assert debug_log.records, "the lifecycle logged nothing"
    text = "\n".join(record.getMessage() + (record.exc_text or "") for record in debug_log.records)
    for secret in secrets_of(server, tokens):
        assert secret not in text


def test_exceptions_and_their_causes_hold_no_secret(server: FakeEmmaServer) -> None:
    """A token-call failure's message, traceback and chained cause carry no secret."""
    auth = auth_for(
        server,
        timeout=0.5,
        retry=RetryPolicy(attempts=1),
    )
    server.stop()  # the token call's connection is refused
    with pytest.raises(TokenRequestError) as caught:
        requests.get(auth.base_url + "/v1/locations", auth=auth, timeout=10)
    error = caught.value
    rendered = "".join(traceback.format_exception(error))
    assert "Connection refused" in rendered
    assert server.client_secret not in rendered
    cause = error.__cause__
    assert isinstance(cause, requests.ConnectionError)
    assert cause.request is None, "the failed token request (with its body) travels along"


def with_locals(error: BaseException) -> str:
    """The error as pytest -l, Sentry or rich show it: every frame with its local variables."""
    rendered = traceback.TracebackException.from_exception(error, capture_locals=True)
    return "".join(rendered.format())


@pytest.mark.parametrize("failure", ["refused", "503"])
@pytest.mark.parametrize("endpoint", ["issue", "refresh"])
def test_tracebacks_with_locals_hold_no_secret(
    server: FakeEmmaServer, no_waits: None, endpoint: str, failure: str
) -> None:
    """A failed token call rendered with frame locals shows neither the secret nor a token."""
    session = requests.Session()
    auth = auth_for(server, session=session, retry=RetryPolicy(attempts=2))
    tokens: list[Token] = []
    if endpoint == "refresh":
        clock = use_clock(auth, FakeClock())
        tokens.append(auth.get_token())
        clock.advance(301)  # expired: the next call refreshes
    if failure == "refused":
        server.stop()
        session.close()  # and the connection kept alive since the first token call
    else:
        server.fail_next_token_calls(2, 503)
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    # A refresh with no answer from emma falls back to issue-token, which fails too.
    failed = "issue" if failure == "refused" else endpoint
    assert caught.value.endpoint == f"/v1/{failed}-token"
    text = with_locals(caught.value)
    assert "path = '/v1/" in text  # the locals are there
    if failed == "refresh":
        assert "refresh_token = '***'" in text  # and the secrets masked
    for secret in secrets_of(server, tokens):
        assert secret not in text


# A module constant, not a local: the test's own frame is in the rendered traceback.
BROKEN_JSON = b'{"accessToken": "tok-in-broken-json", "refreshToken": "ref-in-broken-json"'


def test_an_unusable_token_response_is_not_quoted_by_its_error(server: FakeEmmaServer) -> None:
    """A 2xx that is not JSON: the error has no cause or context, and its locals no token."""
    with pytest.raises(TokenResponseError) as caught:
        parse_token(BROKEN_JSON, 0.0)
    assert (caught.value.__cause__, caught.value.__context__) == (None, None)
    server.fail_next_token_calls(1, 200, body=BROKEN_JSON)
    auth = auth_for(server)
    with pytest.raises(TokenResponseError) as caught:
        auth.get_token()
    assert (caught.value.__cause__, caught.value.__context__) == (None, None)
    text = with_locals(caught.value)
    assert "tok-in-broken-json" not in text and "ref-in-broken-json" not in text


def test_library_logger_has_a_null_handler() -> None:
    """The requests_emma logger has a NullHandler, so nothing prints unless users configure it."""
    handlers = logging.getLogger("requests_emma").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_unexpected_transport_error_is_wrapped_and_scrubbed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A non-requests error from the token call (a missing CA bundle) is a TokenRequestError
    whose traceback, locals included, holds no secret."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca-bundle.pem")
    auth = EmmaAuth(
        "id",
        "the-client-secret-value",
        base_url="https://api.emma.example/external",
        retry=RetryPolicy(attempts=1),
    )
    with pytest.raises(TokenRequestError, match="CA certificate bundle") as caught:
        auth.get_token()
    rendered = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert "the-client-secret-value" not in rendered


def test_failed_renewal_after_a_401_shows_no_token_in_locals(server: FakeEmmaServer) -> None:
    """A 401 whose renewal fails raises an error whose traceback, locals included, holds
    neither the rejected access token nor the refresh token."""
    auth = auth_for(server, retry=RetryPolicy(attempts=1))
    token = auth.get_token()
    server.revoke()
    server.fail_next_token_calls(2, 503)
    with pytest.raises(TokenRequestError) as caught:
        requests.get(server.base_url + "/v1/locations", auth=auth, timeout=10)
    rendered = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert token.access_token not in rendered
    assert token.refresh_token is not None and token.refresh_token not in rendered


class InterruptingAdapter(requests.adapters.HTTPAdapter):
    """A real adapter that is interrupted (Ctrl-C) as it sends, as a user's terminal would."""

    def send(self, request: requests.PreparedRequest, *args: object, **kwargs: object) -> Any:
        raise KeyboardInterrupt


@pytest.mark.parametrize("endpoint", ["issue", "refresh"])
def test_an_interrupted_token_call_leaves_no_secret_in_locals(
    server: FakeEmmaServer, endpoint: str
) -> None:
    """Ctrl-C during a token call: the KeyboardInterrupt's traceback, locals included, holds
    neither the client secret nor the refresh token (requests' frames held the body)."""
    session = requests.Session()
    auth = auth_for(server, session=session)
    tokens: list[Token] = []
    if endpoint == "refresh":
        clock = use_clock(auth, FakeClock())
        tokens.append(auth.get_token())
        clock.advance(301)
    session.mount("http://", InterruptingAdapter())
    with pytest.raises(KeyboardInterrupt) as caught:
        auth.get_token()
    text = with_locals(caught.value)
    for secret in secrets_of(server, tokens):
        assert secret not in text


def test_a_failed_api_call_shows_the_bearer_header_masked_in_locals(server: FakeEmmaServer) -> None:
    """A read timeout on an API call, rendered with locals: urllib3's header locals show
    'Bearer ***', never the access token."""
    auth = auth_for(server)
    token = auth.get_token()
    release = threading.Event()
    server.api_hook = lambda: release.wait(10)
    try:
        with pytest.raises(requests.ReadTimeout) as caught:
            requests.get(server.base_url + "/v1/locations", auth=auth, timeout=(3, 0.3))
    finally:
        release.set()
    text = with_locals(caught.value)
    assert "'Bearer ***'" in text  # the headers are there, masked
    assert token.access_token not in text
