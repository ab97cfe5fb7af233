"""``no_retry_waits()``: retries in tests, without the sleeps between attempts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .. import _system_clock


@contextlib.contextmanager
def no_retry_waits() -> Iterator[None]:
    """Within this block, retries happen without waiting between attempts.

    That is token-endpoint retries and ``EmmaSession``'s (with ``retries=<int>``; a urllib3
    ``Retry`` you pass waits as usual). Attempts, deadlines and errors behave as usual; only
    the backoff and ``Retry-After`` sleeps are skipped, so a test of your code does not sit
    through them. It applies to every thread.
    """
    previous = _system_clock.set_waits_enabled(False)
    try:
        yield
    finally:
        _system_clock.set_waits_enabled(previous)
