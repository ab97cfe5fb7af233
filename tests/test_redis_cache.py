"""RedisTokenCache against a real redis-server, with real processes."""

from __future__ import annotations

import base64
import logging
import os
import pickle
import secrets
import signal
import subprocess
import sys
import time

import cache_workers
import pytest
import redis
import requests
from cache_workers import CacheSpec
from redis_server import RedisServer
from test_file_cache import WAIT, _run_contenders, spawn

from requests_emma import EmmaAuth, RedisTokenCache
from requests_emma._caches.protocol import cache_key
from requests_emma.testing import FakeEmmaServer

KEY = cache_key("https://api.emma.ms/external", "client-id", "secret")


@pytest.fixture
def cache(redis_server: RedisServer) -> RedisTokenCache:
    """A cache with a prefix of its own, so tests sharing the server stay apart."""
    return RedisTokenCache.from_url(redis_server.url, prefix=f"test-{secrets.token_hex(4)}:")


ENTRY = b"\x01sealed entry bytes\x00\xff, opaque to the cache"


def test_saved_bytes_load_back(cache: RedisTokenCache) -> None:
    """save then load returns the same bytes, binary ones included."""
    cache.save(KEY, ENTRY, 60.0)
    assert cache.load(KEY) == ENTRY


def test_an_absent_entry_loads_as_none(cache: RedisTokenCache) -> None:
    """A key never saved loads as None."""
    assert cache.load(KEY) is None


def test_an_entry_expires_with_its_ttl(cache: RedisTokenCache) -> None:
    """The Redis TTL is the ttl saved with the entry."""
    cache.save(KEY, ENTRY, 1000.0)
    ttl = cache.client.pttl(cache.prefix + KEY) / 1000
    assert 990 < ttl <= 1000


def test_an_entry_of_no_more_use_is_not_stored(cache: RedisTokenCache) -> None:
    """Saving with ttl <= 0 removes the entry instead."""
    cache.save(KEY, ENTRY, 60.0)
    cache.save(KEY, ENTRY, 0.0)
    assert cache.client.exists(cache.prefix + KEY) == 0


def test_a_value_that_is_not_ours_loads_as_bytes_the_library_rejects(
    cache: RedisTokenCache,
) -> None:
    """A value written by someone else loads as bytes that open as nothing (here: not
    base64, so empty bytes); the next save replaces it."""
    cache.client.set(cache.prefix + KEY, b"{not base64 at all}")
    assert cache.load(KEY) == b""
    cache.save(KEY, ENTRY, 60.0)
    assert cache.load(KEY) == ENTRY


