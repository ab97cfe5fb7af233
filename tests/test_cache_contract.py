"""The token cache contract (``requests_emma._caches.protocol``), run over every kind of cache:
in memory, ``FileTokenCache`` on a real directory, ``RedisTokenCache`` on a real redis-server;
and, for the two that cross processes, with real processes. What only one kind of cache does
(file permissions, Redis TTLs and outages) is tested in test_file_cache.py and
test_redis_cache.py."""

from __future__ import annotations

import dataclasses
import pickle
import time

import pytest
from cache_stores import PROCESS_WAIT, LockHolder, Store, run_contenders

from requests_emma import EmmaAuth
from requests_emma._caches.protocol import cache_key
from requests_emma.testing import FakeEmmaServer

KEY = cache_key("https://api.emma.ms/external", "client-id", "secret")
ENTRY = b"\x01sealed entry bytes\x00\xff, opaque to the cache"


def test_saved_bytes_load_back(store: Store) -> None:
    """save then load returns the same bytes, binary ones included."""
    store.cache.save(KEY, ENTRY, 60.0)
    assert store.cache.load(KEY) == ENTRY


def test_an_absent_entry_loads_as_none(store: Store) -> None:
    """A key never saved loads as None."""
    assert store.cache.load(KEY) is None


def test_a_save_with_nothing_of_use_leaves_no_entry(store: Store) -> None:
    """save with ttl <= 0 (nothing in the entry of use) removes what was stored instead of
    storing it; with nothing to remove it is no error."""
    store.cache.save(KEY, ENTRY, 60.0)
    store.cache.save(KEY, b"spent", 0.0)
    assert store.cache.load(KEY) is None and store.read_raw(KEY) is None
    store.cache.save(KEY, b"spent", -1.0)
    assert store.cache.load(KEY) is None and store.read_raw(KEY) is None


def test_bytes_another_writer_stored_load_as_bytes_and_a_save_replaces_them(store: Store) -> None:
    """What someone else wrote under the key loads as bytes, as they are (the library judges
    them), never as an error; the next save replaces them. Redis holds base64: a value that
    is not base64 loads as empty bytes, which open as nothing."""
    foreign = b"{not json, nor base64}"
    store.write_raw(KEY, foreign)
    assert store.cache.load(KEY) == (b"" if store.kind == "redis" else foreign)
    store.cache.save(KEY, ENTRY, 60.0)
    assert store.cache.load(KEY) == ENTRY


def test_two_keys_never_see_each_others_entries(store: Store) -> None:
    """Two clients, or one client id with a wrong secret, get separate entries."""
    base = "https://api.emma.ms/external"
    right = cache_key(base, "client-a", "secret-a")
    other_client = cache_key(base, "client-b", "secret-b")
    wrong_secret = cache_key(base, "client-a", "not-the-secret")
    store.cache.save(right, b"entry of client a", 60.0)
    assert store.cache.load(other_client) is None
    assert store.cache.load(wrong_secret) is None
    store.cache.save(other_client, b"entry of client b", 60.0)
    assert store.cache.load(right) == b"entry of client a"


def test_nothing_stored_holds_the_secret_or_a_token(store: Store, server: FakeEmmaServer) -> None:
    """While an EmmaAuth that renewed through the cache holds the lock, no name the store
    holds, nor anything stored under it (Redis's base64 decoded too), holds the client
    secret, the client id, the access token or the refresh token."""
    auth = EmmaAuth(
        server.client_id, server.client_secret, base_url=server.base_url, token_cache=store.cache
    )
    token = auth.get_token()
    assert token.refresh_token is not None and server.token_calls == 1
    key = cache_key(server.base_url, server.client_id, server.client_secret)
    with store.cache.lock(key, PROCESS_WAIT):
        found = store.everything()
    names = {name for name, _ in found}
    assert len(names) == (1 if store.kind == "memory" else 2)  # the entry, and a stored lock
    assert any(name.endswith((key, f"{{{key}}}", f"{key}.json")) for name in names)  # the entry
    secrets = [server.client_secret, server.client_id, token.access_token, token.refresh_token]
    for name, content in found:
        for secret in secrets:
            assert secret not in name and secret.encode() not in content


