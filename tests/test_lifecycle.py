"""The pure token lifecycle, driven step by step with a fake clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from requests_emma._core.cache_entry import BUSY, MAX_HOLD, REFUSED, Entry, Hold
from requests_emma._core.lifecycle import (
    AFTER_401,
    AFTER_FORK,
    CLOCK_SKEW,
    EARLY,
    EXPIRED,
    FIRST_USE,
    MAX_DEFAULT_MARGIN,
    STUCK_GRACE,
    Decision,
    Freshness,
    TokenLifecycle,
    clock_skew,
    effective_margin,
)
from requests_emma._core.outcome import Kind, Outcome, classify_status
from requests_emma._core.retry_policy import RetryPolicy
from requests_emma._core.token import Token
from requests_emma._core.wire import TokenGrant

WALL = 1_700_000_000.0
POLICY = RetryPolicy()
MACHINE_POLICY = RetryPolicy(wait_initial=1.0, wait_max=8.0)


def grant(
    lifetime: float = 300,
    refresh: str | None = "r1",
    refresh_lifetime: float | None = 1800,
    access: str = "a1",
) -> TokenGrant:
    return TokenGrant(access, "Bearer", lifetime, "expiresIn", refresh, refresh_lifetime)


def answered(
    status: int | None, retry_after: float | None = None, kind: Kind | None = None
) -> Outcome:
    """A failed token call: HTTP ``status`` (``None``: no answer) with ``Retry-After``."""
    if kind is None:
        kind = Kind.TRANSIENT if status is None else classify_status(status)
    reason = "timed out" if status is None else f"HTTP {status}"
    return Outcome(
        kind, reason, sent_at=0.0, sent_wall=WALL, status=status, retry_after=retry_after
    )


def holding(life: TokenLifecycle, now: float, seconds: float, status: int = 429) -> None:
    """emma answered ``status`` with ``Retry-After: seconds`` at ``now``."""
    life.call_failed(now, answered(status, seconds))


def test_no_token_means_expired() -> None:
    """Before any token is accepted, callers must wait for a renewal."""
    assert TokenLifecycle().freshness(0.0) is Freshness.EXPIRED


def test_300_second_token_renews_once_per_lifetime() -> None:
    """A 300 s token is fresh until a minute before expiry, stale until expiry, then expired."""
    life = TokenLifecycle()
    life.accept(grant(300), sent_at=1000.0, sent_wall=WALL)
    assert life.freshness(1000.0 + 239.9) is Freshness.FRESH
    assert life.freshness(1000.0 + 240.0) is Freshness.STALE
    assert life.freshness(1000.0 + 299.9) is Freshness.STALE
    assert life.freshness(1000.0 + 300.0) is Freshness.EXPIRED


def test_2_second_token_is_not_renewed_on_every_request() -> None:
    """A 2 s token stays fresh for most of its life under the default margin."""
    life = TokenLifecycle()
    life.accept(grant(2), sent_at=0.0, sent_wall=WALL)
    assert life.freshness(1.5) is Freshness.FRESH
    assert life.freshness(1.7) is Freshness.STALE


def test_default_margin_scales_with_lifetime_and_is_capped() -> None:
    """The default margin is a fifth of the lifetime, never more than the cap."""
    assert effective_margin(2, None) == pytest.approx(0.4)
    assert effective_margin(300, None) == 60
    assert effective_margin(3600, None) == MAX_DEFAULT_MARGIN


def test_explicit_margin_is_capped_at_half_the_lifetime() -> None:
    """A 30 s margin on a 20 s token leaves it fresh for 10 s rather than never."""
    assert effective_margin(20, 30.0) == 10
    assert effective_margin(300, 30.0) == 30
    life = TokenLifecycle(refresh_margin=30.0)
    life.accept(grant(20), sent_at=0.0, sent_wall=WALL)
    assert life.freshness(9.9) is Freshness.FRESH


def test_token_times_are_unix_times_at_receipt() -> None:
    """The Token handed out carries Unix times computed from the wall clock at receipt."""
    token = TokenLifecycle().accept(grant(300), sent_at=5.0, sent_wall=WALL)
    assert token.expires_at == WALL + 300
    assert token.refresh_expires_at == WALL + 1800


def test_newest_refresh_token_is_kept() -> None:
    """A response with a new refresh token replaces the old one (rotation)."""
    life = TokenLifecycle()
    life.accept(grant(refresh="r1"), sent_at=0.0, sent_wall=WALL)
    life.accept(grant(refresh="r2", access="a2"), sent_at=10.0, sent_wall=WALL + 10)
    assert life.take_refresh_token(10.0) == "r2"


def test_refresh_token_kept_when_response_has_none() -> None:
    """A response without a refresh token keeps the previous one, with its old expiry."""
    life = TokenLifecycle()
    life.accept(grant(refresh="r1", refresh_lifetime=1800), sent_at=0.0, sent_wall=WALL)
    token = life.accept(grant(refresh=None, access="a2"), sent_at=100.0, sent_wall=WALL + 100)
    assert life.take_refresh_token(100.0) == "r1"
    assert token.refresh_token == "r1"
    assert token.refresh_expires_at == WALL + 1800


def test_expired_refresh_token_is_not_offered() -> None:
    """A refresh token at (or near) its expiry is not used: issue-token instead."""
    early, late = TokenLifecycle(), TokenLifecycle()
    for life in (early, late):
        life.accept(grant(refresh_lifetime=1800), sent_at=0.0, sent_wall=WALL)
    assert early.take_refresh_token(1700.0) == "r1"
    assert late.take_refresh_token(1799.0) is None
    assert late.entry_to_save(1799.0, WALL + 1799).token.refresh_token is None  # type: ignore[union-attr]


def test_a_refresh_token_taken_is_not_offered_again() -> None:
    """A refresh token is taken out as its call is sent: a second renewal does not get it."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    assert life.take_refresh_token(0.0) == "r1"
    assert life.take_refresh_token(0.0) is None


