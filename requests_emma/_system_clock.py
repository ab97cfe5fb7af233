"""The system clock the drivers run with: the core's readings, and the real wait.

The core (``requests_emma._core``) reads time and never waits: a renewal yields its waits
as ``Sleep`` steps. The drivers carry them out through the auth's clock, and so does
``EmmaSession`` between its retries; unless a test put a clock of its own on the auth
(``requests_emma.testing.use_clock``), that clock is :data:`SYSTEM_CLOCK`, whose ``sleep``
is ``time.sleep``.

:func:`requests_emma.testing.no_retry_waits` turns its waits off for every thread
(:func:`set_waits_enabled`): retries then happen at once, everything else unchanged.
"""

from __future__ import annotations

import time

from ._core.clock import Clock

_waits_enabled = True


class SystemClock(Clock):
    """The suspend-aware monotonic reading, the wall clock, and ``time.sleep``."""

    __slots__ = ()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` between retries; :func:`requests_emma.testing.no_retry_waits`
        skips it."""
        if _waits_enabled and seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


def real_waits(clock: Clock) -> bool:
    """Whether ``clock`` waits for real (the system clock with waits on), as an event loop
    must then do for it; any other clock (a test's) takes its waits itself."""
    return type(clock) is SystemClock and _waits_enabled


def set_waits_enabled(enabled: bool) -> bool:
    """Turn retry waits on or off for every thread; returns the previous setting."""
    global _waits_enabled
    previous, _waits_enabled = _waits_enabled, enabled
    return previous