def test_a_client_that_decodes_responses_works(redis_server: RedisServer) -> None:
    """A redis.Redis made with decode_responses=True reads entries too."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    cache = RedisTokenCache(client, prefix=f"test-{secrets.token_hex(4)}:")
    cache.save(KEY, ENTRY, 60.0)
    assert cache.load(KEY) == ENTRY


def test_two_keys_never_see_each_others_entries(cache: RedisTokenCache) -> None:
    """Two clients, or one client id with a wrong secret, get separate entries."""
    base = "https://api.emma.ms/external"
    right = cache_key(base, "client-a", "secret-a")
    cache.save(right, b"entry of client a", 60.0)
    assert cache.load(cache_key(base, "client-b", "secret-b")) is None
    assert cache.load(cache_key(base, "client-a", "not-the-secret")) is None
    assert cache.load(right) == b"entry of client a"


def test_nothing_in_redis_holds_the_secret_or_a_token(
    redis_server: RedisServer, server: FakeEmmaServer
) -> None:
    """While an EmmaAuth holds the lock and after it saved, no Redis key or value (raw or
    base64-decoded) holds the client secret, the client id or either token."""
    cache = RedisTokenCache.from_url(redis_server.url, prefix=f"test-{secrets.token_hex(4)}:")
    auth = EmmaAuth(
        server.client_id, server.client_secret, base_url=server.base_url, token_cache=cache
    )
    token = auth.get_token()
    assert token.refresh_token is not None and server.token_calls == 1
    key = cache_key(server.base_url, server.client_id, server.client_secret)
    with cache.lock(key):
        names = cache.client.keys(cache.prefix + "*")
        assert len(names) == 2  # the entry and the lock
    secrets_ = [server.client_secret, server.client_id, token.access_token, token.refresh_token]
    for name in names:
        value = cache.client.get(name) or b""
        for text in (name, value, base64.b64decode(value) if name.endswith(key.encode()) else b""):
            for secret in secrets_:
                assert secret.encode() not in text


def test_repr_shows_the_location_without_password() -> None:
    """repr of a cache from a URL with a password shows host, port and db only."""
    cache = RedisTokenCache.from_url("redis://user:hunter2-password@127.0.0.1:6390/2")
    assert repr(cache) == "RedisTokenCache(redis://127.0.0.1:6390/2, prefix='requests-emma:token:')"
    client_cache = RedisTokenCache(redis.Redis(host="127.0.0.1", port=6391, password="hunter2"))
    assert "hunter2" not in repr(client_cache) and "127.0.0.1:6391" in repr(client_cache)


def test_a_bad_url_is_a_clear_error_without_the_url() -> None:
    """A URL of another scheme is a ValueError that does not repeat it (it may hold a password)."""
    with pytest.raises(ValueError, match="not a Redis URL") as raised:
        RedisTokenCache.from_url("http://user:hunter2-password@127.0.0.1/0")
    assert "hunter2" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__context__ is None


def test_a_client_without_the_needed_methods_is_refused() -> None:
    """Something that is not a Redis client is a ValueError naming what it lacks."""
    with pytest.raises(ValueError, match="client has no get, set, lock method"):
        RedisTokenCache(object())  # type: ignore[arg-type]


def test_bad_timeouts_are_refused() -> None:
    """lock_timeout, blocking_timeout and socket_timeout must be positive seconds."""
    for name in ("lock_timeout", "blocking_timeout", "socket_timeout"):
        with pytest.raises(ValueError, match=name):
            RedisTokenCache.from_url("redis://127.0.0.1:6390/0", **{name: 0})


def test_without_redis_py_the_error_names_the_extra() -> None:
    """Without redis-py, import requests_emma works and RedisTokenCache names the extra."""
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import requests_emma\n"
        "try:\n"
        "    requests_emma.RedisTokenCache.from_url('redis://127.0.0.1:6390/0')\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'requests-emma[redis]'" in result.stdout


def test_the_lock_excludes_a_second_holder(cache: RedisTokenCache) -> None:
    """While one holder has the lock, another gives up after blocking_timeout with LockError."""
    other = RedisTokenCache(cache.client, prefix=cache.prefix, blocking_timeout=0.3)
    with cache.lock(KEY), pytest.raises(redis.exceptions.LockError), other.lock(KEY):
        pass
    with other.lock(KEY):  # released: free again
        pass


def test_a_lock_wait_is_bounded_by_the_timeout_asked_and_by_blocking_timeout(
    cache: RedisTokenCache,
) -> None:
    """lock(key, timeout) waits the shorter of timeout and blocking_timeout, then raises a
    TimeoutError (that is also redis-py's LockError)."""
    short = RedisTokenCache(cache.client, prefix=cache.prefix, blocking_timeout=0.2)
    with cache.lock(KEY):
        for waiter, timeout in ((cache, 0.2), (short, 60.0)):
            started = time.monotonic()
            with pytest.raises(TimeoutError) as raised, waiter.lock(KEY, timeout):
                pass
            assert isinstance(raised.value, redis.exceptions.LockError)
            assert time.monotonic() - started < 10.0  # wide margin; 45-60 s if unbounded


@pytest.mark.slow
def test_processes_contending_on_the_lock_renew_once(redis_server: RedisServer) -> None:
    """8 processes doing check-then-renew under the Redis lock make one token call in total."""
    with FakeEmmaServer() as server:
        server.token_delay = 0.3  # a renewal that takes a while: the window for a race
        credentials = (server.base_url, server.client_id, server.client_secret)
        outcomes = _run_contenders(
            CacheSpec("redis", redis_server.url, prefix=f"test-{secrets.token_hex(4)}:"),
            credentials,
            8,
        )
        assert server.token_calls == 1
    assert sorted(kind for kind, _ in outcomes) == ["adopted"] * 7 + ["renewed"]
    assert len({token for _, token in outcomes}) == 1


@pytest.mark.slow
def test_a_lock_holder_killed_with_sigkill_blocks_others_for_the_lock_timeout_at_most(
    redis_server: RedisServer,
) -> None:
    """A dead holder's Redis lock expires after lock_timeout; a waiter then gets it."""
    lock_timeout, prefix = 2.0, f"test-{secrets.token_hex(4)}:"
    held = spawn.Event()
    holder = spawn.Process(
        target=cache_workers.hold_lock,
        args=(CacheSpec("redis", redis_server.url, lock_timeout, prefix), KEY, held),
    )
    holder.start()
    try:
        assert held.wait(timeout=WAIT)
        held_since = time.monotonic()
        busy = RedisTokenCache.from_url(redis_server.url, prefix=prefix, blocking_timeout=0.2)
        with pytest.raises(redis.exceptions.LockError), busy.lock(KEY):
            pass  # held for now
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(timeout=WAIT)
        assert holder.exitcode == -signal.SIGKILL
        waiter = RedisTokenCache.from_url(redis_server.url, prefix=prefix, blocking_timeout=WAIT)
        with waiter.lock(KEY):
            waited = time.monotonic() - held_since
        assert waited < lock_timeout + 5.0  # wide margin: the machines are noisy
    finally:
        holder.kill()
        holder.join(timeout=WAIT)


def test_redis_stopped_mid_run_raises_a_connection_error_quickly(
    own_redis_server: RedisServer,
) -> None:
    """Once Redis is gone, load, save and lock raise a redis error within about a second."""
    cache = RedisTokenCache.from_url(own_redis_server.url)
    cache.save(KEY, ENTRY, 60.0)
    assert cache.load(KEY) is not None
    own_redis_server.stop()
    for operation in (
        lambda: cache.load(KEY),
        lambda: cache.save(KEY, ENTRY, 60.0),
        lambda: cache.lock(KEY).__enter__(),
    ):
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError):
            operation()
        assert time.monotonic() - started < 5.0


