"""A clock that tests move by hand, and the one place to put it: :func:`use_clock`.

An ``EmmaAuth`` reads one clock for everything that depends on time: its decisions (is the
token still usable, is it time to renew), the lifetimes it stamps on tokens (monotonic and
wall time of when their request was sent), the waits between token-endpoint retries and
the ``Retry-After`` dates it reads; an ``EmmaSession`` on that auth reads the same clock
for its own retry waits and ``Retry-After`` dates. :func:`use_clock` replaces it, for all of
these at once. (The shared caches read no time of their own: what they store carries the
auth's wall time, and their lock waits are the lock libraries' real timeouts.)
"""

from __future__ import annotations

from typing import TypeVar

from .._core.clock import Clock
from .._source import source_of

_C = TypeVar("_C", bound=Clock)


class FakeClock(Clock):
    """Monotonic and wall time that move together, only when told: by :meth:`advance`, or
    by a retry's sleep, which returns at once and is recorded in ``sleeps``.

    ``now`` is the monotonic reading (seconds, starting at ``start``); the wall reading is
    ``wall_start`` plus the time advanced since.
    """

    def __init__(self, *, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self.now = float(start)
        #: Every wait asked for (the token-endpoint retries', ``EmmaSession``'s), in order.
        self.sleeps: list[float] = []
        self._wall_offset = float(wall_start) - self.now

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r}, sleeps={len(self.sleeps)})"

    def monotonic(self) -> float:
        """The monotonic reading, ``now``: what the auth's decisions read."""
        return self.now

    def wall(self) -> float:
        """The wall reading (Unix seconds): token expiries, cache entries, HTTP-dates."""
        return self.now + self._wall_offset

    def sleep(self, seconds: float) -> None:
        """Record the wait and move the clock past it, without waiting."""
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        """Move monotonic and wall time forward by ``seconds``."""
        self.now += seconds


def use_clock(auth: object, clock: _C) -> _C:
    """Make ``clock`` the only clock ``auth`` (any of the library's auths, every auth that
    shares its token, and every ``EmmaSession`` on it) reads, from now on: decisions, token
    lifetimes, retry waits and ``Retry-After`` dates. Returns ``clock``, so that
    ``clock = use_clock(auth, FakeClock())`` reads well.

    ``clock`` is a :class:`FakeClock`, or anything with the same ``monotonic()``,
    ``wall()`` and ``sleep(seconds)``.
    """
    source_of(auth).use_clock(clock)
    return clock
