"""The token lifecycle: when a token may be used, when it must be renewed, and with what.

This is a pure state object: no network, no threads, no sleeping. Every decision takes
``now``, a monotonic clock reading, so tests drive it step by step with a fake clock. The
requests adapter (``_auth.py``) adds the lock and the calls.

Theory of operation
-------------------
A token, once accepted, goes through three states as the clock moves:

``FRESH``
    Before ``renew_after``: send it as it is.
``STALE``
    Inside the refresh margin, not yet expired: one caller should renew, everyone else
    keeps sending it. A failed early renewal is not retried on every request: the next
    early attempt waits for a backoff (``renewal_failed``) while the token keeps serving.
``EXPIRED``
    Past its lifetime, or rejected by the API with a 401 (``invalidate``), or no token yet:
    callers must wait for a renewal.

The refresh margin scales with the token's own lifetime (a fifth of it, at most
:data:`MAX_DEFAULT_MARGIN`), so a 2 s test token is renewed after 1.6 s rather than on every
request, and a 300 s token once per lifetime, a minute before it expires. An explicit margin
is capped at half the lifetime for the same reason.

The refresh token is kept separately: a response without one keeps the previous one; a
response with one replaces it (the server may revoke the old one on use).
"""

from __future__ import annotations

import dataclasses
import enum
import math

from ._token import Token
from ._wire import TokenGrant

#: Cap of the lifetime-scaled default margin, in seconds.
MAX_DEFAULT_MARGIN = 60.0
#: Share of the lifetime used as the default margin.
DEFAULT_MARGIN_SHARE = 0.2
#: A refresh token this close to its expiry is not used: issue a new token instead.
REFRESH_TOKEN_SLACK = 5.0


class Freshness(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"
    EXPIRED = "expired"


def default_margin(lifetime: float) -> float:
    """The refresh margin for a token of ``lifetime`` seconds when none is configured."""
    return min(MAX_DEFAULT_MARGIN, DEFAULT_MARGIN_SHARE * lifetime)


def effective_margin(lifetime: float, configured: float | None) -> float:
    """The configured margin (or the default), never more than half the lifetime."""
    if configured is None:
        return default_margin(lifetime)
    return min(configured, lifetime / 2)


@dataclasses.dataclass
class _Held:
    token: Token
    renew_after: float
    expires: float


class TokenLifecycle:
    """Holds the current token and the refresh token, and decides what to do with them."""

    def __init__(self, refresh_margin: float | None = None) -> None:
        self.refresh_margin = refresh_margin
        self._held: _Held | None = None
        self._refresh_token: str | None = None
        self._refresh_expires: float | None = None
        self._early_renewal_not_before = -math.inf
        self._early_failures = 0

    @property
    def current(self) -> Token | None:
        """The token last accepted, usable or not."""
        return None if self._held is None else self._held.token

    def freshness(self, now: float) -> Freshness:
        held = self._held
        if held is None or now >= held.expires:
            return Freshness.EXPIRED
        if now >= held.renew_after:
            return Freshness.STALE
        return Freshness.FRESH

    def usable(self, now: float) -> Token | None:
        """The current token if it has not expired (fresh or stale), else ``None``."""
        held = self._held
        if held is None or now >= held.expires:
            return None
        return held.token

    def accept(self, grant: TokenGrant, now: float, wall_now: float) -> Token:
        """Store a new token received at monotonic ``now`` / Unix ``wall_now``."""
        token = grant.to_token(wall_now)
        if grant.refresh_token is not None:
            self._refresh_token = grant.refresh_token
            self._refresh_expires = (
                None if grant.refresh_lifetime is None else now + grant.refresh_lifetime
            )
        elif self._refresh_token is not None:
            # Keep the previous refresh token; show its expiry on the new Token.
            refresh_expires_at = (
                None if self._refresh_expires is None else wall_now + (self._refresh_expires - now)
            )
            token = dataclasses.replace(
                token,
                refresh_token=self._refresh_token,
                refresh_expires_at=refresh_expires_at,
            )
        margin = effective_margin(grant.lifetime, self.refresh_margin)
        self._held = _Held(
            token=token,
            renew_after=now + grant.lifetime - margin,
            expires=now + grant.lifetime,
        )
        self._early_renewal_not_before = -math.inf
        self._early_failures = 0
        return token

    def refresh_token(self, now: float) -> str | None:
        """The refresh token, if there is one that has not (nearly) expired."""
        if self._refresh_token is None:
            return None
        if self._refresh_expires is not None and now >= self._refresh_expires - REFRESH_TOKEN_SLACK:
            return None
        return self._refresh_token

    def drop_refresh_token(self) -> None:
        """Forget the refresh token (the server rejected it)."""
        self._refresh_token = None
        self._refresh_expires = None

    def is_current(self, access_token: str) -> bool:
        return self._held is not None and self._held.token.access_token == access_token

    def invalidate(self) -> None:
        """Mark the current access token as rejected: it must not be sent again."""
        if self._held is not None:
            self._held.expires = self._held.renew_after = -math.inf

    def may_renew_early(self, now: float) -> bool:
        """Whether a stale token may be renewed now (not backing off after a failure)."""
        return now >= self._early_renewal_not_before

    def renewal_failed(self, now: float, backoff_initial: float, backoff_max: float) -> float:
        """Note a failed early renewal; returns the seconds until the next early attempt."""
        wait = min(backoff_max, backoff_initial * 2.0**self._early_failures)
        self._early_failures += 1
        self._early_renewal_not_before = now + wait
        return wait
