"""The token lifecycle: every decision about the token, in one place.

This is a pure state object: no network, no threads, no sleeping. Every decision takes the
time as an argument (``now``, monotonic seconds; ``wall_now``, Unix seconds where a token
crosses a process boundary), so tests drive it step by step. The requests adapter
(``_auth.py``) adds the lock and runs the renewals (``_renewal.py``) it asks for.

Theory of operation
-------------------
A token, once accepted, goes through three states as the clock moves:

``FRESH``
    Before ``renew_after``: send it as it is (:meth:`TokenLifecycle.header`).
``STALE``
    Inside the refresh margin, not yet expired: keep sending it, and renew it early, off
    the request path. :meth:`~TokenLifecycle.begin_early_renewal` grants one early renewal
    at a time; a failed one is not retried on every request, but after a backoff that
    doubles (:meth:`~TokenLifecycle.early_renewal_failed`) while the token keeps serving.
``EXPIRED``
    Past its lifetime, rejected by the API (:meth:`~TokenLifecycle.reject`), or no token
    yet: callers must wait for a renewal.

A token's lifetime counts from when its request was *sent* (:meth:`~TokenLifecycle.accept`
takes that time), so the client never believes a token lives longer than the server does.

The refresh margin scales with the token's own lifetime (a fifth of it, at most
:data:`MAX_DEFAULT_MARGIN`), so a 2 s test token is renewed after 1.6 s rather than on every
request, and a 300 s token a minute before it expires. An explicit margin is capped at half
the lifetime for the same reason.

Renewing: the refresh token first, if there is one that is not about to expire
(:meth:`~TokenLifecycle.refresh_token`); if refresh-token refuses it, it is dropped and
issue-token is asked (:meth:`~TokenLifecycle.refresh_failed`); a refresh that failed for any
other reason (a busy server, no answer) says nothing about the refresh token: it is kept,
and the renewal fails. A response without a refresh token keeps the previous one; one with a
refresh token replaces it (the server may revoke the old one on use).

Tokens from elsewhere: :meth:`~TokenLifecycle.adopt` starts from a :class:`Token` loaded from
a shared cache, whose times are wall-clock, allowing :data:`CLOCK_SKEW` for hosts whose
clocks disagree. A token this process saw rejected is never adopted again.
"""

from __future__ import annotations

import collections
import enum
import math
from typing import TYPE_CHECKING

from ._token import Token, bearer_header

if TYPE_CHECKING:
    # Loaded with the token calls' machinery at the first renewal, not with the package.
    from ._outcome import Kind
    from ._wire import TokenGrant

#: Cap of the lifetime-scaled default margin, in seconds.
MAX_DEFAULT_MARGIN = 60.0
#: Share of the lifetime used as the default margin.
DEFAULT_MARGIN_SHARE = 0.2
#: A refresh token this close to its expiry is not used: issue a new token instead.
REFRESH_TOKEN_SLACK = 5.0
#: How far apart the clocks of two hosts sharing a cache may be: a token from elsewhere is
#: taken to expire this much earlier than it says.
CLOCK_SKEW = 5.0

#: ``TokenLifecycle.fresh`` when there is no token to send as it is.
_NOT_FRESH = (-math.inf, "")


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


class _Held:
    """The current token with its monotonic deadlines and its ready-made header."""

    __slots__ = ("expires", "header", "renew_after", "token")

    def __init__(self, token: Token, renew_after: float, expires: float) -> None:
        self.token = token
        self.header = bearer_header(token.access_token)
        self.renew_after = renew_after
        self.expires = expires


