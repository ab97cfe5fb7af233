"""RetryPolicy validation, which statuses are retried, Retry-After parsing: pure values, no
network."""

from __future__ import annotations

import dataclasses
import email.utils
import math

import pytest

from requests_emma import EmmaAuth, RetryPolicy, TokenRequestError
from requests_emma._core.outcome import Kind, classify_status
from requests_emma._core.retry_policy import MAX_RETRY_AFTER, parse_retry_after
from requests_emma.testing import FakeClock, FakeEmmaServer, use_clock

NOW = 1_750_000_000.0  # a Unix time, whole seconds like an HTTP-date


def test_defaults() -> None:
    """The default policy is the documented one (docs/how-to/retries.md): 5 attempts within a
    30 s deadline, waits from 0.5 s doubling up to 10 s, plus up to 0.5 s of jitter."""
    policy = RetryPolicy()
    assert (policy.attempts, policy.deadline) == (5, 30.0)
    assert (policy.wait_initial, policy.wait_max, policy.wait_jitter) == (0.5, 10.0, 0.5)


def test_is_frozen_and_keyword_only() -> None:
    """RetryPolicy is immutable and takes keyword arguments only."""
    policy = RetryPolicy(attempts=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.attempts = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[misc]


def test_one_attempt_and_zero_waits_are_valid() -> None:
    """attempts=1 (no retries) and zero waits are accepted."""
    policy = RetryPolicy(attempts=1, wait_initial=0, wait_max=0, wait_jitter=0)
    kept = (policy.attempts, policy.wait_initial, policy.wait_max, policy.wait_jitter)
    assert kept == (1, 0, 0, 0)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": -1}, "attempts"),
        ({"attempts": 2.5}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"attempts": "3"}, "attempts"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": -1.0}, "deadline"),
        ({"deadline": math.inf}, "deadline"),
        ({"deadline": math.nan}, "deadline"),
        ({"deadline": "30"}, "deadline"),
        ({"wait_initial": -0.1}, "wait_initial"),
        ({"wait_max": -1}, "wait_max"),
        ({"wait_jitter": -0.5}, "wait_jitter"),
        ({"wait_jitter": math.nan}, "wait_jitter"),
        ({"wait_initial": 5, "wait_max": 1}, "wait_max"),
    ],
)
def test_invalid_values_raise_value_error_naming_them(
    kwargs: dict[str, object], named: str
) -> None:
    """Each invalid value raises ValueError at construction, naming the field."""
    with pytest.raises(ValueError, match=named):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_emma_auth_rejects_a_retry_that_is_not_a_policy() -> None:
    """EmmaAuth(retry=...) accepts only a RetryPolicy."""
    with pytest.raises(ValueError, match="RetryPolicy"):
        EmmaAuth("id", "secret", retry={"attempts": 3})  # type: ignore[arg-type]


def test_emma_auth_defaults_to_the_default_policy(server: FakeEmmaServer) -> None:
    """Without retry=, EmmaAuth retries as RetryPolicy() says: its attempts, and its waits."""
    auth = EmmaAuth(server.client_id, server.client_secret, base_url=server.base_url)
    clock = use_clock(auth, FakeClock())
    policy = RetryPolicy()
    server.fail_next_token_calls(100, 503)
    with pytest.raises(TokenRequestError):
        auth.get_token()
    assert server.token_calls == policy.attempts
    shortest = [min(policy.wait_initial * 2**n, policy.wait_max) for n in range(policy.attempts)]
    assert len(clock.sleeps) == policy.attempts - 1
    for wait, least in zip(clock.sleeps, shortest):
        assert least <= wait <= least + policy.wait_jitter


def test_exactly_the_busy_statuses_are_worth_another_attempt() -> None:
    """Of every error status, 408, 425, 429, 500, 502, 503 and 504 alone are transient
    (retried); no other is."""
    transient = {status for status in range(400, 600) if classify_status(status) is Kind.TRANSIENT}
    assert transient == {408, 425, 429, 500, 502, 503, 504}


def test_a_token_endpoint_refuses_with_400_or_403_only() -> None:
    """Of every error status, 400 and 403 alone are a refusal of what was sent."""
    refused = {status for status in range(400, 600) if classify_status(status) is Kind.REFUSED}
    assert refused == {400, 403}


def test_401_404_and_405_mean_a_wrong_base_url() -> None:
    """401, 404 and 405, which no token endpoint answers, are MISDIRECTED (wrong base URL)."""
    misdirected = {
        status for status in range(400, 600) if classify_status(status) is Kind.MISDIRECTED
    }
    assert misdirected == {401, 404, 405}


@pytest.mark.parametrize(
    ("header", "seconds"), [("120", 120.0), ("0", 0.0), (" 7 ", 7.0), ("007", 7.0)]
)
def test_retry_after_delta_seconds(header: str, seconds: float) -> None:
    """Retry-After in delta-seconds gives that many seconds."""
    assert parse_retry_after(header, NOW) == seconds


def test_retry_after_http_date() -> None:
    """Retry-After as an IMF-fixdate gives the seconds from now until then."""
    header = email.utils.formatdate(NOW + 45, usegmt=True)
    assert parse_retry_after(header, NOW) == 45.0


@pytest.mark.parametrize(
    "header",
    [
        "Sunday, 15-Jun-25 15:07:25 GMT",  # RFC 850, obsolete but to be accepted
        "Sun Jun 15 15:07:25 2025",  # asctime, obsolete, always GMT
    ],
)
def test_retry_after_obsolete_http_dates(header: str) -> None:
    """The two obsolete HTTP-date forms are read as GMT too."""
    assert parse_retry_after(header, 1_750_000_000.0) == 45.0


def test_retry_after_date_in_the_past_means_no_wait() -> None:
    """A Retry-After date already past gives 0, not a negative wait."""
    assert parse_retry_after(email.utils.formatdate(NOW - 60, usegmt=True), NOW) == 0.0


@pytest.mark.parametrize(
    "header",
    [None, "", "soon", "-5", "1.5", "1e3", "²", "١٢", "Mon, 32 Dec 2020 00:00:00 GMT"],
)
def test_retry_after_unusable_values_are_ignored(header: str | None) -> None:
    """An absent or unparseable Retry-After gives None rather than an error."""
    assert parse_retry_after(header, NOW) is None


@pytest.mark.parametrize(
    "header",
    ["9" * 400, "99999999999", "Fri, 31 Dec 9999 23:59:59 GMT"],
    ids=["too-many-digits-for-a-float", "eleven-digits", "year-9999"],
)
def test_retry_after_longer_than_2_to_the_31_seconds_is_capped(header: str) -> None:
    """A wait past 2**31 s (RFC 9111's cap), even one whose digits make a float infinite,
    is 2**31 s: always a finite number."""
    assert parse_retry_after(header, NOW) == MAX_RETRY_AFTER == 2.0**31