def test_refused_refresh_token_is_dropped_and_issue_token_asked() -> None:
    """After refresh-token refuses the refresh token it is no longer offered: fall back."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    assert life.take_refresh_token(0.0) == "r1"
    assert life.refresh_ended(0.0, "r1", answered(400)) is True
    assert life.take_refresh_token(0.0) is None


@pytest.mark.parametrize("status", [401, 403, 404, 405, 410, 422])
def test_any_other_4xx_from_refresh_token_drops_the_refresh_token(status: int) -> None:
    """A 4xx that is not a refusal (a gateway that no longer knows the token) kills it too."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    assert life.take_refresh_token(0.0) == "r1"
    assert life.refresh_ended(0.0, "r1", answered(status)) is True
    assert life.take_refresh_token(0.0) is None


@pytest.mark.parametrize(
    "outcome",
    [
        answered(None),
        answered(500),
        answered(504),
        answered(500, 10.0),
        answered(502),
        answered(200, kind=Kind.UNUSABLE),
    ],
    ids=["no answer", "500", "504", "500 with Retry-After", "502", "unusable 200"],
)
def test_a_refresh_failing_otherwise_drops_the_refresh_token(outcome: Outcome) -> None:
    """A refresh is tried once: no answer, a 5xx other than 503, or an unusable answer (the
    call may have been carried out, the refresh token rotated) drops it and asks issue-token."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    assert life.take_refresh_token(0.0) == "r1"
    assert life.refresh_ended(0.0, "r1", outcome) is True
    assert life.take_refresh_token(0.0) is None
    assert life.calls_held(0.0) is None


@pytest.mark.parametrize("status", [429, 503])
def test_a_refresh_told_to_wait_gives_the_refresh_token_back_and_holds(status: int) -> None:
    """429 or 503 with Retry-After: the refresh token is given back, calls are held, and
    no issue-token follows (the renewal fails)."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    assert life.take_refresh_token(0.0) == "r1"
    assert life.refresh_ended(0.0, "r1", answered(status, 20.0)) is False
    assert life.calls_held(0.0) == Hold(20.0, BUSY, f"HTTP {status}", 0, 20.0)
    assert life.take_refresh_token(20.0) == "r1"


