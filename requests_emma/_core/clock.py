"""The one clock: monotonic time, wall time and sleep, injected in one place.

``EmmaAuth`` holds a :class:`Clock` and hands it to everything that reads time: the
lifecycle's decisions take its monotonic readings, token lifetimes are stamped with both
readings of when their request was sent, and the drivers wait out the renewal's ``Sleep``
steps (and ``EmmaSession`` its retries) through it. Tests replace the whole clock at once
(``requests_emma.testing.use_clock``), so no module keeps a clock of its own.

The core reads the clock and never waits: its :class:`Clock` is the readings and the shape
of ``sleep``, which the drivers' clock carries out (``requests_emma._system_clock``: the
system clock, whose ``sleep`` is ``time.sleep``; ``requests_emma.testing.FakeClock``: a
clock moved by hand, whose ``sleep`` only moves it).

Monotonic time is for decisions inside one process; wall time (Unix seconds) is what crosses
a process boundary: a :class:`~requests_emma.Token`'s ``expires_at``, a shared cache entry, an
HTTP-date in ``Retry-After``.

Suspended time counts. A laptop that sleeps past a token's expiry must find the token expired
when it wakes, not send it (and lose a forward-only body to the 401). ``time.monotonic`` does
not always see a suspend, so the monotonic reading is, by platform:

- Linux (and Android): ``clock_gettime(CLOCK_BOOTTIME)``. ``time.monotonic`` is
  ``CLOCK_MONOTONIC``, which stops while the machine is suspended; ``CLOCK_BOOTTIME`` is the
  same clock plus the time spent suspended.
- macOS: ``clock_gettime(CLOCK_MONOTONIC)``, which keeps counting while the machine sleeps.
  ``time.monotonic`` is ``mach_absolute_time()`` there, which does not.
- Windows: ``time.monotonic`` itself: ``QueryPerformanceCounter`` (Python 3.13+) and
  ``GetTickCount64`` (before) both count the time the machine spends asleep or hibernated.
- Anywhere else, or where the kernel refuses the clock: ``time.monotonic`` cross-checked
  with the wall clock (:class:`_WallChecked`), so that time the wall clock gained on it (a
  suspend) counts too.

The reading is read on every request, so it is the cheapest callable that is right: the C
function itself where it is (Windows), else ``functools.partial`` over the C
``time.clock_gettime``, a call about 15 ns dearer than ``time.monotonic`` on CPython 3.11
(a Python function doing the same costs more than twice that). ``CLOCK_BOOTTIME`` is taken on
Linux only: on the BSDs a ``CLOCK_BOOTTIME`` may exist that does *not* count a suspend.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Callable


class _WallChecked:
    """``time.monotonic``, moved forward by whatever the wall clock has gained on it.

    A suspend that ``time.monotonic`` does not see still moves the wall clock, so the wall
    clock's lead over it grows by the time suspended; that growth is added. A step of the wall
    clock forward counts too (it can only make a token renew early); a step back is ignored,
    so the reading never goes back. Two threads racing on the lead at worst let one reading
    miss a gain that the next one adds.
    """

    __slots__ = ("_ahead", "_start")

    def __init__(self) -> None:
        self._start = self._ahead = time.time() - time.monotonic()

    def __call__(self) -> float:
        now = time.monotonic()
        self._ahead = max(self._ahead, time.time() - now)
        return now + (self._ahead - self._start)


#: The ``clock_gettime`` clock that counts time suspended, by platform (see above).
_CLOCK_IDS = {"linux": "CLOCK_BOOTTIME", "android": "CLOCK_BOOTTIME", "darwin": "CLOCK_MONOTONIC"}


def suspend_aware_monotonic(platform: str = sys.platform) -> Callable[[], float]:
    """The cheapest monotonic reading on ``platform`` that counts time spent suspended."""
    if platform == "win32":
        return time.monotonic
    name = _CLOCK_IDS.get("linux" if platform.startswith("linux") else platform, "")
    # AttributeError: no such clock in this Python (no name for the platform: "" is none);
    # OSError: an old kernel or a sandbox refuses the clock (EINVAL, EPERM).
    with contextlib.suppress(AttributeError, OSError):
        reading = functools.partial(time.clock_gettime, getattr(time, name))
        reading()
        return reading
    return _WallChecked()


class Clock:
    """The system clock's readings, and the shape of a clock: ``monotonic()``, ``wall()``
    and ``sleep(seconds)``. Subclass or duck-type it to fake.

    ``sleep`` is the drivers': this class does not wait (the core never does). The clock a
    driver runs with defines it: ``requests_emma._system_clock.SystemClock``, or a fake.
    """

    __slots__ = ()

    # C functions (or a partial over one): monotonic() is read on every request.
    monotonic = staticmethod(suspend_aware_monotonic())
    wall = staticmethod(time.time)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``: defined by the clock a driver runs with, not here."""
        raise NotImplementedError(
            f"{type(self).__name__} reads time but does not wait: give the auth a clock "
            "with a sleep(), such as requests_emma.testing.FakeClock (or subclass "
            "requests_emma._system_clock.SystemClock for real waits)"
        )
