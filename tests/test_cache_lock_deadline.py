"""The renewal's deadline covers the wait for a shared cache's lock: a lock another process
keeps ends the renewal within the deadline, with a typed error and no token call."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cache_stores import Store, file_store, lock_held_elsewhere
from fakes import FakeClock, auth_for, join_renewal, use_clock

from requests_emma import RetryPolicy, TokenCache, TokenRequestError
from requests_emma._caches.protocol import cache_key
from requests_emma.testing import FakeEmmaServer

DEADLINE = 1.0
MARGIN = 10.0  # wide: the machine is shared; the cache's own lock timeout is 45 s


@pytest.fixture
def locked_cache(shared_store: Store, server: FakeEmmaServer) -> Iterator[TokenCache]:
    """A real cache whose lock for the server's client is held by someone else: a child
    process holding the file lock, or a Redis lock taken by the test."""
    key = cache_key(server.base_url, server.client_id, server.client_secret)
    with lock_held_elsewhere(shared_store, key):
        yield shared_store.cache


def test_a_lock_held_elsewhere_ends_the_renewal_within_the_deadline(
    server: FakeEmmaServer, locked_cache: TokenCache
) -> None:
    """With RetryPolicy(deadline=1) and the cache lock held by another for good, the first
    request gives up within the deadline (not the cache's 45 s lock timeout), typed, saying
    so, and without a token call."""
    auth = auth_for(server, token_cache=locked_cache, retry=RetryPolicy(deadline=DEADLINE))
    started = time.monotonic()
    with pytest.raises(TokenRequestError, match="another process held the token cache lock"):
        auth.get_token()
    assert time.monotonic() - started < DEADLINE + MARGIN
    assert server.token_calls == 0


def test_a_valid_token_keeps_serving_while_the_lock_is_held_elsewhere(
    token_directory: Path, server: FakeEmmaServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An early renewal that cannot get the lock within the deadline gives up with a
    warning; the current token keeps serving, and no token call is made."""
    store = file_store(token_directory)
    clock = FakeClock()
    auth = auth_for(server, token_cache=store.cache, retry=RetryPolicy(deadline=DEADLINE))
    use_clock(auth, clock)
    token = auth.get_token()
    key = cache_key(server.base_url, server.client_id, server.client_secret)
    with lock_held_elsewhere(store, key):
        clock.advance(250.0)  # stale: an early renewal starts, and waits for the lock
        with caplog.at_level(logging.WARNING, logger="requests_emma"):
            assert auth.get_token() == token
            join_renewal(auth)
        assert auth.get_token() == token
    assert server.token_calls == 1
    assert any("token cache lock" in record.getMessage() for record in caplog.records)