def test_a_refresh_token_given_back_does_not_replace_a_newer_one() -> None:
    """A refresh told to wait gives its refresh token back only if none came meanwhile."""
    life = TokenLifecycle()
    life.accept(grant(refresh="r1"), sent_at=0.0, sent_wall=WALL)
    assert life.take_refresh_token(0.0) == "r1"
    life.accept(grant(refresh="r2", access="a2"), sent_at=1.0, sent_wall=WALL + 1)
    assert life.refresh_ended(2.0, "r1", answered(429, 5.0)) is False
    assert life.take_refresh_token(2.0) == "r2"


def test_a_refreshed_grant_without_a_refresh_token_keeps_the_one_sent() -> None:
    """accept(refreshed_with=...) keeps the refresh token the call sent when the grant
    brings none; a grant with one replaces it."""
    life = TokenLifecycle()
    life.accept(grant(refresh="r1"), sent_at=0.0, sent_wall=WALL)
    sent = life.take_refresh_token(0.0)
    token = life.accept(grant(refresh=None, access="a2"), 1.0, WALL + 1, refreshed_with=sent)
    assert token.refresh_token == "r1" and life.take_refresh_token(1.0) == "r1"
    life.accept(grant(refresh="r3", access="a3"), 2.0, WALL + 2, refreshed_with="r1")
    assert life.take_refresh_token(2.0) == "r3"


def test_lifetime_counts_from_when_the_request_was_sent() -> None:
    """A token granted to a request sent at t expires at t + lifetime, however late it came."""
    life = TokenLifecycle()
    token = life.accept(grant(300), sent_at=100.0, sent_wall=WALL)
    assert life.usable(399.9) is not None and life.usable(400.0) is None
    assert token.expires_at == WALL + 300


def fresh_header(life: TokenLifecycle, now: float) -> str | None:
    """What the per-request path reads off ``life.fresh`` at ``now``."""
    until, header = life.fresh
    return header if now < until else None


def test_header_is_offered_only_while_fresh() -> None:
    """The published per-request answer gives the header while fresh; stale or expired
    send the request to the slow path."""
    life = TokenLifecycle()
    assert fresh_header(life, 0.0) is None
    life.accept(grant(300), sent_at=0.0, sent_wall=WALL)
    assert fresh_header(life, 239.0) == "Bearer a1"
    assert fresh_header(life, 240.0) is None


def test_header_repr_hides_the_token() -> None:
    """The header value shows as 'Bearer ***' in reprs (urllib3's header locals)."""
    life = TokenLifecycle()
    life.accept(grant(access="secret-access"), sent_at=0.0, sent_wall=WALL)
    header = fresh_header(life, 0.0)
    assert header == "Bearer secret-access"
    assert "secret-access" not in repr({"Authorization": header})


def test_reject_invalidates_only_the_current_token() -> None:
    """Compare-and-invalidate: a rejected current token is expired at once; an old one is not."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    assert life.reject("a0") is False
    assert life.usable(1.0) is not None
    assert life.reject("a1") is True
    assert life.freshness(1.0) is Freshness.EXPIRED
    assert life.usable(1.0) is None
    assert life.take_refresh_token(1.0) == "r1"


def test_one_early_renewal_at_a_time() -> None:
    """A stale token grants one early renewal; a second waits until the first has ended."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    assert life.decide(100.0) is Decision.SEND  # fresh: nothing to do
    assert life.decide(250.0) is Decision.RENEW_EARLY
    assert life.renewing == EARLY
    assert life.decide(251.0) is Decision.SEND
    life.renewal_ended(life.renewal, 251.0, None, POLICY)
    assert life.decide(251.0) is Decision.RENEW_EARLY


