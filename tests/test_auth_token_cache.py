"""EmmaAuth with a shared token cache: adopt what another client saved, renew once, survive
an outage. The cache here is a real in-memory one (cache_stores.MemoryCache) shared by several
EmmaAuth objects, as processes share a file or Redis; the contract every cache keeps is
test_cache_contract.py's."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

import pytest
import requests
from cache_stores import MemoryCache
from fakes import WAIT, FakeClock, auth_for, join_renewal, use_clock

from requests_emma import EmmaAuth
from requests_emma.testing import FakeEmmaServer


class BrokenCache(MemoryCache):
    """A cache whose store is down: every call raises, as a Redis outage does."""

    def load(self, key: str) -> bytes | None:
        raise ConnectionError("store down")

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        raise ConnectionError("store down")

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[object]:
        raise ConnectionRefusedError("store down")
        yield


@pytest.fixture
def cache() -> MemoryCache:
    return MemoryCache()


def two_clients_with_tokens(
    server: FakeEmmaServer, cache: MemoryCache
) -> tuple[FakeClock, EmmaAuth, EmmaAuth]:
    """Two clients on one cache and one fake clock, sharing the one token they got."""
    clock = FakeClock()
    first, second = (auth_for(server, token_cache=cache) for _ in range(2))
    use_clock(first, clock)
    use_clock(second, clock)
    first.get_token()
    second.get_token()
    return clock, first, second


def test_clients_starting_together_make_one_token_call(
    server: FakeEmmaServer, cache: MemoryCache, get: Callable[..., requests.Response]
) -> None:
    """Eight clients sharing a cache, starting at once on an empty cache: one token call."""
    auths = [auth_for(server, token_cache=cache) for _ in range(8)]
    barrier = threading.Barrier(len(auths))
    statuses: list[int] = []

    def start(auth: EmmaAuth) -> None:
        barrier.wait(WAIT)
        statuses.append(get(auth).status_code)

    threads = [threading.Thread(target=start, args=(auth,)) for auth in auths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert statuses == [200] * 8
    assert server.token_calls == 1
    assert len({auth.get_token().access_token for auth in auths}) == 1


def test_a_renewal_by_one_client_is_taken_by_the_others(
    server: FakeEmmaServer, cache: MemoryCache
) -> None:
    """When one client renews, another whose token is expiring takes the saved token."""
    clock, first, second = two_clients_with_tokens(server, cache)
    clock.advance(301)
    renewed = first.get_token()
    assert second.get_token() == renewed
    assert server.token_calls == 2


def test_rotation_across_clients_uses_the_newest_refresh_token(
    server: FakeEmmaServer, cache: MemoryCache, get: Callable[..., requests.Response]
) -> None:
    """A client never renews with a refresh token another client has already used."""
    clock, first, second = two_clients_with_tokens(server, cache)
    clock.advance(301)
    first.get_token()  # refreshes: the server revokes the shared refresh token
    server.expire_access_tokens()
    clock.advance(301)
    assert get(second).status_code == 200
    # second refreshed with the rotated refresh token from the cache: no refusal, no issue.
    assert (server.issue_calls, server.refresh_calls) == (1, 2)


def test_an_early_renewal_takes_a_fresher_cached_token(
    server: FakeEmmaServer, cache: MemoryCache
) -> None:
    """A background renewal that finds a fresher token in the cache makes no call."""
    clock, first, second = two_clients_with_tokens(server, cache)
    clock.advance(250)  # stale for both
    first.get_token()
    join_renewal(first)
    assert server.token_calls == 2
    second.get_token()
    join_renewal(second)
    assert server.token_calls == 2
    assert second.get_token() == first.get_token()


def test_a_rejected_token_in_the_cache_is_not_taken_again(
    server: FakeEmmaServer, cache: MemoryCache, get: Callable[..., requests.Response]
) -> None:
    """After a 401, the cached copy of the rejected token is not adopted: a renewal follows."""
    auth = auth_for(server, token_cache=cache)
    assert get(auth).status_code == 200
    server.revoke()
    assert get(auth).status_code == 200
    assert server.issue_calls == 2
    assert cache.entries and cache.token(server) == auth.get_token()


def test_two_clients_are_kept_apart(
    server: FakeEmmaServer, cache: MemoryCache, get: Callable[..., requests.Response]
) -> None:
    """Different credentials on one cache use different entries and never each other's token."""
    with FakeEmmaServer(client_id="other-id") as other:
        mine = auth_for(server, token_cache=cache)
        theirs = auth_for(other, token_cache=cache)
        assert get(mine).status_code == 200
        assert get(theirs, at=other).status_code == 200
        assert len(cache.entries) == 2
        assert mine.get_token() != theirs.get_token()
        assert (server.token_calls, other.token_calls) == (1, 1)


def test_the_cache_key_holds_no_secret(server: FakeEmmaServer, cache: MemoryCache) -> None:
    """The key under which a token is saved does not contain the client secret."""
    auth_for(server, token_cache=cache).get_token()
    (key,) = cache.entries
    assert server.client_secret is not None
    assert server.client_secret not in key and server.client_id not in key


def test_a_cache_outage_never_fails_a_request(
    server: FakeEmmaServer, caplog: pytest.LogCaptureFixture, get: Callable[..., requests.Response]
) -> None:
    """With the store down, requests succeed on in-memory tokens and a WARNING says why."""
    auth = auth_for(server, token_cache=BrokenCache())
    with caplog.at_level(logging.WARNING, logger="requests_emma"):
        assert get(auth).status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "token cache" in warnings[0] and "ConnectionRefusedError" in warnings[0]
    assert server.token_calls == 1


def test_a_load_failure_still_renews_and_saves(
    server: FakeEmmaServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A load that fails is logged; the auth renews in memory."""

    class LoadFails(MemoryCache):
        def load(self, key: str) -> bytes | None:
            raise ConnectionError("read timed out")

    cache = LoadFails()
    auth = auth_for(server, token_cache=cache)
    with caplog.at_level(logging.WARNING, logger="requests_emma"):
        token = auth.get_token()
    assert cache.saves == 1 and cache.token(server) == token
    assert any("load failed" in r.getMessage() for r in caplog.records)


def test_an_object_that_is_not_a_cache_is_refused_at_construction(
    server: FakeEmmaServer,
) -> None:
    """A token_cache without lock() is a ValueError naming what is missing, before any call."""

    class NoLock:
        def load(self, key: str) -> None:
            return None

        def save(self, key: str, entry: bytes, ttl: float) -> None:
            pass

    with pytest.raises(ValueError, match=r"no lock\(\) method"):
        auth_for(server, token_cache=NoLock())  # type: ignore[arg-type]
    assert server.token_calls == 0
