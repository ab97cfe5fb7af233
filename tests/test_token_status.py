"""``EmmaAuth.status()``: the token's state for health checks, against the fake server.

The fake clock (the ``clock`` fixture) holds time still and moves it by hand, so the seconds
reported are exact; token calls are held in flight with the server's ``token_hook`` and an
event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import requests
from fakes import WAIT, FakeClock, join_renewal, use_clock

from requests_emma import (
    CredentialsError,
    EmmaAuth,
    TokenRequestError,
    TokenStatus,
)
from requests_emma.testing import FakeEmmaServer


def hold_token_calls(server: FakeEmmaServer) -> tuple[threading.Event, threading.Event]:
    """Make token calls wait in the server: ``(entered, release)``."""
    entered, release = threading.Event(), threading.Event()

    def hook() -> None:
        entered.set()
        release.wait(WAIT)

    server.token_hook = hook
    return entered, release


def test_before_any_token_nothing_is_known(auth: EmmaAuth, clock: FakeClock) -> None:
    """Before the first token: no token, no renewal, no error, no hold."""
    assert auth.status() == TokenStatus(
        valid_for=None, renewing=False, last_error=None, retry_after=None
    )


def test_after_a_token_valid_for_counts_down(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """After a token: ``valid_for`` is its lifetime left, by the auth's clock."""
    auth.get_token()
    assert auth.status() == TokenStatus(
        valid_for=300.0, renewing=False, last_error=None, retry_after=None
    )
    clock.advance(100)
    assert auth.status().valid_for == 200.0
    clock.advance(250)
    assert auth.status().valid_for == 0.0


def test_a_waiting_renewal_shows_as_renewing(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """While a caller waits for a token call, ``renewing`` is true; after it, false."""
    entered, release = hold_token_calls(server)
    caller = threading.Thread(target=auth.get_token, daemon=True)
    caller.start()
    try:
        assert entered.wait(WAIT)
        during = auth.status()
    finally:
        release.set()
        caller.join(WAIT)
    assert during.renewing is True
    assert during.valid_for is None
    after = auth.status()
    assert after.renewing is False
    assert after.valid_for == 300.0


def test_an_early_renewal_shows_as_renewing(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """While a stale token's background renewal runs, ``renewing`` is true."""
    auth.get_token()
    entered, release = hold_token_calls(server)
    clock.advance(250)  # inside the 60 s margin of a 300 s token
    try:
        auth.get_token()  # the stale token, at once; its renewal starts in the background
        assert entered.wait(WAIT)
        during = auth.status()
    finally:
        release.set()
        join_renewal(auth)
    assert during.renewing is True
    assert during.valid_for == 50.0
    assert auth.status().renewing is False


def test_a_failed_renewal_is_the_last_error_until_a_success(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """A failed renewal's message is ``last_error``, without secrets; a success clears it."""
    server.fail_next_token_calls(1, 404, body=b'{"code": "NOT_FOUND", "message": "Gone"}')
    with pytest.raises(TokenRequestError) as failed:
        auth.get_token()
    status = auth.status()
    assert status.last_error == str(failed.value)
    assert "HTTP 404" in status.last_error and "Gone" in status.last_error
    assert server.client_secret not in repr(status)
    assert status.valid_for is None and status.retry_after is None
    token = auth.get_token()
    status = auth.status()
    assert status.last_error is None
    assert token.access_token not in repr(status)


def test_a_retry_after_hold_is_retry_after(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock
) -> None:
    """Inside a 429's Retry-After hold, ``retry_after`` is the seconds until it ends."""
    server.fail_next_token_calls(1, 429, headers={"Retry-After": "120"})
    with pytest.raises(TokenRequestError):
        auth.get_token()
    assert auth.status().retry_after == 120.0
    clock.advance(50)
    assert auth.status().retry_after == 70.0
    clock.advance(70)
    assert auth.status().retry_after is None


def test_refused_credentials_backoff_is_retry_after(server: FakeEmmaServer) -> None:
    """After emma refuses the credentials, ``retry_after`` is the backoff before the next try."""
    auth = EmmaAuth(server.client_id, "not-the-secret", base_url=server.base_url)
    clock = use_clock(auth, FakeClock())
    with pytest.raises(CredentialsError):
        auth.get_token()
    status = auth.status()
    assert status.retry_after == 5.0
    assert status.last_error is not None and "rejected the client credentials" in status.last_error
    assert "not-the-secret" not in repr(status)
    clock.advance(5)
    assert auth.status().retry_after is None


def test_a_rejected_token_is_valid_for_nothing(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, get: Callable[..., requests.Response]
) -> None:
    """A token the API refused (401) and that could not be replaced is valid for 0 s."""
    auth.get_token()
    server.revoke()
    server.fail_next_token_calls(2, 404)  # refresh-token, then issue-token
    with pytest.raises(TokenRequestError):
        get(auth)
    assert auth.status().valid_for == 0.0


def test_status_is_an_immutable_value(auth: EmmaAuth) -> None:
    """A ``TokenStatus`` cannot be changed, and compares and hashes by value."""
    status = auth.status()
    with pytest.raises(AttributeError):
        status.renewing = True  # type: ignore[misc]
    assert hash(status) == hash(auth.status())
    assert "TokenStatus(valid_for=None" in repr(status)
