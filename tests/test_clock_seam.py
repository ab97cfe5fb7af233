"""One clock, put in one place: ``use_clock(auth, FakeClock())`` rules the auth's decisions
and token retries and every ``EmmaSession`` on that auth: its retry waits and the
``Retry-After`` dates it reads."""

from __future__ import annotations

import email.utils

from requests_emma import EmmaAuth, EmmaSession
from requests_emma._requests.session import RETRY_AFTER_LIMIT
from requests_emma.testing import FakeClock, FakeEmmaServer, use_clock


def test_fake_clock_moves_monotonic_and_wall_time_together() -> None:
    """advance() and sleep() move both readings by the same amount; sleep() is recorded."""
    clock = FakeClock(start=10.0, wall_start=1_800_000_000.0)
    clock.advance(2.5)
    clock.sleep(4.0)
    assert (clock.monotonic(), clock.wall(), clock.sleeps) == (16.5, 1_800_000_006.5, [4.0])


def test_an_emma_sessions_retry_waits_go_through_the_auths_clock(
    auth: EmmaAuth, server: FakeEmmaServer
) -> None:
    """A session retry's Retry-After wait is the fake clock's sleep, recorded, not slept."""
    clock = use_clock(auth, FakeClock())
    server.fail_next_api_calls(1, 503, {"Retry-After": "7"})
    with EmmaSession(auth) as emma:
        assert emma.get("/v1/locations").status_code == 200
    assert clock.sleeps == [7.0]
    assert server.api_calls == 2


def test_a_retry_after_date_is_read_against_the_auths_clock(
    auth: EmmaAuth, server: FakeEmmaServer
) -> None:
    """An HTTP-date Retry-After five seconds past the fake clock's wall time waits 5 s."""
    clock = use_clock(auth, FakeClock())
    when = email.utils.formatdate(clock.wall() + 5, usegmt=True)
    server.fail_next_api_calls(1, 503, {"Retry-After": when})
    with EmmaSession(auth) as emma:
        assert emma.get("/v1/locations").status_code == 200
    assert clock.sleeps == [5.0]


def test_a_retry_after_date_too_far_by_the_auths_clock_returns_the_response(
    auth: EmmaAuth, server: FakeEmmaServer
) -> None:
    """A Retry-After date beyond the limit by the fake clock's wall time is not waited for."""
    clock = use_clock(auth, FakeClock())
    when = email.utils.formatdate(clock.wall() + RETRY_AFTER_LIMIT + 60, usegmt=True)
    server.fail_next_api_calls(1, 503, {"Retry-After": when})
    with EmmaSession(auth) as emma:
        assert emma.get("/v1/locations").status_code == 503
    assert (clock.sleeps, server.api_calls) == ([], 1)


def test_a_session_made_before_use_clock_follows_the_new_clock(
    auth: EmmaAuth, server: FakeEmmaServer
) -> None:
    """The clock is read at each wait: a session made first still waits on the fake clock."""
    with EmmaSession(auth) as emma:
        clock = use_clock(auth, FakeClock())
        server.fail_next_api_calls(1, 502, {"Retry-After": "3"})
        assert emma.get("/v1/locations").status_code == 200
    assert clock.sleeps == [3.0]