def test_the_lock_excludes_a_second_holder(store: Store) -> None:
    """While one holder has the lock, another gives up after its wait with the store's
    TimeoutError; once released, the lock is free again."""
    other = store.other(0.2)
    with store.cache.lock(KEY), pytest.raises(store.lock_timeout_error), other.lock(KEY, 60.0):
        pass
    with other.lock(KEY, 60.0):  # released: free again
        pass


def test_a_lock_wait_is_bounded_by_the_timeout_asked_and_by_the_caches_own(store: Store) -> None:
    """lock(key, timeout) waits the shorter of timeout and the cache's own bound (lock_timeout;
    Redis: blocking_timeout), then raises a TimeoutError (the store's own: filelock.Timeout,
    redis-py's LockError)."""
    with store.cache.lock(KEY):
        for waiter, timeout in ((store.other(), 0.2), (store.other(0.2), 60.0)):
            started = time.monotonic()
            with pytest.raises(TimeoutError) as raised, waiter.lock(KEY, timeout):
                pass
            assert isinstance(raised.value, store.lock_timeout_error)
            assert time.monotonic() - started < 10.0  # wide margin; 45-60 s if unbounded


# -- across processes ------------------------------------------------------------------------


def test_the_cache_pickles_and_the_copy_reads_the_same_entries(shared_store: Store) -> None:
    """A cache survives pickle (as EmmaAuth pickles) with its place and settings, and the
    copy reads the same entries."""
    cache = shared_store.cache
    cache.save(KEY, ENTRY, 60.0)
    copy = pickle.loads(pickle.dumps(cache))
    assert (repr(copy), shared_store.settings(copy)) == (repr(cache), shared_store.settings(cache))
    assert copy.load(KEY) == ENTRY


@pytest.mark.slow
def test_processes_contending_on_the_lock_renew_once(
    shared_store: Store, server: FakeEmmaServer
) -> None:
    """8 processes doing check-then-renew under the cache's lock make one token call in total."""
    assert shared_store.spec is not None
    server.token_delay = 0.3  # a renewal that takes a while: the window for a race
    credentials = (server.base_url, server.client_id, server.client_secret)
    outcomes = run_contenders(shared_store.spec, credentials, 8)
    assert server.token_calls == 1
    assert sorted(kind for kind, _ in outcomes) == ["adopted"] * 7 + ["renewed"]
    assert len({token for _, token in outcomes}) == 1


#: How long a holder killed with SIGKILL keeps the lock, at most: the kernel releases a file
#: lock with its process, at once; a Redis lock expires after its lock_timeout (2 s here).
#: Both with wide margins: the machines are noisy.
DEAD_HOLDER_BOUND = {"file": 10.0, "redis": 2.0 + 5.0}


@pytest.mark.slow
def test_a_lock_holder_killed_with_sigkill_keeps_the_lock_no_longer_than_the_store_allows(
    shared_store: Store,
) -> None:
    """A process holding the lock is killed with SIGKILL: a waiter gets the lock at once from
    a file cache, and within the lock_timeout from Redis."""
    assert shared_store.spec is not None
    spec = dataclasses.replace(shared_store.spec, lock_timeout=2.0)
    with LockHolder(spec, KEY) as holder:
        held_since = time.monotonic()
        with pytest.raises(shared_store.lock_timeout_error), shared_store.other(0.2).lock(KEY):
            pass  # held for now
        holder.kill()
        with shared_store.other(PROCESS_WAIT).lock(KEY, PROCESS_WAIT):
            waited = time.monotonic() - held_since
    assert waited < DEAD_HOLDER_BOUND[shared_store.kind]
