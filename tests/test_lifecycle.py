"""The pure token lifecycle, driven step by step with a fake clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from requests_emma._lifecycle import (
    MAX_DEFAULT_MARGIN,
    Freshness,
    TokenLifecycle,
    default_margin,
    effective_margin,
)
from requests_emma._wire import TokenGrant

WALL = 1_700_000_000.0


def grant(
    lifetime: float = 300,
    refresh: str | None = "r1",
    refresh_lifetime: float | None = 1800,
    access: str = "a1",
) -> TokenGrant:
    return TokenGrant(access, "Bearer", lifetime, "expiresIn", refresh, refresh_lifetime)


def test_no_token_means_expired() -> None:
    """Before any token is accepted, callers must wait for a renewal."""
    assert TokenLifecycle().freshness(0.0) is Freshness.EXPIRED


def test_300_second_token_renews_once_per_lifetime() -> None:
    """A 300 s token is fresh until a minute before expiry, stale until expiry, then expired."""
    life = TokenLifecycle()
    life.accept(grant(300), now=1000.0, wall_now=WALL)
    assert life.freshness(1000.0 + 239.9) is Freshness.FRESH
    assert life.freshness(1000.0 + 240.0) is Freshness.STALE
    assert life.freshness(1000.0 + 299.9) is Freshness.STALE
    assert life.freshness(1000.0 + 300.0) is Freshness.EXPIRED


def test_2_second_token_is_not_renewed_on_every_request() -> None:
    """A 2 s token stays fresh for most of its life under the default margin."""
    life = TokenLifecycle()
    life.accept(grant(2), now=0.0, wall_now=WALL)
    assert life.freshness(1.5) is Freshness.FRESH
    assert life.freshness(1.7) is Freshness.STALE


def test_default_margin_scales_with_lifetime_and_is_capped() -> None:
    """The default margin is a fifth of the lifetime, never more than the cap."""
    assert default_margin(2) == pytest.approx(0.4)
    assert default_margin(300) == 60
    assert default_margin(3600) == MAX_DEFAULT_MARGIN


def test_explicit_margin_is_capped_at_half_the_lifetime() -> None:
    """A 30 s margin on a 20 s token leaves it fresh for 10 s rather than never."""
    assert effective_margin(20, 30.0) == 10
    assert effective_margin(300, 30.0) == 30
    life = TokenLifecycle(refresh_margin=30.0)
    life.accept(grant(20), now=0.0, wall_now=WALL)
    assert life.freshness(9.9) is Freshness.FRESH


def test_token_times_are_unix_times_at_receipt() -> None:
    """The Token handed out carries Unix times computed from the wall clock at receipt."""
    token = TokenLifecycle().accept(grant(300), now=5.0, wall_now=WALL)
    assert token.expires_at == WALL + 300
    assert token.refresh_expires_at == WALL + 1800


def test_newest_refresh_token_is_kept() -> None:
    """A response with a new refresh token replaces the old one (rotation)."""
    life = TokenLifecycle()
    life.accept(grant(refresh="r1"), now=0.0, wall_now=WALL)
    life.accept(grant(refresh="r2", access="a2"), now=10.0, wall_now=WALL + 10)
    assert life.refresh_token(10.0) == "r2"


def test_refresh_token_kept_when_response_has_none() -> None:
    """A response without a refresh token keeps the previous one, with its old expiry."""
    life = TokenLifecycle()
    life.accept(grant(refresh="r1", refresh_lifetime=1800), now=0.0, wall_now=WALL)
    token = life.accept(grant(refresh=None, access="a2"), now=100.0, wall_now=WALL + 100)
    assert life.refresh_token(100.0) == "r1"
    assert token.refresh_token == "r1"
    assert token.refresh_expires_at == WALL + 1800


def test_expired_refresh_token_is_not_offered() -> None:
    """A refresh token at (or near) its expiry is not used: issue-token instead."""
    life = TokenLifecycle()
    life.accept(grant(refresh_lifetime=1800), now=0.0, wall_now=WALL)
    assert life.refresh_token(1700.0) == "r1"
    assert life.refresh_token(1799.0) is None


def test_dropped_refresh_token_is_gone() -> None:
    """After the server refuses the refresh token it is no longer offered."""
    life = TokenLifecycle()
    life.accept(grant(), now=0.0, wall_now=WALL)
    life.drop_refresh_token()
    assert life.refresh_token(0.0) is None


def test_invalidate_makes_the_current_token_unusable() -> None:
    """A token the API rejected is expired at once, whatever its lifetime said."""
    life = TokenLifecycle()
    life.accept(grant(), now=0.0, wall_now=WALL)
    assert life.is_current("a1") and not life.is_current("a0")
    life.invalidate()
    assert life.freshness(1.0) is Freshness.EXPIRED
    assert life.usable(1.0) is None
    assert life.refresh_token(1.0) == "r1"


def test_failed_early_renewal_backs_off_exponentially() -> None:
    """Early renewals after failures wait 1, 2, 4 ... seconds, capped, and reset on success."""
    life = TokenLifecycle()
    life.accept(grant(), now=0.0, wall_now=WALL)
    assert life.renewal_failed(250.0, 1.0, 3.0) == 1.0
    assert not life.may_renew_early(250.5) and life.may_renew_early(251.0)
    assert life.renewal_failed(251.0, 1.0, 3.0) == 2.0
    assert life.renewal_failed(253.0, 1.0, 3.0) == 3.0
    life.accept(grant(access="a2"), now=254.0, wall_now=WALL + 254)
    assert life.may_renew_early(254.0)


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

    @rule()
    def early_renewal_fails(self) -> None:
        wait = self.life.renewal_failed(self.now, 1.0, 8.0)
        assert wait == min(8.0, 2.0**self.early_failures)
        self.early_failures += 1
        self.early_not_before = self.now + wait

    @precondition(lambda self: self.accepted_at is not None)
    @rule()
    def api_rejects_it(self) -> None:
        self.life.invalidate()
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

    @invariant()
    def early_renewal_waits_out_its_backoff(self) -> None:
        assert self.life.may_renew_early(self.now) == (self.now >= self.early_not_before)

    @invariant()
    def the_newest_refresh_token_is_offered(self) -> None:
        assert self.life.refresh_token(self.now) == self.newest_refresh


TestLifecycleMachine = LifecycleMachine.TestCase
