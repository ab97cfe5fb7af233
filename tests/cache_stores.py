"""The token caches the tests run against, and the parent's side of the tests that share one
across processes (``cache_workers.py`` is the child's side).

``store`` is one cache of each kind the contract is run over: a ``MemoryCache`` (the
protocol's smallest implementation, as a user might write one), a ``FileTokenCache`` on a
private directory, and a ``RedisTokenCache`` on a fresh prefix of the session's
redis-server. ``shared_store`` is the two that cross processes (file and Redis), with the
``CacheSpec`` a child builds its own copy from. Each ``Store`` also lets a test look behind
the cache, as someone with access to the directory or the Redis server could: read and write
what is stored there, list every name, take the lock from elsewhere. ``conftest.py`` makes
the fixtures available to every test module.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import multiprocessing
import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cache_workers
import filelock
import pytest
import redis
from cache_workers import CacheSpec
from redis_server import RedisServer

from requests_emma import FileTokenCache, RedisTokenCache, Token, TokenCache
from requests_emma._caches.protocol import LOCK_TIMEOUT, cache_key
from requests_emma._core.cache_entry import Sealer
from requests_emma.testing import FakeEmmaServer

PROCESS_WAIT = 60.0  # seconds to wait for a child process: spawning one imports the library
spawn = multiprocessing.get_context("spawn")


class MemoryCache:
    """A token cache in a dict, with a lock per key: the protocol and nothing more, in one
    process. ``sharing()`` gives another handle on the same entries and locks, as another
    process's cache object on one directory or one Redis is."""

    def __init__(self, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.lock_timeout = lock_timeout
        self.entries: dict[str, bytes] = {}
        self.saves = 0
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def sharing(self, lock_timeout: float = LOCK_TIMEOUT) -> MemoryCache:
        other = MemoryCache(lock_timeout)
        other.entries, other._locks, other._locks_lock = (
            self.entries,
            self._locks,
            self._locks_lock,
        )
        return other

    def load(self, key: str) -> bytes | None:
        return self.entries.get(key)

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        self.saves += 1
        if ttl <= 0:
            self.entries.pop(key, None)
        else:
            self.entries[key] = entry

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = LOCK_TIMEOUT) -> Iterator[object]:
        with self._locks_lock:
            lock = self._locks.setdefault(key, threading.Lock())
        wait = max(0.0, min(timeout, self.lock_timeout))
        if not lock.acquire(timeout=wait):
            raise TimeoutError(f"lock not acquired within {wait} s")
        try:
            yield lock
        finally:
            lock.release()

    def token(self, server: FakeEmmaServer) -> Token | None:
        """The token in the entry saved for ``server``'s client, opened with its secret."""
        key = cache_key(server.base_url, server.client_id, server.client_secret)
        sealer = Sealer(server.base_url, server.client_id, server.client_secret)
        entry = sealer.open(key, self.entries[key])
        return None if entry is None else entry.token


@dataclasses.dataclass
class Store:
    """One cache of one kind, with a look behind it.

    ``other(lock_timeout)`` is another handle on the same store (another process's cache
    object), whose lock waits at most ``lock_timeout`` seconds. ``plant`` makes ``load``
    return the bytes given, written behind the cache's back; ``write_raw`` and ``read_raw``
    are the bytes as the store holds them (Redis holds base64). ``everything()`` is every
    name the store holds with what it holds there (for Redis, the entry decoded too).
    ``lock_timeout_error`` is the store's own ``TimeoutError``; ``spec`` how a child process
    builds the same cache (``None``: in memory, it does not cross processes).
    """

    kind: str
    cache: TokenCache
    other: Callable[..., TokenCache]
    plant: Callable[[str, bytes], None]
    write_raw: Callable[[str, bytes], None]
    read_raw: Callable[[str], bytes | None]
    everything: Callable[[], list[tuple[str, bytes]]]
    lock_timeout_error: type[Exception]
    spec: CacheSpec | None
    settings: Callable[[Any], tuple[object, ...]] = lambda of: ()


def memory_store() -> Store:
    cache = MemoryCache()
    return Store(
        kind="memory",
        cache=cache,
        other=cache.sharing,
        plant=cache.entries.__setitem__,
        write_raw=cache.entries.__setitem__,
        read_raw=cache.entries.get,
        everything=lambda: list(cache.entries.items()),
        lock_timeout_error=TimeoutError,
        spec=None,
    )


