"""The one clock: monotonic time, wall time and sleep, injected in one place.

``EmmaAuth`` holds a :class:`Clock` and hands it to everything that reads time: the
lifecycle's decisions take its monotonic readings, token lifetimes are stamped with both
readings of when their request was sent, and the retries sleep through it. Tests replace the
whole clock at once (``tests/fakes.py``), so no module keeps a clock of its own.

Monotonic time is for decisions inside one process; wall time (Unix seconds) is what crosses
a process boundary: a :class:`~requests_emma.Token`'s ``expires_at``, a shared cache entry, an
HTTP-date in ``Retry-After``.
"""

from __future__ import annotations

import time

_waits_enabled = True


class Clock:
    """The system clock. Subclass or duck-type it (``monotonic``, ``wall``, ``sleep``) to fake."""

    __slots__ = ()

    # The C functions themselves: monotonic() is read on every request.
    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    def sleep(self, seconds: float) -> None:
        """Sleep between retries; :func:`requests_emma.testing.no_retry_waits` skips it."""
        if _waits_enabled and seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = Clock()


def set_waits_enabled(enabled: bool) -> bool:
    """Turn retry waits on or off for every thread; returns the previous setting."""
    global _waits_enabled
    previous, _waits_enabled = _waits_enabled, enabled
    return previous


def waits_enabled() -> bool:
    return _waits_enabled