def test_a_caller_that_runs_no_early_renewal_just_sends() -> None:
    """decide(early=False) on a stale token answers SEND and grants nothing."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    assert life.decide(250.0, early=False) is Decision.SEND
    assert life.renewing is None and life.renewal == 0


def fail_early(life: TokenLifecycle, now: float, policy: RetryPolicy = POLICY) -> float | None:
    """Start an early renewal at ``now`` and end it in failure: the backoff decided."""
    assert life.decide(now) is Decision.RENEW_EARLY, "no early renewal was granted"
    return life.renewal_ended(life.renewal, now, "HTTP 503", policy)


def test_failed_early_renewal_backs_off_exponentially() -> None:
    """Early renewals after failures wait 1, 2, 4 ... seconds, capped, and reset on success."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    capped = RetryPolicy(wait_initial=1.0, wait_max=3.0)
    assert fail_early(life, 250.0, capped) == 1.0
    assert life.decide(250.5) is Decision.SEND
    assert life.decide(251.0) is Decision.RENEW_EARLY
    assert life.renewal_ended(life.renewal, 251.0, "HTTP 503", capped) == 2.0
    assert fail_early(life, 253.0, capped) == 3.0
    life.accept(grant(access="a2"), sent_at=254.0, sent_wall=WALL + 254)
    assert life.decide(254.0 + 241) is Decision.RENEW_EARLY


def test_the_early_backoff_starts_at_one_second_at_least() -> None:
    """A policy with shorter waits still leaves a second before the next early attempt."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    assert fail_early(life, 250.0, RetryPolicy(wait_initial=0.0, wait_max=0.0)) == 1.0


def test_only_an_early_renewal_backs_off() -> None:
    """A failed renewal that callers waited for sets no early backoff: the next caller tries."""
    life = TokenLifecycle()
    assert life.decide(0.0) is Decision.RENEW and life.renewing == FIRST_USE
    assert life.renewal_ended(life.renewal, 0.0, "HTTP 503", POLICY) is None
    assert life.last_error == "HTTP 503"
    assert life.decide(0.0) is Decision.RENEW and life.renewing == FIRST_USE


def test_an_interrupted_renewal_records_no_error_and_sets_no_backoff() -> None:
    """An interrupted renewal of a caller without a token ends it, records no error and
    leaves the next caller free to renew at once."""
    life = TokenLifecycle()
    assert life.decide(0.0) is Decision.RENEW
    assert life.renewal_ended(life.renewal, 0.0, "x", POLICY, interrupted=True) is None
    assert life.last_error is None and life.renewing is None
    assert life.decide(0.0) is Decision.RENEW


def test_an_interrupted_early_renewal_backs_off_without_an_error() -> None:
    """An interrupted early renewal (its event loop ended) records no error but backs off as
    a failed one does: asyncio.run() per request does not call emma every time."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    assert life.decide(250.0) is Decision.RENEW_EARLY
    assert life.renewal_ended(life.renewal, 250.0, "x", POLICY, interrupted=True) is not None
    assert life.last_error is None and life.renewing is None
    assert life.decide(250.0) is Decision.SEND


def test_a_renewal_ended_after_a_newer_was_granted_changes_nothing() -> None:
    """renewal_ended with the number of a renewal given up on leaves the newer one running."""
    life = TokenLifecycle()
    assert life.decide(0.0) is Decision.RENEW
    old = life.renewal
    life.give_up()
    assert life.decide(0.0) is Decision.RENEW and life.renewal == old + 1
    assert life.renewal_ended(old, 1.0, "HTTP 503", POLICY) is None
    assert life.renewing == FIRST_USE and life.last_error is None
    assert life.decide(1.0) is Decision.WAIT


def test_a_stuck_renewal_is_given_up_after_its_deadline_and_grace() -> None:
    """Callers wait for a renewal until its deadline plus STUCK_GRACE; then the next one
    renews itself."""
    life = TokenLifecycle(renewal_deadline=10.0)
    assert life.decide(0.0) is Decision.RENEW
    assert life.wait_limit(4.0) == 10.0 + STUCK_GRACE - 4.0
    assert life.decide(10.0 + STUCK_GRACE - 0.1) is Decision.WAIT
    assert life.decide(10.0 + STUCK_GRACE) is Decision.RENEW and life.renewal == 2


