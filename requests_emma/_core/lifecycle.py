"""The token lifecycle: every decision about the token, in one place.

This is a pure state object: no network, no threads, no sleeping. Every decision takes the
time as an argument (``now``, monotonic seconds; ``wall_now``, Unix seconds where a token
crosses a process boundary), so tests drive it step by step. The token source
(``_source/source.py``) adds the lock and runs the renewals it asks for, and every client
adapter only carries out what :meth:`TokenLifecycle.decide` answers (h11's rule: the state
machine decides, the I/O code obeys).

What :meth:`~TokenLifecycle.decide` answers a caller that needs a token, by the token's
state and whether a renewal is in flight (``running``):

==============  =======================  ============================================
token           no renewal running       a renewal running
==============  =======================  ============================================
FRESH           SEND                     SEND
STALE           RENEW_EARLY (then SEND)  SEND
EXPIRED / none  RENEW (and wait)         WAIT for it (RENEW once it is stuck)
==============  =======================  ============================================

A STALE token gets RENEW_EARLY only outside the early renewals' backoff and any hold; a
renewal is *stuck* once it has run past its deadline plus :data:`STUCK_GRACE` (its event loop
stopped, say): the next caller gives it up and renews.

Theory of operation
-------------------
A token, once accepted, goes through three states as the clock moves:

``FRESH``
    Before ``renew_after``: send it as it is (:attr:`TokenLifecycle.fresh`).
``STALE``
    Inside the refresh margin, not yet expired: keep sending it, and renew it early, off
    the request path. :meth:`~TokenLifecycle.decide` grants one early renewal
    at a time; a failed one is not retried on every request, but after a backoff that
    doubles (:meth:`~TokenLifecycle.renewal_ended`) while the token keeps serving.
``EXPIRED``
    Past its lifetime, rejected by the API (:meth:`~TokenLifecycle.reject`), or no token
    yet: callers must wait for a renewal.

A token's lifetime counts from when its request was *sent* (:meth:`~TokenLifecycle.accept`
takes that time), so the client never believes a token lives longer than the server does.

The refresh margin scales with the token's own lifetime (a fifth of it, at most
:data:`MAX_DEFAULT_MARGIN`), so a 2 s test token is renewed after 1.6 s rather than on every
request, and a 300 s token a minute before it expires. An explicit margin is capped at half
the lifetime for the same reason.

Renewing: the refresh token first, if there is one that is not about to expire. It is taken
out when its call is sent (:meth:`~TokenLifecycle.take_refresh_token`): a refresh token whose
call may have reached emma is never sent again, since emma may have rotated it. Only emma's
"wait" (429 or 503) shows the call was not carried out: the refresh call is retried, and
if the wait goes on the refresh token is given back (:meth:`~TokenLifecycle.refresh_ended`).
Any other failure (a 4xx: the refresh token is dead; no answer, a timeout, another 5xx, an
interruption or a cancelled task) leaves it taken, and a token is issued with the client
credentials instead.
A response without a refresh token keeps the previous one; one with a refresh token
replaces it (the server may revoke the old one on use).

Tokens from elsewhere: :meth:`~TokenLifecycle.adopt` takes an entry loaded from a shared
cache, and :meth:`~TokenLifecycle.entry_to_save` makes the one to save; the entry's times are
wall-clock, and only these two methods convert them. Which entry is newer is decided by its
``generation``, a counter each saver writes as one more than the highest it knows, never by
comparing the clocks of two hosts: an entry of a higher generation than the one held is the
fleet's newest, so its refresh token replaces the one held (the held one may have been
rotated away) whatever its access token's expiry, and its access token is taken unless it
was rejected here or has (nearly) expired. "Nearly" allows for hosts whose clocks disagree:
:func:`clock_skew`, at most :data:`CLOCK_SKEW`, less for a short-lived token (a quarter of
its lifetime, read off the saver's own clock), so tokens shorter than the allowance are
still shared. Another host's wall clock is never trusted beyond the durations it recorded:
a cached token lasts at most the lifetime emma gave it, a cached hold at most the seconds
it was set for. An old entry put back (a restored backup, a replica promoted after a
failover) is taken for the newest by a process that has seen none: its refresh token may
have been rotated away, and emma refuses it; the refresh token is then dropped and a token
issued, so it costs one renewal (see the security explanation).

No token calls before a time: emma's ``Retry-After`` (on a 429 or 503) and a refusal of the
client credentials (then a backoff from :data:`REFUSED_BACKOFF_INITIAL` doubling to
:data:`REFUSED_BACKOFF_MAX`) become a *hold* (:meth:`~TokenLifecycle.call_failed`). Inside it no renewal calls emma
(:meth:`~TokenLifecycle.calls_held`), no early renewal starts, and a token still valid keeps
serving. The hold travels in the cache entry, so the whole fleet keeps it. A hold is at most
:data:`~.cache_entry.MAX_HOLD` (an hour), whatever ``Retry-After`` says.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
from typing import TYPE_CHECKING

from .cache_entry import BUSY, MAX_HOLD, REFUSED, Entry, Hold
from .token import Token, bearer_header
from .token_status import TokenStatus

if TYPE_CHECKING:
    from .outcome import Outcome
    from .retry_policy import RetryPolicy
    from .wire import TokenGrant

#: Cap of the lifetime-scaled default margin, in seconds.
MAX_DEFAULT_MARGIN = 60.0
#: Share of the lifetime used as the default margin.
DEFAULT_MARGIN_SHARE = 0.2
#: A refresh token this close to its expiry is not used: issue a new token instead.
REFRESH_TOKEN_SLACK = 5.0
#: How far apart the clocks of two hosts sharing a cache may be: a token from elsewhere is
#: taken to expire this much earlier than it says (less for short tokens: clock_skew()).
CLOCK_SKEW = 5.0
#: Share of a cached token's lifetime allowed for clock skew when that is less than CLOCK_SKEW.
CLOCK_SKEW_SHARE = 0.25
#: No token calls for this long after emma refused the client credentials, doubling with each
#: refusal in a row up to REFUSED_BACKOFF_MAX: a wrong secret must not make a fleet hammer
#: the endpoint, and a fixed one is picked up within a minute.
REFUSED_BACKOFF_INITIAL = 5.0
REFUSED_BACKOFF_MAX = 60.0
#: Statuses whose ``Retry-After`` holds off every token call until it has passed.
HOLD_STATUSES = frozenset({429, 503})
#: A failed early renewal is tried again after a backoff from the retry policy's
#: ``wait_initial`` doubling to its ``wait_max``, but never sooner than this: the token still
#: serves, and emma is not to be called every few milliseconds for it.
EARLY_BACKOFF_FLOOR = 1.0
#: A renewal still running this long after its deadline is stuck (its event loop stopped, or
#: the thread waiting blocks it): the next caller gives it up and renews itself.
STUCK_GRACE = 5.0

#: Why a renewal runs, as the renewal's telemetry reports it: no token yet; early, off the
#: request path, for a token inside its refresh margin; a token that expired unused; the API
#: rejected the current token (401); the first renewal in a forked child.
TRIGGERS = ("first_use", "early", "expired", "after_401", "after_fork")
FIRST_USE, EARLY, EXPIRED, AFTER_401, AFTER_FORK = TRIGGERS

#: ``TokenLifecycle.fresh`` when there is no token to send as it is.
_NOT_FRESH = (-math.inf, "")


class Freshness(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"
    EXPIRED = "expired"


class Decision(enum.Enum):
    """What a caller that needs a token does (see the table in the module docstring)."""

    #: Send the current token as it is.
    SEND = "send"
    #: Send the current token, and run an early renewal off the request path (granted now).
    RENEW_EARLY = "renew early"
    #: No usable token: run a renewal now (granted now) and wait for it.
    RENEW = "renew"
    #: No usable token: wait for the renewal in flight.
    WAIT = "wait"


#: The table in the module docstring: what :meth:`TokenLifecycle.decide` answers, by the
#: token's freshness, with no renewal running and with one running. RENEW_EARLY is granted
#: only outside the early renewals' backoff and any hold (else: SEND).
_DECISIONS = {
    Freshness.FRESH: (Decision.SEND, Decision.SEND),
    Freshness.STALE: (Decision.RENEW_EARLY, Decision.SEND),
    Freshness.EXPIRED: (Decision.RENEW, Decision.WAIT),
}


def clock_skew(lifetime: float) -> float:
    """The clock-skew allowance for a cached token of ``lifetime`` seconds."""
    return max(0.0, min(CLOCK_SKEW, CLOCK_SKEW_SHARE * lifetime))


def effective_margin(lifetime: float, configured: float | None) -> float:
    """The configured margin, never more than half the lifetime; with none configured, a
    share of the lifetime, at most :data:`MAX_DEFAULT_MARGIN`."""
    if configured is None:
        return min(MAX_DEFAULT_MARGIN, DEFAULT_MARGIN_SHARE * lifetime)
    return min(configured, lifetime / 2)


class _Held:
    """The current token with its monotonic deadlines and its ready-made header, and the
    Unix time its request was sent (on the clock of the process that sent it)."""

    __slots__ = ("expires", "header", "issued_at", "renew_after", "token")

    def __init__(self, token: Token, renew_after: float, expires: float, issued_at: float) -> None:
        self.token = token
        self.header = bearer_header(token.access_token)
        self.renew_after = renew_after
        self.expires = expires
        self.issued_at = issued_at


class TokenLifecycle:
    """Holds the current token and the refresh token, and decides what to do with them."""

    def __init__(self, refresh_margin: float | None = None, renewal_deadline: float = 30.0) -> None:
        self.refresh_margin = refresh_margin
        #: A renewal is stuck this long after it began.
        self.stuck_after = renewal_deadline + STUCK_GRACE
        self._held: _Held | None = None
        #: ``(until, header)``: the ``Authorization`` value and the monotonic time until which
        #: it may be sent as it is; the per-request answer, published so that the hot path
        #: reads an attribute and compares a clock reading, with no call. With no token to
        #: send, ``until`` is minus infinity: the one comparison answers "not fresh".
        self.fresh: tuple[float, str] = _NOT_FRESH
        self._refresh_token: str | None = None
        # Monotonic, infinite when not known; set with every refresh token, and read only
        # while one is held, so a dropped one's is never cleared.
        self._refresh_expires = math.inf
        self._refresh_expires_at: float | None = None  # Unix time, as passed on to a cache
        #: The generation of the shared cache entry the state held here comes from (or was
        #: saved as); 0 for none.
        self.generation = 0
        #: No token calls before ``hold.until`` (monotonic), and why.
        self.hold: Hold | None = None
        # Access tokens the API refused, the latest few: a shared cache may still hold one.
        self._rejected: collections.deque[str] = collections.deque(maxlen=8)
        #: Why the renewal in flight runs (a :data:`TRIGGERS` value), ``None`` when none is.
        self.renewing: str | None = None
        #: The number of the renewal last granted, and when it began (monotonic).
        self.renewal = 0
        self._renewal_began = -math.inf
        #: The message of the last renewal that failed, ``None`` once one succeeded.
        self.last_error: str | None = None
        #: The early renewals' backoff: no early renewal before ``[0]`` (monotonic), and how
        #: many failed in a row.
        self._early_backoff = (-math.inf, 0)
        #: Why a renewal runs when the token is unusable (short of a 401): no token yet, a
        #: token that expired, or the first renewal in a forked child.
        self._unusable = FIRST_USE

    # -- reading ----------------------------------------------------------------------------

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

    def expired_on_arrival(self, token: Token, now: float) -> bool:
        """Whether ``token``, just accepted, is the current token and has expired though the
        API never refused it: its lifetime was shorter than its token call."""
        held = self._held
        expired = held is not None and held.token is token and now >= held.expires
        return expired and token.access_token not in self._rejected

    def usable(self, now: float) -> _Held | None:
        """The current token (with its header) unless it has expired."""
        return None if self.freshness(now) is Freshness.EXPIRED else self._held

    # -- what a caller does ------------------------------------------------------------------

    def decide(self, now: float, rejected: str | None = None, *, early: bool = True) -> Decision:
        """What a caller that needs a token does now (after ``rejected``, an access token the
        API answered 401 to, is invalidated if still current; ``early=False``: a caller that
        runs no early renewal). A RENEW or RENEW_EARLY answer grants that renewal: it is
        taken to be running from now (:attr:`renewal` numbers it) until
        :meth:`renewal_ended`."""
        if rejected is not None:
            self.reject(rejected)
        running = self.renewing is not None and now < self._renewal_began + self.stuck_after
        decision = _DECISIONS[self.freshness(now)][running]
        if decision is Decision.RENEW_EARLY:
            if not early or now < self._early_backoff[0] or self.calls_held(now) is not None:
                return Decision.SEND
            self._grant(now, EARLY)
        elif decision is Decision.RENEW:
            self._grant(now, self._unusable if rejected is None else AFTER_401)
        return decision

    def wait_limit(self, now: float) -> float:
        """How long a caller waits for the renewal in flight before it takes it for stuck."""
        return max(0.0, self._renewal_began + self.stuck_after - now)

    def give_up(self) -> None:
        """The renewal in flight can never land (the waiting thread blocks the event loop
        that runs it): the next :meth:`decide` grants a new one."""
        self._renewal_began = -math.inf

    def _grant(self, now: float, trigger: str) -> None:
        self.renewing, self._renewal_began = trigger, now
        self.renewal += 1

    def early_renewal_due(self, now: float) -> bool:
        """Whether a granted early renewal should still run: the token is still stale (not
        renewed meanwhile, nor expired)."""
        return self.freshness(now) is Freshness.STALE

    def renewal_ended(
        self,
        renewal: int,
        now: float,
        error: str | None,
        policy: RetryPolicy,
        *,
        interrupted: bool = False,
    ) -> float | None:
        """Renewal number ``renewal`` ended, with the message ``error`` if it failed. One
        given up on meanwhile (a newer one was granted) changes nothing.

        A failed early renewal is not tried again on every request: the next one waits for
        a backoff from the policy's ``wait_initial`` (at least :data:`EARLY_BACKOFF_FLOOR`)
        doubling up to its ``wait_max``, and not inside a hold on token calls; meanwhile the
        token keeps serving. Returns that backoff's seconds, ``None`` for any other ending.

        An ``interrupted`` renewal (Ctrl-C, a cancelled task at an event loop's end, a
        thread that could not start) says nothing about emma: no error is recorded, and a
        caller that needs a token simply renews. An interrupted *early* renewal backs off as
        a failed one does, though: a program that runs ``asyncio.run()`` per request ends
        the loop under every early renewal it starts, and must not call emma each time.
        """
        if renewal != self.renewal:
            return None
        trigger, self.renewing = self.renewing, None
        if not interrupted:
            self.last_error = error
        if trigger != EARLY or (error is None and not interrupted):
            return None
        floor = max(policy.wait_initial, EARLY_BACKOFF_FLOOR)
        failures = self._early_backoff[1]
        wait = min(max(policy.wait_max, floor), floor * 2.0**failures)
        wait = max(wait, 0.0 if self.hold is None else self.hold.left(now))  # not inside a hold
        self._early_backoff = (now + wait, failures + 1)
        return wait

    # -- what to renew with, and what an answer means ----------------------------------------

    def take_refresh_token(self, now: float) -> str | None:
        """The refresh token to renew with, taken out as its call is sent (see the module
        docstring), if there is one that has not (nearly) expired; ``None``: issue a token."""
        refresh_token, self._refresh_token = self._refresh_token, None
        if refresh_token is None or now < self._refresh_expires - REFRESH_TOKEN_SLACK:
            return refresh_token
        self._refresh_expires_at = None  # about to expire: dropped
        return None

    def refresh_ended(self, now: float, refresh_token: str, outcome: Outcome) -> bool:
        """The refresh-token call sent with ``refresh_token`` came to ``outcome`` (not a
        grant): whether to issue a token with the client credentials now.

        A refresh is sent again only after emma's "wait" (429 or 503), which shows that the
        call was not carried out; if that is its last answer, the refresh token is given
        back, calls are held (for its ``Retry-After``), and the renewal fails. Anything else (a 4xx: the refresh token is dead; no answer:
        emma may have rotated it) leaves it dropped, and a token is issued instead."""
        if outcome.status in HOLD_STATUSES:
            self._refresh_token = self._refresh_token or refresh_token
            self.call_failed(now, outcome)
            return False
        self._refresh_expires_at = None
        return True

    def call_failed(
        self, now: float, outcome: Outcome, *, credentials: bool = False
    ) -> float | None:
        """A token call failed with ``outcome``; ``credentials``: issue-token refused the
        client credentials. Returns the seconds before token calls may be made again (a
        hold), if any."""
        if credentials:
            strikes = (0 if self.hold is None else self.hold.strikes) + 1
            wait = min(REFUSED_BACKOFF_MAX, REFUSED_BACKOFF_INITIAL * 2.0 ** (strikes - 1))
            self._hold(Hold(now + wait, REFUSED, outcome.detail(), strikes, wait))
            return wait
        if outcome.retry_after is not None and outcome.status in HOLD_STATUSES:
            wait = min(outcome.retry_after, MAX_HOLD)
            self._hold(Hold(now + wait, BUSY, f"HTTP {outcome.status}", 0, wait))
            return wait
        return None

    # -- holding off token calls -------------------------------------------------------------

    def calls_held(self, now: float) -> Hold | None:
        """The hold on token calls in force at ``now``, if any."""
        hold = self.hold
        return hold if hold is not None and now < hold.until else None

    def _hold(self, hold: Hold) -> None:
        current = self.hold
        if current is not None and current.until >= hold.until:
            hold = current
        strikes = max(hold.strikes, 0 if current is None else current.strikes)
        self.hold = dataclasses.replace(hold, strikes=strikes)

    # -- new tokens --------------------------------------------------------------------------

    def accept(
        self, grant: TokenGrant, sent_at: float, sent_wall: float, refreshed_with: str | None = None
    ) -> Token:
        """Store the token granted to a request sent at monotonic ``sent_at`` (Unix
        ``sent_wall``); its lifetime counts from then. ``refreshed_with``: the refresh token
        the request sent, still good if the answer brings no new one."""
        token = grant.to_token(sent_wall)
        self._refresh_token = self._refresh_token or refreshed_with
        if grant.refresh_token is not None:
            self._refresh_token = grant.refresh_token
            self._refresh_expires = sent_at + (grant.refresh_lifetime or math.inf)
            self._refresh_expires_at = token.refresh_expires_at
        elif self._refresh_token is not None:
            # Keep the previous refresh token; show it and its expiry on the new Token.
            token = token.with_refresh(self._refresh_token, self._refresh_expires_at)
        self._take(token, sent_at, grant.lifetime, sent_wall)
        self.hold = None  # emma answered: whatever held token calls off is over
        return token

    def adopt(self, entry: Entry, now: float, wall_now: float) -> bool:
        """Take what is newer in ``entry``, loaded from a shared cache at monotonic ``now``
        (Unix ``wall_now``). Returns whether its access token was taken and is fresh, so no
        token call is needed; a taken token already inside its refresh margin serves until
        the renewal that follows has replaced it.

        Its hold is kept if it ends later than the one held, for at most the seconds it was
        set for. Its token counts only if the entry's generation is higher than the one held;
        then its access token is taken unless it was rejected here or has (nearly, by
        :func:`clock_skew`) expired, for at most the lifetime emma gave it, and its refresh
        token replaces the one held whatever its access token's expiry (the one held may
        have been rotated away by the saver).
        """
        hold = entry.hold
        if hold is not None:
            left = min(hold.until - wall_now, hold.seconds)
            if left > 0:
                self._hold(dataclasses.replace(hold, until=now + left))
        token, issued_at = entry.token, entry.issued_at
        if entry.generation <= self.generation or token is None or issued_at is None:
            return False
        self.generation = entry.generation
        if token.refresh_token is not None:
            expires_at = self._refresh_expires_at = token.refresh_expires_at
            self._refresh_token, self._refresh_expires = token.refresh_token, math.inf
            if expires_at is not None:
                self._refresh_expires = now + _left(expires_at, expires_at - issued_at, wall_now)
        left = _left(token.expires_at, token.expires_at - issued_at, wall_now)
        held = self._held
        if (
            left <= 0
            or token.access_token in self._rejected
            or (held is not None and held.token.access_token == token.access_token)
        ):
            return False
        self._take(token, now, left, issued_at)
        return self.freshness(now) is Freshness.FRESH

    def entry_to_save(self, now: float, wall_now: float) -> Entry:
        """The shared cache entry for what is held here: the current token with the newest
        refresh token, the hold, and the next generation (see :meth:`saved`)."""
        held, token, hold = self._held, None, self.calls_held(now)
        if held is not None:
            token = held.token.with_refresh(self._refresh_token, self._refresh_expires_at)
        if hold is not None:
            hold = dataclasses.replace(hold, until=wall_now + hold.left(now))
        issued_at = None if held is None else held.issued_at
        return Entry(self.generation + 1, token, issued_at, hold)

    def saved(self, entry: Entry) -> None:
        """``entry`` (from :meth:`entry_to_save`) is in the shared cache now."""
        self.generation = max(self.generation, entry.generation)

    def _take(self, token: Token, start: float, lifetime: float, issued_at: float) -> None:
        margin = effective_margin(lifetime, self.refresh_margin)
        held = self._held = _Held(token, start + lifetime - margin, start + lifetime, issued_at)
        self.fresh = (held.renew_after, held.header)
        self._early_backoff = (-math.inf, 0)
        self._unusable = EXPIRED

    # -- rejection and processes -------------------------------------------------------------

    def reject(self, access_token: str) -> bool:
        """The API refused ``access_token`` (or it went with a body that cannot be sent
        again): if it is the current token, it must not be sent again (returns True: renew
        now); if not, a newer one is current already (False)."""
        if access_token not in self._rejected:
            self._rejected.append(access_token)
        held = self._held
        if held is None or held.token.access_token != access_token:
            return False
        held.expires = held.renew_after = -math.inf
        self.fresh = _NOT_FRESH
        return True

    def after_fork(self) -> None:
        """What a forked child keeps: the policy at a process boundary. The child keeps this
        lifecycle and its access token, which the API accepts from any process; it drops the
        refresh token, which is the parent's and which a rotating server revokes when either
        process uses it, and any renewal the parent was running (no thread runs it here). Its
        first renewal therefore issues a token of its own, or adopts the shared cache's (its
        generation resets, so the cache's entry counts as newer).

        A pickled copy (a worker process, possibly much later or on another host) keeps
        nothing of this: the token source pickles its configuration only, and the copy makes
        a new lifecycle. An access token unpickled later may long have expired, and a copied
        refresh token would be shared.
        """
        self._refresh_token = self._refresh_expires_at = None
        self.renewing = None
        self.generation = 0
        self._unusable = AFTER_FORK

    # -- reporting ---------------------------------------------------------------------------

    def status(self, now: float) -> TokenStatus:
        """What ``status()`` reports at monotonic ``now``: the current token's seconds left
        (0 once expired or rejected, ``None`` without one), whether a renewal is in flight,
        the last failed renewal's message (``None`` after a success), and the seconds left
        of a hold on token calls."""
        held = self._held
        hold = self.calls_held(now)
        return TokenStatus(
            valid_for=None if held is None else max(0.0, held.expires - now),
            renewing=self.renewing is not None,
            last_error=self.last_error,
            retry_after=None if hold is None else hold.left(now),
        )


def _left(expires_at: float, lifetime: float, wall_now: float) -> float:
    """Seconds left until ``expires_at`` (a Unix time from another host), at most the token's
    ``lifetime`` and allowing for the clock skew of a token that long."""
    return min(expires_at - wall_now, lifetime) - clock_skew(lifetime)
