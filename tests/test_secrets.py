"""Secrets never show: not in reprs, logs, exceptions or their causes."""

from __future__ import annotations

import logging
import traceback

import pytest
import requests

from requests_emma import EmmaAuth, EmmaAuthError, RetryPolicy, Token
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
    auth = EmmaAuth(
        server.client_id,
        server.client_secret,
        base_url=server.base_url,
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
    with pytest.raises(EmmaAuthError):
        requests.get(url, auth=auth, timeout=10)
    assert len(tokens) == 3
    assert debug_log.records, "the lifecycle logged nothing"
    text = "\n".join(record.getMessage() + (record.exc_text or "") for record in debug_log.records)
    for secret in secrets_of(server, tokens):
        assert secret not in text


def test_exceptions_and_their_causes_hold_no_secret(server: FakeEmmaServer) -> None:
    """A token-call failure's message, traceback and chained cause carry no secret."""
    auth = EmmaAuth(
        server.client_id,
        server.client_secret,
        base_url=server.base_url,
        timeout=0.5,
        retry=RetryPolicy(attempts=1),
    )
    server.stop()  # the token call's connection is refused
    with pytest.raises(EmmaAuthError) as caught:
        requests.get(auth.base_url + "/v1/locations", auth=auth, timeout=10)
    error = caught.value
    rendered = "".join(traceback.format_exception(error))
    assert "Connection refused" in rendered
    assert server.client_secret not in rendered
    cause = error.__cause__
    assert isinstance(cause, requests.ConnectionError)
    assert cause.request is None, "the failed token request (with its body) travels along"


def test_library_logger_has_a_null_handler() -> None:
    """The requests_emma logger has a NullHandler, so nothing prints unless users configure it."""
    handlers = logging.getLogger("requests_emma").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)
