"""emma's Retry-After and refusals of the credentials hold off every token call, in one
client and, through a real shared cache, in every client of the fleet. Time is a fake clock:
no test sleeps through a hold."""

from __future__ import annotations

import email.utils
import threading

import pytest
from fakes import WAIT, FakeClock, auth_for, join_renewal, renewal_thread, use_clock

from requests_emma import CredentialsError, EmmaAuth, EmmaAuthError, TokenCache, TokenRequestError
from requests_emma._core.cache_entry import MAX_HOLD
from requests_emma.testing import FakeEmmaServer

RATE_LIMITED = {"Retry-After": "60"}


def _client(server: FakeEmmaServer, clock: FakeClock, **options: object) -> EmmaAuth:
    auth = auth_for(server, **options)
    use_clock(auth, clock)
    return auth


def _error_of(auth: EmmaAuth) -> EmmaAuthError:
    with pytest.raises(EmmaAuthError) as raised:
        auth.get_token()
    return raised.value


def test_a_rate_limit_holds_off_every_thread_until_retry_after(server: FakeEmmaServer) -> None:
    """429 with Retry-After: 60 and four threads: one token call, then typed errors at once,
    with no call, saying when emma takes calls again; after 60 s, a call and a token."""
    server.fail_next_token_calls(1, 429, headers=RATE_LIMITED)
    clock = FakeClock()
    auth = _client(server, clock)
    start, errors = threading.Barrier(4), []

    def call() -> None:
        start.wait(WAIT)
        for _ in range(25):
            errors.append(_error_of(auth))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert server.token_calls == 1 and len(errors) == 100
    assert all(isinstance(error, TokenRequestError) for error in errors)
    held = [error for error in errors if "no token call made" in str(error)]
    assert len(held) >= 100 - 4  # the waiters of the first call share its error
    assert all(error.retry_after == 60.0 and error.attempts == 0 for error in held)
    assert "takes token calls again in 60 s" in str(held[0])
    clock.advance(59.0)
    assert _error_of(auth).retry_after == pytest.approx(1.0)  # type: ignore[attr-defined]
    assert server.token_calls == 1
    clock.advance(1.0)
    assert auth.get_token().access_token  # the hold is over: a call, and a token
    assert server.token_calls == 2


def test_the_error_of_the_rate_limited_call_says_how_long_to_wait(
    server: FakeEmmaServer,
) -> None:
    """The renewal that got the 429 raises a TokenRequestError with retry_after set."""
    server.fail_next_token_calls(1, 429, headers=RATE_LIMITED)
    error = _error_of(_client(server, FakeClock()))
    assert isinstance(error, TokenRequestError)
    assert error.status_code == 429 and error.retry_after == 60.0


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("form", ["seconds", "date"])
def test_a_retry_after_on_a_429_or_a_503_holds_the_next_call(
    server: FakeEmmaServer, status: int, form: str
) -> None:
    """429 or 503, with Retry-After in seconds or as an HTTP-date 60 s ahead: 20 s later the
    next renewal makes no call, and says 40 s are left."""
    clock = FakeClock()
    auth = _client(server, clock)
    header = "60" if form == "seconds" else email.utils.formatdate(clock.wall() + 60, usegmt=True)
    server.fail_next_token_calls(1, status, headers={"Retry-After": header})
    assert _error_of(auth).retry_after == 60.0  # type: ignore[attr-defined]
    clock.advance(20.0)
    held = _error_of(auth)
    assert isinstance(held, TokenRequestError) and "no token call made" in str(held)
    assert held.retry_after == pytest.approx(40.0)
    assert server.token_calls == 1


