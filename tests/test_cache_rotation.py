"""Refresh-token rotation across clients sharing a real cache: the newest refresh token is
found by the entry's generation, never by comparing the expiries of access tokens."""

from __future__ import annotations

from fakes import FakeClock, auth_for, use_clock

from requests_emma import TokenCache
from requests_emma.testing import FakeEmmaServer


def test_each_client_renews_with_the_refresh_token_the_other_rotated(
    server: FakeEmmaServer, shared_cache: TokenCache
) -> None:
    """Two clients on one cache, 2 s tokens (shorter than the 5 s clock-skew allowance),
    renewing in turn once both tokens expired: each refreshes with the refresh token the
    other rotated. One issue-token call in all; no rotated refresh token sent again."""
    server.token_lifetime, server.revoke_on_reuse = 2, True
    clock = FakeClock()
    first, second = (auth_for(server, token_cache=shared_cache) for _ in "ab")
    use_clock(first, clock)
    use_clock(second, clock)
    first.get_token()  # issue-token
    second.get_token()  # the same token, from the cache
    assert server.token_calls == 1
    for turn in range(6):
        clock.advance(2.1)  # every token held has expired
        (second, first)[turn % 2].get_token()
    assert (server.issue_calls, server.refresh_calls) == (1, 6)
    assert server.refresh_reuses == 0


def test_a_short_token_from_the_cache_is_adopted_rather_than_renewed(
    server: FakeEmmaServer, shared_cache: TokenCache
) -> None:
    """A 2 s token another client just saved is taken from the cache (its clock-skew
    allowance is a quarter of its lifetime, not 5 s): no second token call."""
    server.token_lifetime = 2
    clock = FakeClock()
    first, second = (auth_for(server, token_cache=shared_cache) for _ in "ab")
    use_clock(first, clock)
    use_clock(second, clock)
    token = first.get_token()
    clock.advance(0.5)
    assert second.get_token() == token
    assert server.token_calls == 1