@pytest.mark.parametrize(
    ("setup", "rejected", "trigger"),
    [
        ("none", None, FIRST_USE),
        ("expired", None, EXPIRED),
        ("held", "a1", AFTER_401),
        ("forked", None, AFTER_FORK),
    ],
)
def test_a_renewal_says_why_it_runs(setup: str, rejected: str | None, trigger: str) -> None:
    """First use, an expired token, a 401 and a forked child's first renewal are told apart."""
    life = TokenLifecycle()
    if setup != "none":
        life.accept(grant(300), sent_at=0.0, sent_wall=WALL)
    if setup == "forked":
        life.after_fork()
        life.reject("a1")
    now = 400.0 if setup == "expired" else 1.0
    assert life.decide(now, rejected) is Decision.RENEW
    assert life.renewing == trigger


def test_a_usable_token_needs_no_renewal_and_a_second_caller_joins_the_first() -> None:
    """decide answers SEND while a token is fresh; while a renewal runs, callers WAIT for it."""
    life = TokenLifecycle()
    life.accept(grant(300), sent_at=0.0, sent_wall=WALL)
    assert life.decide(1.0) is Decision.SEND and life.renewing is None
    assert life.decide(1.0, rejected="a1") is Decision.RENEW and life.renewing == AFTER_401
    assert life.decide(1.0) is Decision.WAIT  # the same renewal, still running
    assert life.renewing == AFTER_401 and life.renewal == 1


def cached(
    access: str = "c1",
    *,
    expires_in: float = 300,
    lifetime: float = 300,
    refresh: str | None = "rc",
    generation: int = 1,
) -> Entry:
    """An entry as another process left it in a shared cache, read at wall time WALL: a
    token of ``lifetime`` seconds with ``expires_in`` left."""
    issued_at = WALL + expires_in - lifetime
    token = Token(access, "Bearer", WALL + expires_in, refresh, issued_at + 1800)
    return Entry(generation, token, issued_at)


def test_a_token_from_a_cache_is_adopted_with_its_refresh_token() -> None:
    """With no token held, a cached one is taken, expiring CLOCK_SKEW early, refresh and all."""
    life = TokenLifecycle()
    assert life.adopt(cached(), now=50.0, wall_now=WALL) is True
    assert life.usable(50.0 + 300 - CLOCK_SKEW - 0.1) is not None
    assert life.usable(50.0 + 300 - CLOCK_SKEW) is None
    assert life.take_refresh_token(50.0) == "rc"


def test_an_expired_or_rejected_cached_token_is_not_adopted() -> None:
    """A cached token past its expiry (skew included), or one the API refused here, is not taken."""
    life = TokenLifecycle()
    assert life.adopt(cached(expires_in=CLOCK_SKEW), now=0.0, wall_now=WALL) is False
    life.accept(grant(access="c1"), sent_at=0.0, sent_wall=WALL)
    life.reject("c1")
    assert life.adopt(cached("c1", generation=2), now=1.0, wall_now=WALL + 1) is False
    assert life.usable(1.0) is None


def test_only_an_entry_of_a_higher_generation_is_adopted() -> None:
    """An entry of a generation no higher than the one held leaves the lifecycle as it was;
    a higher one is taken even when its token expires sooner (no clocks compared)."""
    life = TokenLifecycle()
    assert life.adopt(cached("c2", generation=2), now=0.0, wall_now=WALL) is True
    assert life.adopt(cached("c3", expires_in=400, generation=2), now=0.0, wall_now=WALL) is False
    assert life.adopt(cached("c4", expires_in=400, generation=1), now=0.0, wall_now=WALL) is False
    assert life.current is not None and life.current.access_token == "c2"
    newer = cached("c5", expires_in=200, refresh="r5", generation=3)
    assert life.adopt(newer, now=0.0, wall_now=WALL) is True
    assert life.current is not None and life.current.access_token == "c5"
    assert life.take_refresh_token(0.0) == "r5" and life.generation == 3