def test_a_second_client_on_the_cache_makes_no_call_inside_the_hold(
    server: FakeEmmaServer,
    shared_cache: TokenCache,
) -> None:
    """After one client got 429 Retry-After: 60, another on the same real cache fails at
    once, with no call, until the hold ends; then it calls."""
    server.fail_next_token_calls(1, 429, headers=RATE_LIMITED)
    clock = FakeClock()
    first = _client(server, clock, token_cache=shared_cache)
    assert isinstance(_error_of(first), TokenRequestError)
    clock.advance(30.0)
    second = _client(server, clock, token_cache=shared_cache)
    error = _error_of(second)
    assert isinstance(error, TokenRequestError) and "no token call made" in str(error)
    assert error.retry_after == pytest.approx(30.0)
    assert server.token_calls == 1
    clock.advance(30.0)
    assert second.get_token().access_token and server.token_calls == 2


def test_a_valid_token_keeps_serving_and_the_early_renewal_waits_out_the_hold(
    server: FakeEmmaServer,
) -> None:
    """A stale token whose early renewal got Retry-After: 60 keeps serving; no early renewal
    starts inside the 60 s (not after 1, 2, 4, 10 s of backoff); after them one does."""
    clock = FakeClock()
    auth = _client(server, clock, refresh_margin=150.0)
    token = auth.get_token()
    clock.advance(150.0)  # stale, valid 150 s more: renewed early, in the background
    server.fail_next_token_calls(1, 429, headers=RATE_LIMITED)
    assert auth.get_token() == token
    join_renewal(auth)
    assert server.token_calls == 2
    worker = renewal_thread(auth)
    for _ in range(11):
        clock.advance(5.0)  # up to 55 s into the hold
        assert auth.get_token() == token
    assert renewal_thread(auth) is worker and server.token_calls == 2
    clock.advance(5.0)
    assert auth.get_token() == token  # the hold is over: an early renewal starts
    join_renewal(auth)
    assert renewal_thread(auth) is not worker and server.token_calls == 3
    assert auth.get_token() != token


def test_refused_credentials_hold_off_calls_across_the_cache(
    server: FakeEmmaServer,
    shared_cache: TokenCache,
) -> None:
    """A wrong secret: one call, then CredentialsError at once, with no call, for 5 s, in
    this client and in another on the same cache; then one call, and a 10 s hold."""
    clock = FakeClock()
    wrong = {"token_cache": shared_cache}
    first = EmmaAuth(server.client_id, "wrong-secret", base_url=server.base_url, **wrong)  # type: ignore[arg-type]
    second = EmmaAuth(server.client_id, "wrong-secret", base_url=server.base_url, **wrong)  # type: ignore[arg-type]
    use_clock(first, clock)
    use_clock(second, clock)
    refused = _error_of(first)
    assert isinstance(refused, CredentialsError) and refused.retry_after == 5.0
    assert server.token_calls == 1
    for auth in (first, second, first):
        held = _error_of(auth)
        assert isinstance(held, CredentialsError) and "no token call made" in str(held)
        assert held.retry_after == pytest.approx(5.0)
    assert server.token_calls == 1
    clock.advance(5.0)
    again = _error_of(second)
    assert isinstance(again, CredentialsError) and again.retry_after == 10.0
    assert server.token_calls == 2
    clock.advance(9.0)
    assert "no token call made" in str(_error_of(first)) and server.token_calls == 2


def test_a_retry_after_too_long_for_a_float_holds_calls_without_crashing(
    server: FakeEmmaServer,
    shared_cache: TokenCache,
) -> None:
    """Retry-After with 400 digits (infinity as a float): the hold is capped at an hour, so
    later requests, here and in another client on the cache, get a TokenRequestError with no
    call, never an OverflowError."""
    server.fail_next_token_calls(1, 429, headers={"Retry-After": "9" * 400})
    clock = FakeClock()
    first = _client(server, clock, token_cache=shared_cache)
    assert _error_of(first).retry_after == MAX_HOLD  # type: ignore[attr-defined]
    second = _client(server, clock, token_cache=shared_cache)
    for auth in (first, second):
        held = _error_of(auth)
        assert isinstance(held, TokenRequestError) and "no token call made" in str(held)
        assert held.retry_after == pytest.approx(MAX_HOLD)
    assert server.token_calls == 1