class TokenLifecycle:
    """Holds the current token and the refresh token, and decides what to do with them."""

    def __init__(self, refresh_margin: float | None = None) -> None:
        self.refresh_margin = refresh_margin
        self._held: _Held | None = None
        #: ``(until, header)``: the ``Authorization`` value and the monotonic time until which
        #: it may be sent as it is; the per-request answer, published so that the hot path
        #: reads an attribute and compares a clock reading, with no call. With no token to
        #: send, ``until`` is minus infinity: the one comparison answers "not fresh".
        self.fresh: tuple[float, str] = _NOT_FRESH
        self._refresh_token: str | None = None
        self._refresh_expires: float | None = None  # monotonic
        # Access tokens the API refused, the latest few: a shared cache may still hold one.
        self._rejected: collections.deque[str] = collections.deque(maxlen=8)
        self._early_in_flight = False
        self._early_not_before = -math.inf
        self._early_failures = 0

    # -- reading ----------------------------------------------------------------------------

    @property
    def current(self) -> Token | None:
        """The token last accepted, usable or not."""
        return None if self._held is None else self._held.token

    @property
    def held(self) -> _Held | None:
        """The current token with its header and deadlines, usable or not."""
        return self._held

    def header(self, now: float) -> str | None:
        """The ``Authorization`` value while the token is fresh, else ``None``: the
        per-request question, kept as cheap as one comparison."""
        until, header = self.fresh
        return header if now < until else None

    def freshness(self, now: float) -> Freshness:
        held = self._held
        if held is None or now >= held.expires:
            return Freshness.EXPIRED
        if now >= held.renew_after:
            return Freshness.STALE
        return Freshness.FRESH

    def usable(self, now: float) -> _Held | None:
        """The current token (with its header) unless it has expired."""
        held = self._held
        if held is None or now >= held.expires:
            return None
        return held

    # -- renewing early, off the request path ------------------------------------------------

    def begin_early_renewal(self, now: float) -> bool:
        """Whether to start an early renewal now: the token is stale, no early renewal is
        running and none failed too recently. If so, one is taken to be running."""
        if (
            self._early_in_flight
            or now < self._early_not_before
            or self.freshness(now) is not Freshness.STALE
        ):
            return False
        self._early_in_flight = True
        return True

    def early_renewal_due(self, now: float) -> bool:
        """Whether a granted early renewal should still run: the token is still stale (not
        renewed by a waiting caller meanwhile, nor expired)."""
        return self.freshness(now) is Freshness.STALE

    def early_renewal_ended(self) -> None:
        self._early_in_flight = False

    def early_renewal_failed(self, now: float, backoff_initial: float, backoff_max: float) -> float:
        """Note a failed early renewal; returns the seconds until the next early attempt."""
        wait = min(backoff_max, backoff_initial * 2.0**self._early_failures)
        self._early_failures += 1
        self._early_not_before = now + wait
        return wait

    # -- what to renew with ------------------------------------------------------------------

    def refresh_token(self, now: float) -> str | None:
        """The refresh token to renew with, if there is one that has not (nearly) expired;
        ``None``: ask issue-token."""
        if self._refresh_token is None:
            return None
        if self._refresh_expires is not None and now >= self._refresh_expires - REFRESH_TOKEN_SLACK:
            return None
        return self._refresh_token

    def refresh_failed(self, kind: Kind) -> bool:
        """A refresh-token call ended in ``kind``: whether to fall back to issue-token now.

        A refusal means the refresh token is dead: it is dropped, and issue-token asked. Any
        other failure says nothing about it: it is kept, and the renewal fails.
        """
        from ._outcome import Kind  # loaded already: the call that failed classified itself

        if kind is Kind.REFUSED:
            self._refresh_token = self._refresh_expires = None
            return True
        return False

    # -- new tokens --------------------------------------------------------------------------

    def accept(self, grant: TokenGrant, sent_at: float, sent_wall: float) -> Token:
        """Store the token granted to a request sent at monotonic ``sent_at`` (Unix
        ``sent_wall``); its lifetime counts from then."""
        token = grant.to_token(sent_wall)
        if grant.refresh_token is not None:
            self._refresh_token = grant.refresh_token
            self._refresh_expires = (
                None if grant.refresh_lifetime is None else sent_at + grant.refresh_lifetime
            )
        elif self._refresh_token is not None:
            # Keep the previous refresh token; show it and its expiry on the new Token.
            refresh_expires_at = (
                None
                if self._refresh_expires is None
                else sent_wall + (self._refresh_expires - sent_at)
            )
            token = token.with_refresh(self._refresh_token, refresh_expires_at)
        self._hold(token, sent_at, grant.lifetime)
        return token

    def adopt(self, token: Token, now: float, wall_now: float) -> bool:
        """Take ``token``, loaded from a shared cache, if it is newer than the one held
        (another access token, expiring later, allowing for clock skew) and not rejected
        here. Its refresh token comes with it, as the newest one the fleet knows, even when
        its access token has expired. Returns whether the access token was taken."""
        if token.access_token in self._rejected:
            return False
        left = token.expires_at - wall_now - CLOCK_SKEW
        held = self._held
        if held is not None and (
            held.token.access_token == token.access_token or now + left <= held.expires
        ):
            return False
        if token.refresh_token is not None:
            self._refresh_token = token.refresh_token
            self._refresh_expires = (
                None
                if token.refresh_expires_at is None
                else now + (token.refresh_expires_at - wall_now - CLOCK_SKEW)
            )
        if left <= 0:
            return False
        self._hold(token, now, left)
        return True

    def _hold(self, token: Token, start: float, lifetime: float) -> None:
        margin = effective_margin(lifetime, self.refresh_margin)
        held = self._held = _Held(token, start + lifetime - margin, start + lifetime)
        self.fresh = (held.renew_after, held.header)
        self._early_not_before = -math.inf
        self._early_failures = 0

    # -- rejection and processes -------------------------------------------------------------

    def reject(self, access_token: str) -> bool:
        """The API refused ``access_token``: if it is the current token, it must not be sent
        again (returns True: renew now); if not, a newer one is current already (False)."""
        if access_token not in self._rejected:
            self._rejected.append(access_token)
        held = self._held
        if held is None or held.token.access_token != access_token:
            return False
        held.expires = held.renew_after = -math.inf
        self.fresh = _NOT_FRESH
        return True

    def after_fork(self) -> None:
        """In a forked child: the access token stays usable, but the refresh token is the
        parent's, which a rotating server revokes when either process uses it; and no early
        renewal runs here, whatever the parent was doing."""
        self._refresh_token = self._refresh_expires = None
        self._early_in_flight = False
