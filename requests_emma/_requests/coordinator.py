"""Single flight: at most one renewal at a time per lifecycle, shared by every caller.

The renewal in flight is a :class:`concurrent.futures.Future` (a *flight*). A caller that
needs a token and finds none usable :meth:`joins <Coordinator.join>`: either it starts the
flight (and must run the renewal, then :meth:`~Coordinator.land` it), or it waits for the
one in flight: a thread with ``Future.result()``, an asyncio task with
``asyncio.wrap_future``, a trio task through anyio. So N callers on a cold start, or N 401s
for one token, make one renewal, whichever threads and event loops they run on; and a failed
renewal's error reaches every caller that waited for it (each gets a copy, so one traceback
does not collect the frames of every waiter) rather than each calling emma again.

One ``threading.Lock`` (:attr:`Coordinator.lock`) guards the lifecycle. It is held for
microseconds: for a decision, or for the renewal's own code between two of its steps (the
drivers run it under this lock), never across I/O, a sleep or an ``await``. What to decide
is the lifecycle's (whether a token is usable, why a renewal runs, whether an early renewal
may start, the backoff after a failed one); this module only makes callers meet.

Early renewals (a token inside its refresh margin) are flights too, started by
:meth:`~Coordinator.begin_early` and run off the request path by the driver (a thread for
the blocking drivers, a task for the async one): a caller whose token then expires waits
for that flight rather than start another.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from .._errors import EmmaAuthError

if TYPE_CHECKING:
    from .._core.lifecycle import TokenLifecycle, _Held
    from .._core.retry_policy import RetryPolicy
    from .._core.token import Token

#: A waiting thread gives up on a flight not landed this long after the renewal's own
#: deadline (the renewal is then stuck: its event loop stopped, say) and renews itself.
WAIT_GRACE = 5.0

#: A flight's result: the new token, or ``None`` when the renewal ended without one for a
#: reason that is not the renewal's failure (an interrupt in the thread that ran it, an early
#: renewal that found nothing left to do): its waiters look again.
Flight = Future["Token | None"]


class Coordinator:
    """The single flight over one :class:`TokenLifecycle`."""

    def __init__(self, lifecycle: TokenLifecycle) -> None:
        self.lifecycle = lifecycle
        self.lock = threading.Lock()
        self.flight: Flight | None = None
        #: How a flight is made; a test may count the callers waiting on one.
        self.new_flight: Callable[[], Flight] = Future

    def join(
        self, now: float, rejected: str | None = None
    ) -> tuple[_Held | None, Flight | None, bool]:
        """A caller needs a token at monotonic ``now`` (after a 401 to ``rejected``).

        Returns ``(held, None, False)`` with a usable token, ``(None, flight, True)`` when
        this caller starts the renewal (it must run it, then :meth:`land` the flight), or
        ``(None, flight, False)`` to wait for the renewal already in flight."""
        with self.lock:
            lifecycle = self.lifecycle
            if lifecycle.begin_renewal(now, rejected) is None:
                return lifecycle.usable(now), None, False
            if self.flight is not None:
                return None, self.flight, False
            flight = self.flight = self.new_flight()
            return None, flight, True

    def begin_early(self, now: float) -> Flight | None:
        """A flight for an early renewal, if the lifecycle grants one now; the caller starts
        it off the request path and lands it.

        A request asking this sends its token whatever the answer, so it never waits for the
        lock: taken by another thread (deciding, or a renewal's code between two steps), it
        means someone is on it already, and the answer is no."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            if self.flight is not None or not self.lifecycle.begin_early_renewal(now):
                return None
            flight = self.flight = self.new_flight()
            return flight
        finally:
            self.lock.release()

    def early_renewal_due(self, now: float) -> bool:
        """Whether a granted early renewal should still run (the token is still stale)."""
        with self.lock:
            return self.lifecycle.early_renewal_due(now)

    def land(
        self,
        flight: Flight,
        now: float,
        policy: RetryPolicy,
        token: Token | None = None,
        error: BaseException | None = None,
    ) -> float | None:
        """End ``flight`` with ``token``, or with ``error`` (an :class:`EmmaAuthError` is
        handed to every waiter; any other exception, an interruption, only to the caller
        that ran it: the waiters look again). Returns the backoff before the next early
        renewal after a failed one, as the lifecycle decided it.

        A flight given up on meanwhile (:meth:`abandon`) is landed for its waiters only: the
        lifecycle moved on without it."""
        failed = isinstance(error, EmmaAuthError)
        backoff = None
        with self.lock:
            if self.flight is flight:
                self.flight = None
                backoff = self.lifecycle.renewal_ended(
                    now,
                    str(error) if failed else None,
                    policy,
                    # no token and no failure: interrupted, or nothing left to do
                    interrupted=not failed and token is None,
                )
        if not flight.done():
            if failed:
                flight.set_exception(error)
            else:
                flight.set_result(token)
        return backoff

    def abandon(self, flight: Flight, now: float, policy: RetryPolicy) -> None:
        """Give up on ``flight``: whatever runs it has not landed it within the time any
        renewal may take (an event loop that stopped, or that the waiting thread itself
        blocks). Its waiters look again, and the next caller starts a renewal of its own."""
        self.land(flight, now, policy, error=_Abandoned())


class _Abandoned(Exception):
    """The ending of a flight given up on (an interruption: no error, no backoff)."""


def result(flight: Flight, timeout: float) -> Token | None:
    """Wait for ``flight`` in this thread, at most ``timeout`` seconds (then raises
    ``TimeoutError``); a failed renewal's error is raised as a copy."""
    try:
        return flight.result(timeout)
    except EmmaAuthError as exc:
        raise shared_error(exc) from exc.__cause__


def shared_error(error: EmmaAuthError) -> EmmaAuthError:
    """A waiter's own copy of a failed renewal's error: as a Future shares its exception
    with every waiter, but without one traceback collecting every waiter's frames."""
    return copy.copy(error)