@pytest.mark.slow
def test_redis_that_stops_answering_raises_a_timeout_error_quickly(
    own_redis_server: RedisServer,
) -> None:
    """A Redis that accepts but never answers (SIGSTOP) raises TimeoutError within the
    short socket timeouts, not redis-py's defaults."""
    cache = RedisTokenCache.from_url(own_redis_server.url, socket_timeout=0.5)
    cache.save(KEY, ENTRY, 60.0)
    own_redis_server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            cache.load(KEY)
        assert time.monotonic() - started < 5.0  # two 0.5 s attempts, wide margin
    finally:
        own_redis_server.resume()


def test_a_cache_from_a_url_pickles_and_works_in_the_copy(redis_server: RedisServer) -> None:
    """A cache made by from_url survives pickle (as EmmaAuth pickles) with a new client."""
    cache = RedisTokenCache.from_url(redis_server.url, prefix=f"test-{secrets.token_hex(4)}:")
    cache.save(KEY, ENTRY, 60.0)
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.client is not cache.client
    assert (copy.prefix, copy.load(KEY)) == (cache.prefix, ENTRY)


def test_a_cache_around_your_own_client_says_why_it_cannot_be_pickled() -> None:
    """Pickling a cache built on a given client is a TypeError pointing at from_url."""
    with pytest.raises(TypeError, match=r"RedisTokenCache.from_url"):
        pickle.dumps(RedisTokenCache(redis.Redis(host="127.0.0.1", port=6390)))


def test_the_pickle_of_an_emma_auth_with_a_redis_cache_repr_has_no_password() -> None:
    """The URL kept for pickling is masked: the cache's attributes show no password."""
    cache = RedisTokenCache.from_url("redis://:hunter2-password@127.0.0.1:6390/0")
    assert "hunter2" not in repr(vars(cache))


def test_emma_auth_carries_on_with_a_warning_when_redis_is_down(
    own_redis_server: RedisServer, server: FakeEmmaServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An EmmaAuth whose Redis is gone gets its token anyway; the WARNING names the cache
    without its password and holds no token."""
    url = own_redis_server.url.replace("redis://", "redis://:hunter2-password@")
    own_redis_server.stop()
    auth = EmmaAuth(
        server.client_id,
        server.client_secret,
        base_url=server.base_url,
        token_cache=RedisTokenCache.from_url(url),
    )
    with caplog.at_level(logging.WARNING, logger="requests_emma"):
        response = requests.get(server.base_url + "/v1/locations", auth=auth, timeout=30)
    assert response.status_code == 200 and server.token_calls == 1
    warnings = [
        record.getMessage() for record in caplog.records if record.levelno == logging.WARNING
    ]
    assert warnings and all("unavailable" in message for message in warnings)
    token = auth.get_token()
    for message in warnings:
        assert "hunter2" not in message and token.access_token not in message
        assert server.client_secret not in message