def file_store(directory: Path) -> Store:
    def write(key: str, data: bytes) -> None:
        (directory / f"{key}.json").write_bytes(data)

    def read(key: str) -> bytes | None:
        path = directory / f"{key}.json"
        return path.read_bytes() if path.exists() else None

    def other(lock_timeout: float = LOCK_TIMEOUT) -> FileTokenCache:
        return FileTokenCache(directory, lock_timeout=lock_timeout)

    return Store(
        kind="file",
        cache=FileTokenCache(directory),
        other=other,
        plant=write,
        write_raw=write,
        read_raw=read,
        everything=lambda: [(path.name, path.read_bytes()) for path in directory.iterdir()],
        lock_timeout_error=filelock.Timeout,
        spec=CacheSpec("file", str(directory)),
        settings=lambda of: (of.path, of.lock_timeout),
    )


def redis_store(url: str) -> Store:
    prefix = f"test-{secrets.token_hex(4)}:"
    cache = RedisTokenCache.from_url(url, prefix=prefix)

    def other(lock_timeout: float = LOCK_TIMEOUT) -> RedisTokenCache:
        return RedisTokenCache.from_url(url, prefix=prefix, blocking_timeout=lock_timeout)

    def everything() -> list[tuple[str, bytes]]:
        found = []
        for name in cache.client.keys(prefix + "*"):
            value = cache.client.get(name) or b""
            found.append((name.decode(), value))
            if not name.endswith(b":lock"):
                found.append((name.decode(), base64.b64decode(value)))
        return found

    return Store(
        kind="redis",
        cache=cache,
        other=other,
        plant=lambda key, data: cache.save(key, data, 600.0),
        write_raw=lambda key, data: cache.client.set(cache._name(key), data),
        read_raw=lambda key: cache.client.get(cache._name(key)),
        everything=everything,
        lock_timeout_error=redis.exceptions.LockError,
        spec=CacheSpec("redis", url, prefix=prefix),
        settings=lambda of: (of.prefix, of.lock_timeout, of.blocking_timeout),
    )


def _store_of(kind: str, request: pytest.FixtureRequest, directory: Path) -> Store:
    if kind == "memory":
        return memory_store()
    if kind == "file":
        return file_store(directory)
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    return redis_store(redis_server.url)


@pytest.fixture
def token_directory(tmp_path: Path) -> Path:
    """A private (0700) directory for a FileTokenCache."""
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o700)
    return directory


@pytest.fixture(params=["memory", "file", "redis"])
def store(request: pytest.FixtureRequest, token_directory: Path) -> Store:
    """A cache in memory, on a private directory, or on a real redis-server."""
    return _store_of(request.param, request, token_directory)


@pytest.fixture(params=["file", "redis"])
def shared_store(request: pytest.FixtureRequest, token_directory: Path) -> Store:
    """A cache that crosses processes: a private directory, or a real redis-server."""
    return _store_of(request.param, request, token_directory)


@pytest.fixture
def shared_cache(shared_store: Store) -> TokenCache:
    """A FileTokenCache on a private directory, or a RedisTokenCache on a real redis-server."""
    return shared_store.cache


class LockHolder:
    """A child process that takes a cache's lock for ``key`` and keeps it until killed."""

    def __init__(self, spec: CacheSpec, key: str) -> None:
        held = spawn.Event()
        self.process = spawn.Process(target=cache_workers.hold_lock, args=(spec, key, held))
        self.process.start()
        if not held.wait(timeout=PROCESS_WAIT):
            self.close()
            raise AssertionError("the child never took the lock")

    def kill(self) -> None:
        """SIGKILL: the child gets no chance to release the lock."""
        os.kill(self.process.pid, signal.SIGKILL)  # type: ignore[arg-type]
        self.process.join(timeout=PROCESS_WAIT)
        assert self.process.exitcode == -signal.SIGKILL

    def close(self) -> None:
        self.process.kill()
        self.process.join(timeout=PROCESS_WAIT)

    def __enter__(self) -> LockHolder:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def lock_held_elsewhere(store: Store, key: str) -> Iterator[None]:
    """The store's lock for ``key``, held by someone else for the length of the block: a
    child process for a file lock (the OS lock is per process), the test itself otherwise."""
    if store.kind == "file":
        assert store.spec is not None
        with LockHolder(store.spec, key):
            yield
        return
    with store.other().lock(key, PROCESS_WAIT):
        yield


def run_contenders(
    spec: CacheSpec, credentials: tuple[str, str, str], count: int
) -> list[tuple[str, str]]:
    """``count`` processes, released together, each doing check-then-renew under the lock;
    what each reports: ``("renewed" | "adopted", access token)``."""
    key = cache_key(*credentials)
    start, results = spawn.Barrier(count), spawn.Queue()
    workers = [
        spawn.Process(
            target=cache_workers.check_then_renew, args=(spec, key, credentials, start, results)
        )
        for _ in range(count)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=PROCESS_WAIT) for _ in workers]
    for worker in workers:
        worker.join(timeout=PROCESS_WAIT)
        assert worker.exitcode == 0
    return outcomes
