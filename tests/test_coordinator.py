"""The single flight (``_requests/coordinator.py``) over a bare lifecycle, with no renewal
run: callers join, one starts the flight, the others wait on it, and landing it hands them
its token, a copy of its error, or ``None`` to look again.

Threads are real where the point is concurrency; they meet on barriers and events, and a
flight that counts its waiters says when a thread is blocked on it.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import pytest
from fakes import WAIT

from requests_emma import TokenRequestError
from requests_emma._core.lifecycle import EARLY, EXPIRED, FIRST_USE, TokenLifecycle
from requests_emma._core.retry_policy import RetryPolicy
from requests_emma._core.token import Token
from requests_emma._core.wire import TokenGrant
from requests_emma._requests.coordinator import Coordinator, Flight, result

NOW = 1000.0
WALL = 1_700_000_000.0
POLICY = RetryPolicy()
LIFETIME = 300.0
#: Inside the 300 s token's refresh margin (the last 60 s): stale, not expired.
STALE = NOW + 250.0


def with_token(access: str = "access-1") -> TokenLifecycle:
    """A lifecycle holding a 300 s token sent at NOW."""
    lifecycle = TokenLifecycle()
    lifecycle.accept(TokenGrant(access, "Bearer", LIFETIME, "expiresIn", None, None), NOW, WALL)
    return lifecycle


def a_token(access: str = "access-2") -> Token:
    return Token(access_token=access, token_type="Bearer", expires_at=WALL + LIFETIME)


class CountedFlight(Future[Any]):
    """A flight that counts the threads that waited on it, for a test to wait for."""

    changed = threading.Condition()
    waiting = 0

    def result(self, timeout: float | None = None) -> Any:
        with CountedFlight.changed:
            CountedFlight.waiting += 1
            CountedFlight.changed.notify_all()
        return super().result(timeout)


@pytest.fixture
def counted() -> type[CountedFlight]:
    """CountedFlight with its count at zero."""
    CountedFlight.waiting = 0
    return CountedFlight


def wait_for_waiters(count: int) -> None:
    with CountedFlight.changed:
        assert CountedFlight.changed.wait_for(lambda: CountedFlight.waiting >= count, WAIT)


def waiters(flight: Flight, count: int) -> tuple[list[threading.Thread], list[object]]:
    """``count`` threads waiting on ``flight`` through ``result``; each appends what it got
    (the token, ``None``, or the exception it raised) to the list returned."""
    got: list[object] = []

    def wait() -> None:
        try:
            got.append(result(flight, WAIT))
        except BaseException as exc:  # noqa: BLE001 - what the waiter got is the point
            got.append(exc)

    threads = [threading.Thread(target=wait) for _ in range(count)]
    for thread in threads:
        thread.start()
    wait_for_waiters(count)
    return threads, got


def joined(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()


# -- joining ---------------------------------------------------------------------------------


def test_join_with_a_usable_token_returns_it_and_starts_nothing() -> None:
    """A caller whose token is usable gets it, with no flight and no renewal running."""
    lifecycle = with_token()
    coordinator = Coordinator(lifecycle)
    held, flight, starts = coordinator.join(NOW + 1)
    assert held is not None and held.token.access_token == "access-1"
    assert (flight, starts, lifecycle.renewing) == (None, False, None)


def test_the_first_caller_with_no_token_starts_the_flight() -> None:
    """The first caller with no token starts a flight, for the first use."""
    lifecycle = TokenLifecycle()
    coordinator = Coordinator(lifecycle)
    held, flight, starts = coordinator.join(NOW)
    assert (held, starts) == (None, True)
    assert flight is not None and coordinator.flight is flight
    assert lifecycle.renewing == FIRST_USE


def test_callers_arriving_together_share_one_flight() -> None:
    """Eight threads joining at once with no token: one starts the flight, all hold it."""
    coordinator = Coordinator(TokenLifecycle())
    barrier = threading.Barrier(8)
    joins: list[tuple[Flight | None, bool]] = []
    guard = threading.Lock()

    def join() -> None:
        barrier.wait(WAIT)
        _, flight, starts = coordinator.join(NOW)
        with guard:
            joins.append((flight, starts))

    threads = [threading.Thread(target=join) for _ in range(8)]
    for thread in threads:
        thread.start()
    joined(threads)
    assert sorted(starts for _, starts in joins) == [False] * 7 + [True]
    assert {id(flight) for flight, _ in joins} == {id(coordinator.flight)}


def test_a_caller_after_a_401_joins_the_flight_in_progress() -> None:
    """A 401 to the current token while a flight is in progress joins it, starting none."""
    lifecycle = with_token()
    coordinator = Coordinator(lifecycle)
    _, first, _ = coordinator.join(NOW + LIFETIME + 1)  # expired: a flight starts
    _, flight, starts = coordinator.join(NOW + LIFETIME + 2, rejected="access-1")
    assert (flight, starts) == (first, False)
    assert lifecycle.renewing == EXPIRED


# -- landing ---------------------------------------------------------------------------------


def test_landing_a_token_wakes_every_waiter_with_it(counted: type[CountedFlight]) -> None:
    """Three threads blocked on the flight all get the token it lands with."""
    coordinator = Coordinator(TokenLifecycle())
    coordinator.new_flight = counted
    _, flight, _ = coordinator.join(NOW)
    assert flight is not None
    threads, got = waiters(flight, 3)
    token = a_token()
    coordinator.land(flight, NOW + 1, POLICY, token=token)
    joined(threads)
    assert got == [token, token, token]


def test_landing_ends_the_renewal_and_clears_the_flight() -> None:
    """After landing, no renewal is running and the next caller in need starts a new flight."""
    lifecycle = TokenLifecycle()
    coordinator = Coordinator(lifecycle)
    _, flight, _ = coordinator.join(NOW)
    assert flight is not None
    coordinator.land(flight, NOW + 1, POLICY, error=TokenRequestError("emma is down"))
    assert (coordinator.flight, lifecycle.renewing) == (None, None)
    _, again, starts = coordinator.join(NOW + 2)
    assert starts and again is not flight


def test_a_failed_flight_gives_each_waiter_its_own_copy_of_the_error(
    counted: type[CountedFlight],
) -> None:
    """Landing with a TokenRequestError raises, in each waiter, a copy: another object
    each time, with the same type, message, attributes and cause."""
    coordinator = Coordinator(TokenLifecycle())
    coordinator.new_flight = counted
    _, flight, _ = coordinator.join(NOW)
    assert flight is not None
    threads, got = waiters(flight, 3)
    error = TokenRequestError("POST /v1/issue-token failed: HTTP 503", attempts=5, elapsed=2.0)
    error.__cause__ = ConnectionResetError("reset")
    coordinator.land(flight, NOW + 1, POLICY, error=error)
    joined(threads)
    assert all(isinstance(copy, TokenRequestError) for copy in got)
    assert len({id(copy) for copy in got} | {id(error)}) == 4
    assert {str(copy) for copy in got} == {str(error)}
    assert {copy.attempts for copy in got if isinstance(copy, TokenRequestError)} == {5}
    assert all(
        isinstance(copy, BaseException) and copy.__cause__ is error.__cause__ for copy in got
    )


def test_a_failed_flight_is_the_lifecycles_last_error() -> None:
    """The message of the error a flight landed with is what status() reports."""
    lifecycle = TokenLifecycle()
    coordinator = Coordinator(lifecycle)
    _, flight, _ = coordinator.join(NOW)
    assert flight is not None
    coordinator.land(flight, NOW + 1, POLICY, error=TokenRequestError("emma is down"))
    assert lifecycle.status(NOW + 1).last_error == "emma is down"


def test_an_interrupted_flight_tells_its_waiters_to_look_again(
    counted: type[CountedFlight],
) -> None:
    """Landing with a KeyboardInterrupt (the renewing thread's own) gives waiters None,
    not the interrupt, and records no error: an interruption says nothing about emma."""
    lifecycle = TokenLifecycle()
    coordinator = Coordinator(lifecycle)
    coordinator.new_flight = counted
    _, flight, _ = coordinator.join(NOW)
    assert flight is not None
    threads, got = waiters(flight, 2)
    coordinator.land(flight, NOW + 1, POLICY, error=KeyboardInterrupt())
    joined(threads)
    assert got == [None, None]
    assert lifecycle.last_error is None and lifecycle.renewing is None


# -- early renewals --------------------------------------------------------------------------


def test_no_early_flight_while_the_token_is_fresh() -> None:
    """begin_early grants nothing before the token enters its refresh margin."""
    coordinator = Coordinator(with_token())
    assert coordinator.begin_early(NOW + 1) is None
    assert coordinator.flight is None


def test_an_early_flight_once_the_token_is_stale() -> None:
    """Inside the refresh margin, begin_early grants one flight, for an early renewal."""
    lifecycle = with_token()
    coordinator = Coordinator(lifecycle)
    flight = coordinator.begin_early(STALE)
    assert flight is not None and coordinator.flight is flight
    assert lifecycle.renewing == EARLY


def test_no_second_early_flight_while_one_is_in_flight() -> None:
    """A stale token with an early flight already in flight gets no other."""
    coordinator = Coordinator(with_token())
    assert coordinator.begin_early(STALE) is not None
    assert coordinator.begin_early(STALE + 1) is None


def test_no_early_flight_while_a_callers_flight_is_in_flight() -> None:
    """A flight a caller started (after a 401, the token still stale) blocks an early one."""
    coordinator = Coordinator(with_token())
    _, flight, starts = coordinator.join(STALE, rejected="access-1")
    assert flight is not None and starts
    assert coordinator.begin_early(STALE) is None
    assert coordinator.flight is flight


def test_a_caller_whose_token_expired_joins_the_early_flight() -> None:
    """An early renewal still in flight when the token expires is the one expired callers
    wait for; they start no other."""
    coordinator = Coordinator(with_token())
    early = coordinator.begin_early(STALE)
    held, flight, starts = coordinator.join(NOW + LIFETIME + 1)
    assert (held, flight, starts) == (None, early, False)


def test_a_failed_early_flight_returns_the_lifecycles_backoff() -> None:
    """Landing a failed early flight returns the wait before the next early renewal, and
    begin_early grants none inside it."""
    coordinator = Coordinator(with_token())
    flight = coordinator.begin_early(STALE)
    assert flight is not None
    backoff = coordinator.land(flight, STALE, POLICY, error=TokenRequestError("busy"))
    assert backoff is not None and backoff >= 1.0
    assert coordinator.begin_early(STALE + backoff / 2) is None
    assert coordinator.begin_early(STALE + backoff) is not None


# -- the state lock --------------------------------------------------------------------------


def test_the_state_lock_is_free_while_a_flight_is_awaited(counted: type[CountedFlight]) -> None:
    """While one thread is blocked on the flight, another joins it (the lock is free) and
    the lock can be taken; landing then releases the waiter."""
    coordinator = Coordinator(TokenLifecycle())
    coordinator.new_flight = counted
    _, flight, _ = coordinator.join(NOW)
    assert flight is not None
    threads, got = waiters(flight, 1)
    joins: list[tuple[Flight | None, bool]] = []

    def join() -> None:
        _, other, starts = coordinator.join(NOW + 1)
        joins.append((other, starts))

    late = threading.Thread(target=join)
    late.start()
    joined([late])
    assert joins == [(flight, False)]
    assert coordinator.lock.acquire(timeout=WAIT)
    coordinator.lock.release()
    assert threads[0].is_alive() and got == []  # still waiting: nothing landed yet
    token = a_token()
    coordinator.land(flight, NOW + 2, POLICY, token=token)
    joined(threads)
    assert got == [token]


def test_an_abandoned_flight_lets_the_next_caller_start_another(
    counted: type[CountedFlight],
) -> None:
    """A flight given up on releases its waiters (None) and the next join starts a new
    flight; the old one landing later changes nothing."""
    lifecycle = TokenLifecycle()
    coordinator = Coordinator(lifecycle)
    coordinator.new_flight = counted
    _, stuck, _ = coordinator.join(NOW)
    assert stuck is not None
    coordinator.abandon(stuck, NOW + 40, POLICY)
    assert stuck.result(0) is None
    _, fresh, mine = coordinator.join(NOW + 40)
    assert mine and fresh is not stuck
    coordinator.land(stuck, NOW + 41, POLICY, error=KeyboardInterrupt())  # late: ignored
    assert coordinator.flight is fresh and lifecycle.renewing is not None