def test_a_newer_entry_gives_its_refresh_token_even_when_its_access_token_expired() -> None:
    """The refresh token of a newer entry replaces the held one, whatever its access
    token's expiry: the held one may have been rotated away by the saver."""
    life = TokenLifecycle()
    life.accept(grant(2, refresh="r1"), sent_at=0.0, sent_wall=WALL)
    rotated = cached("c2", expires_in=-1, lifetime=2, refresh="r2", generation=1)
    assert life.adopt(rotated, now=0.0, wall_now=WALL) is False
    assert life.generation == 1
    assert life.take_refresh_token(0.0) == "r2"


def test_a_cached_token_lasts_at_most_its_recorded_lifetime() -> None:
    """A saver whose clock runs an hour ahead cannot make a 300 s token last longer here:
    it is bounded by its lifetime (expires_at - issued_at), less the skew allowance."""
    life = TokenLifecycle()
    token = Token("c1", "Bearer", WALL + 3600 + 300, "rc", WALL + 3600 + 1800)
    assert life.adopt(Entry(1, token, WALL + 3600), now=0.0, wall_now=WALL) is True
    assert life.usable(300 - CLOCK_SKEW - 0.1) is not None
    assert life.usable(300 - CLOCK_SKEW) is None


def test_a_token_shorter_than_the_clock_skew_is_still_shared() -> None:
    """A 2 s token with 1.5 s left is adopted: its skew allowance is a quarter of its life."""
    assert clock_skew(2.0) == pytest.approx(0.5) and clock_skew(300.0) == CLOCK_SKEW
    life = TokenLifecycle()
    assert life.adopt(cached(expires_in=1.5, lifetime=2), now=0.0, wall_now=WALL) is True
    assert life.usable(0.9) is not None and life.usable(1.0) is None


def test_the_entry_to_save_carries_the_next_generation_and_the_newest_refresh_token() -> None:
    """entry_to_save holds the current token with the refresh token kept from an earlier
    grant, its issue time, and one more than the generation held."""
    life = TokenLifecycle()
    life.adopt(cached(generation=4), now=0.0, wall_now=WALL)
    life.accept(grant(300, refresh=None, access="a2"), sent_at=10.0, sent_wall=WALL + 10)
    entry = life.entry_to_save(20.0, WALL + 20)
    assert entry.generation == 5 and entry.issued_at == WALL + 10
    assert entry.token is not None and entry.token.access_token == "a2"
    assert entry.token.refresh_token == "rc" and entry.hold is None
    assert life.generation == 4
    life.saved(entry)
    assert life.generation == 5


def test_retry_after_holds_token_calls_and_early_renewals() -> None:
    """Inside a Retry-After hold no call may be made and no early renewal starts; the token
    keeps serving, and the hold ends on time."""
    life = TokenLifecycle()
    life.accept(grant(300), sent_at=0.0, sent_wall=WALL)  # stale from 240 s
    assert life.call_failed(245.0, answered(429, 30.0)) == 30.0
    assert life.calls_held(245.0) == Hold(275.0, BUSY, "HTTP 429", 0, 30.0)
    assert life.hold is not None and life.hold.left(245.0) == 30.0
    assert life.decide(274.9) is Decision.SEND and life.renewing is None
    assert life.usable(274.9) is not None
    assert life.calls_held(275.0) is None and life.decide(275.0) is Decision.RENEW_EARLY


@pytest.mark.parametrize(
    ("status", "retry_after"), [(429, None), (503, None), (500, 30.0), (502, 30.0)]
)
def test_only_429_or_503_with_retry_after_holds_calls(
    status: int, retry_after: float | None
) -> None:
    """A busy answer without Retry-After, or another status with one, puts no hold."""
    life = TokenLifecycle()
    assert life.call_failed(0.0, answered(status, retry_after)) is None
    assert life.calls_held(0.0) is None


def test_a_hold_is_at_most_an_hour() -> None:
    """A Retry-After of a day holds token calls for MAX_HOLD (an hour), no longer."""
    life = TokenLifecycle()
    assert life.call_failed(0.0, answered(503, 86400.0)) == MAX_HOLD
    assert life.calls_held(MAX_HOLD - 0.1) is not None and life.calls_held(MAX_HOLD) is None


