"""The :class:`TokenStatus` value object: what ``EmmaAuth.status()`` reports.

A snapshot for health checks and dashboards, decided by the lifecycle
(``TokenLifecycle.status``) from what it holds at one instant: the current token's time
left, the hold on token calls, the last failed renewal. It holds no token and no secret, so
it can be logged, returned from a health endpoint or put in a metric label as it is.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TokenStatus:
    """The state of an auth's token at one instant, as ``status()`` returns it.

    An immutable value (a frozen dataclass): equal by value, hashable, ``copy.replace()``
    on Python 3.13+. Times are seconds from the instant it was taken.

    ``valid_for``: how long the current token is still valid (0 once it has expired or the
    API refused it), ``None`` while there is none. ``renewing``: a renewal is in flight.
    ``last_error``: the message of the last renewal that failed (no secret in it), ``None``
    once one has succeeded. ``retry_after``: how long until emma takes token calls again,
    while none may be made (emma asked to wait with ``Retry-After``, or refused the client
    credentials and the backoff runs), else ``None``.
    """

    valid_for: float | None
    renewing: bool
    last_error: str | None
    retry_after: float | None
