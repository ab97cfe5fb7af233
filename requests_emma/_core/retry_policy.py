"""How the token endpoint is retried: :class:`RetryPolicy`, the value users configure.

The tenacity strategies that carry it out are in ``_core/backoff.py``, imported at the first
token call rather than with the package.

One renewal is a sequence of attempts bounded by two things: ``attempts`` and ``deadline``,
whichever runs out first. The deadline covers everything (sleeps and each attempt's
timeout, which is cut to the time left), so an unreachable endpoint fails within it.

Waits grow exponentially from ``wait_initial`` up to ``wait_max``, plus a random jitter of
up to ``wait_jitter`` (tenacity's ``wait_exponential`` + ``wait_random``). A
``Retry-After`` from the server is a floor: the next attempt waits at least that long. If
that floor would pass the deadline, the renewal stops at once rather than sleep in vain.
"""

from __future__ import annotations

import dataclasses
import datetime

from .durations import seconds


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How token-endpoint calls are retried. Durations are seconds.

    An immutable value (a frozen dataclass), keyword arguments only, checked when made
    (``ValueError`` naming the bad value); ``copy.replace()`` on Python 3.13+.

    ``attempts``: calls at most per renewal (1 means no retries). ``deadline``: the whole
    renewal, waits and timeouts included. ``wait_initial``, ``wait_max``, ``wait_jitter``:
    exponential backoff from ``wait_initial`` doubling up to ``wait_max``, plus up to
    ``wait_jitter`` of random jitter.
    """

    attempts: int = 5
    deadline: float = 30.0
    wait_initial: float = 0.5
    wait_max: float = 10.0
    wait_jitter: float = 0.5

    def __post_init__(self) -> None:
        attempts = self.attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be a whole number, at least 1, got {attempts!r}")
        seconds("deadline", self.deadline, positive=True)
        for name in ("wait_initial", "wait_max", "wait_jitter"):
            seconds(name, getattr(self, name))
        if self.wait_max < self.wait_initial:
            raise ValueError(
                f"wait_max ({self.wait_max!r}) must not be less than "
                f"wait_initial ({self.wait_initial!r})"
            )


#: The longest wait a ``Retry-After`` is taken to ask for: 2**31 seconds (68 years), the
#: value RFC 9111 (1.2.2) has caches take for delta-seconds too large to represent.
MAX_RETRY_AFTER = 2.0**31


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    ``now`` is the Unix time, for the date form. ``None`` when absent or unparseable; a
    date in the past gives 0. A longer wait than :data:`MAX_RETRY_AFTER` gives that: a wait
    is always a finite number of seconds, even for digits too many for a float.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # float() of 309 digits or more is infinity: capped, like any other long wait.
        return min(float(value), MAX_RETRY_AFTER)
    # Here, not with the module: email.utils imports socket (for make_msgid), which importing
    # the core does not; a Retry-After in the date form is rare, and comes over a socket.
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # An HTTP-date is always GMT, even in asctime form (no zone: a naive datetime).
    when = when.replace(tzinfo=when.tzinfo or datetime.timezone.utc)
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)