def test_a_failed_early_renewal_waits_out_a_hold() -> None:
    """The next early attempt after a failure is not before the hold ends."""
    life = TokenLifecycle()
    life.accept(grant(300), sent_at=0.0, sent_wall=WALL)
    assert life.decide(240.0) is Decision.RENEW_EARLY
    holding(life, 240.0, 30.0, 503)  # what the failed renewal was told
    policy = RetryPolicy(wait_initial=1.0, wait_max=10.0)
    assert life.renewal_ended(life.renewal, 240.0, "HTTP 503", policy) == pytest.approx(30.0)


def test_refused_credentials_hold_calls_for_a_doubling_backoff() -> None:
    """Each refusal in a row holds calls for 5, 10, 20, 40, then 60 s; a grant resets it."""
    life = TokenLifecycle()
    refusal = answered(400)
    waits = [life.call_failed(100.0 * n, refusal, credentials=True) for n in range(6)]
    assert waits == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert life.calls_held(500.0) == Hold(560.0, REFUSED, "HTTP 400", 6, 60.0)
    life.accept(grant(), sent_at=600.0, sent_wall=WALL)
    assert life.calls_held(600.0) is None
    assert life.call_failed(600.0, refusal, credentials=True) == 5.0


def test_a_hold_travels_through_an_entry() -> None:
    """A hold saved by one lifecycle is kept by another that loads the entry, in its own
    monotonic time."""
    first, second = TokenLifecycle(), TokenLifecycle()
    holding(first, 10.0, 60.0)
    entry = first.entry_to_save(10.0, WALL)
    assert entry.token is None and entry.hold == Hold(WALL + 60, BUSY, "HTTP 429", 0, 60.0)
    assert second.adopt(entry, now=500.0, wall_now=WALL + 20) is False
    assert second.calls_held(500.0) == Hold(540.0, BUSY, "HTTP 429", 0, 60.0)


def test_a_cached_hold_lasts_at_most_the_seconds_it_was_set_for() -> None:
    """A hold from a host whose clock runs a day ahead holds calls here for its own
    seconds, not until that host's clock says."""
    life = TokenLifecycle()
    hold = Hold(WALL + 86400 + 60, BUSY, "HTTP 429", 0, 60.0)
    assert life.adopt(Entry(1, hold=hold), now=0.0, wall_now=WALL) is False
    held = life.calls_held(0.0)
    assert held is not None and held.left(0.0) == 60.0
    assert life.calls_held(60.0) is None


def test_a_cached_hold_ending_sooner_than_the_one_held_is_not_taken() -> None:
    """Adopting a shorter hold keeps the longer one held here."""
    life = TokenLifecycle()
    holding(life, 0.0, 60.0)
    hold = Hold(WALL + 10, BUSY, "HTTP 503", 0, 10.0)
    life.adopt(Entry(1, hold=hold), now=0.0, wall_now=WALL)
    assert life.calls_held(0.0) == Hold(60.0, BUSY, "HTTP 429", 0, 60.0)


