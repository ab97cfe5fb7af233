"""What RedisTokenCache does beyond the cache contract (test_cache_contract.py): TTLs, clients
and URLs, a password never shown, pickling, a Redis that stops or stops answering. A real
redis-server."""

from __future__ import annotations

import logging
import pickle
import secrets
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import redis
import requests
from redis_server import RedisServer

from requests_emma import EmmaAuth, RedisTokenCache
from requests_emma._caches.protocol import cache_key
from requests_emma.testing import FakeEmmaServer

KEY = cache_key("https://api.emma.ms/external", "client-id", "secret")
ENTRY = b"\x01sealed entry bytes\x00\xff, opaque to the cache"


@pytest.fixture
def cache(redis_server: RedisServer) -> RedisTokenCache:
    """A cache with a prefix of its own, so tests sharing the server stay apart."""
    return RedisTokenCache.from_url(redis_server.url, prefix=f"test-{secrets.token_hex(4)}:")


def test_an_entry_expires_with_its_ttl(cache: RedisTokenCache) -> None:
    """The Redis TTL is the ttl saved with the entry."""
    cache.save(KEY, ENTRY, 1000.0)
    ttl = cache.client.pttl(cache._name(KEY)) / 1000
    assert 990 < ttl <= 1000


def test_a_client_that_decodes_responses_works(redis_server: RedisServer) -> None:
    """A redis.Redis made with decode_responses=True reads entries too."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    cache = RedisTokenCache(client, prefix=f"test-{secrets.token_hex(4)}:")
    cache.save(KEY, ENTRY, 60.0)
    assert cache.load(KEY) == ENTRY


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
    """Without redis-py and valkey-py, import requests_emma works and RedisTokenCache names
    the extras."""
    code = (
        "import sys; sys.modules['redis'] = sys.modules['valkey'] = None\n"
        "import requests_emma\n"
        "try:\n"
        "    requests_emma.RedisTokenCache.from_url('redis://127.0.0.1:6390/0')\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'requests-emma[redis]' (or 'requests-emma[valkey]')" in result.stdout


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


def test_the_pickle_of_a_cache_from_a_url_connects_with_a_client_of_its_own(
    cache: RedisTokenCache,
) -> None:
    """A cache made by from_url comes out of pickle with a new client, not the original's
    (that it reads the same entries is the cache contract's)."""
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.client is not cache.client
    assert copy.client.ping()


def test_a_cache_around_your_own_client_says_why_it_cannot_be_pickled() -> None:
    """Pickling a cache built on a given client is a TypeError pointing at from_url."""
    with pytest.raises(TypeError, match=r"RedisTokenCache.from_url"):
        pickle.dumps(RedisTokenCache(redis.Redis(host="127.0.0.1", port=6390)))


def test_the_pickle_of_an_emma_auth_with_a_redis_cache_repr_has_no_password() -> None:
    """The URL kept for pickling is masked: the cache's attributes show no password."""
    cache = RedisTokenCache.from_url("redis://:hunter2-password@127.0.0.1:6390/0")
    assert "hunter2" not in repr(vars(cache))


def test_emma_auth_carries_on_with_a_warning_when_redis_is_down(
    own_redis_server: RedisServer,
    server: FakeEmmaServer,
    caplog: pytest.LogCaptureFixture,
    get: Callable[..., requests.Response],
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
        response = get(auth)
    assert response.status_code == 200 and server.token_calls == 1
    warnings = [
        record.getMessage() for record in caplog.records if record.levelno == logging.WARNING
    ]
    assert warnings and all("unavailable" in message for message in warnings)
    token = auth.get_token()
    for message in warnings:
        assert "hunter2" not in message and token.access_token not in message
        assert server.client_secret not in message


class _LockNeverReleased:
    """A RedisTokenCache whose locks are never released (a release refused, a blip): the lock
    lives its whole TTL."""

    def __init__(self, cache: RedisTokenCache) -> None:
        self.cache = cache

    def __repr__(self) -> str:
        return repr(self.cache)

    def load(self, key: str) -> bytes | None:
        return self.cache.load(key)

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        self.cache.save(key, entry, ttl)

    def lock(self, key: str, timeout: float) -> object:
        lock = self.cache.lock(key, timeout)

        class Held:
            def __enter__(self) -> None:
                lock.__enter__()

            def __exit__(self, *exc: object) -> None:
                pass  # never released

        return Held()


def test_waiters_take_a_saved_token_without_waiting_for_the_lock(
    cache: RedisTokenCache, server: FakeEmmaServer
) -> None:
    """A holder whose lock is never released strands nobody: another client waiting for the
    lock takes the token it saved within a second or so, with no token call of its own."""
    stranded = _LockNeverReleased(cache)
    first, second = (
        EmmaAuth(
            server.client_id,
            server.client_secret,
            base_url=server.base_url,
            token_cache=stranded,  # type: ignore[arg-type]
        )
        for _ in range(2)
    )
    token = first.get_token()  # saves the token and keeps the lock (35 s TTL)
    started = time.monotonic()
    assert second.get_token() == token
    assert time.monotonic() - started < 5.0  # slices of 0.5 s, not the lock's TTL
    assert server.token_calls == 1