def test_after_fork_keeps_the_access_token_and_drops_the_refresh_token() -> None:
    """A forked child may use the parent's access token but must not share its refresh token."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    assert life.decide(250.0) is Decision.RENEW_EARLY
    life.after_fork()
    assert life.usable(250.0) is not None
    assert life.take_refresh_token(250.0) is None
    assert life.decide(250.0) is Decision.RENEW_EARLY  # the parent's renewal does not run here


class LifecycleMachine(RuleBasedStateMachine):
    """Random sequences of clock moves, new tokens and rejections keep the invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.life = TokenLifecycle()
        self.now = 0.0
        self.accepted_at: float | None = None
        self.lifetime = 0.0
        self.rejected = False
        self.count = 0
        self.newest_refresh: str | None = None
        self.early_not_before = -math.inf
        self.early_failures = 0

    @rule(seconds=st.floats(0, 400))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(lifetime=st.floats(1, 3600), with_refresh=st.booleans())
    def token_arrives(self, lifetime: float, with_refresh: bool) -> None:
        self.count += 1
        refresh = f"r{self.count}" if with_refresh else None
        self.life.accept(grant(lifetime, refresh, None, f"a{self.count}"), self.now, WALL)
        self.accepted_at, self.lifetime, self.rejected = self.now, lifetime, False
        self.newest_refresh = refresh or self.newest_refresh
        self.early_not_before, self.early_failures = -math.inf, 0

    def early_granted(self) -> bool:
        """Whether a caller is granted an early renewal now (decide grants only that one on
        a stale token)."""
        if self.life.freshness(self.now) is not Freshness.STALE:
            return False
        return self.life.decide(self.now) is Decision.RENEW_EARLY

    @rule()
    def early_renewal_fails(self) -> None:
        if not self.early_granted():
            return
        wait = self.life.renewal_ended(self.life.renewal, self.now, "HTTP 503", MACHINE_POLICY)
        assert wait == min(8.0, 2.0**self.early_failures)
        self.early_failures += 1
        self.early_not_before = self.now + wait

    @precondition(lambda self: self.accepted_at is not None)
    @rule()
    def api_rejects_it(self) -> None:
        assert self.life.current is not None
        self.life.reject(self.life.current.access_token)
        self.rejected = True

    @invariant()
    def usable_only_before_expiry(self) -> None:
        usable = self.life.usable(self.now) is not None
        if self.accepted_at is None or self.rejected:
            assert not usable
        else:
            assert usable == (self.now < self.accepted_at + self.lifetime)

    @invariant()
    def fresh_for_at_least_half_the_lifetime(self) -> None:
        if (
            self.accepted_at is not None
            and not self.rejected
            and self.now < self.accepted_at + self.lifetime / 2
        ):
            assert self.life.freshness(self.now) is Freshness.FRESH

    @invariant()
    def stale_before_expiry_when_margin_allows(self) -> None:
        if self.accepted_at is not None and not self.rejected:
            just_before = self.accepted_at + self.lifetime * 0.999
            if self.now < just_before:
                assert self.life.freshness(just_before) is not Freshness.FRESH

    @rule()
    def refresh_call_is_lost(self) -> None:
        refresh_token = self.life.take_refresh_token(self.now)
        assert refresh_token == self.newest_refresh
        if refresh_token is not None:
            assert self.life.refresh_ended(self.now, refresh_token, answered(None))
        self.newest_refresh = None

    @invariant()
    def early_renewal_waits_out_its_backoff(self) -> None:
        stale = self.life.freshness(self.now) is Freshness.STALE
        granted = self.early_granted()
        assert granted == (stale and self.now >= self.early_not_before)
        if granted:
            self.life.renewal_ended(self.life.renewal, self.now, None, MACHINE_POLICY)

    @invariant()
    def the_newest_refresh_token_is_offered(self) -> None:
        token = self.life.entry_to_save(self.now, WALL).token
        assert (None if token is None else token.refresh_token) == self.newest_refresh


TestLifecycleMachine = LifecycleMachine.TestCase


def test_a_granted_early_renewal_is_no_longer_due_once_the_token_was_renewed() -> None:
    """An early renewal that a waiting renewal overtook (after a 401, say) does not run."""
    life = TokenLifecycle()
    life.accept(grant(), sent_at=0.0, sent_wall=WALL)
    assert life.decide(250.0) is Decision.RENEW_EARLY and life.early_renewal_due(250.0)
    life.accept(grant(access="a2"), sent_at=250.0, sent_wall=WALL + 250)
    assert not life.early_renewal_due(251.0)


def test_every_recently_rejected_token_stays_unadoptable() -> None:
    """A token rejected before the last one is still never taken from a cache again."""
    life = TokenLifecycle()
    life.accept(grant(access="x"), sent_at=0.0, sent_wall=WALL)
    life.reject("x")
    life.accept(grant(access="y"), sent_at=1.0, sent_wall=WALL + 1)
    life.reject("y")
    assert life.adopt(cached("x", generation=5), now=2.0, wall_now=WALL + 2) is False
