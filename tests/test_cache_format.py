"""The token cache protocol: keys, and the check of an object passed as a cache (what every
cache does: test_cache_contract.py; the entry format: test_entry.py)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from requests_emma._caches.protocol import cache_key, check_token_cache

BASE = "https://api.emma.ms/external"
SECRET = "s3cret-value-never-stored"


def test_cache_key_is_a_fingerprint_without_the_secret() -> None:
    """The key is 64 hex digits and contains neither the secret nor the client id."""
    key = cache_key(BASE, "client-id", SECRET)
    assert len(key) == 64 and set(key) <= set("0123456789abcdef")
    assert SECRET not in key and "client-id" not in key


def test_cache_key_is_stable_across_processes() -> None:
    """Another interpreter computes the same key for the same inputs."""
    code = (
        "from requests_emma._caches.protocol import cache_key;"
        f"print(cache_key({BASE!r}, 'client-id', {SECRET!r}))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert other.stdout.strip() == cache_key(BASE, "client-id", SECRET)


def test_cache_key_separates_clients_secrets_and_urls() -> None:
    """A different client id, a wrong secret or another base URL gives another key."""
    keys = {
        cache_key(BASE, "client-id", SECRET),
        cache_key(BASE, "other-client", SECRET),
        cache_key(BASE, "client-id", SECRET + "x"),
        cache_key("https://staging.example/external", "client-id", SECRET),
        cache_key(BASE, "client-i", "d" + SECRET),  # no ambiguity where the parts meet
    }
    assert len(keys) == 5


def test_cache_key_ignores_a_trailing_slash() -> None:
    """The base URL with and without a trailing slash gives one key."""
    assert cache_key(BASE + "/", "client-id", SECRET) == cache_key(BASE, "client-id", SECRET)


class _Complete:
    def load(self, key: str) -> bytes | None:
        return None

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        pass

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        yield


class _NoLock:
    def load(self, key: str) -> bytes | None:
        return None

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        pass


def test_a_complete_cache_passes_the_check() -> None:
    """An object with load, save and lock is accepted and returned as it is."""
    cache = _Complete()
    assert check_token_cache(cache) is cache


def test_a_cache_without_lock_is_named_in_the_error() -> None:
    """An object without lock() is a ValueError saying so."""
    with pytest.raises(ValueError, match=r"token_cache has no lock\(\) method"):
        check_token_cache(_NoLock())


def test_every_missing_method_is_named() -> None:
    """A dict (no load, save or lock) is refused naming all three."""
    with pytest.raises(ValueError, match=r"no load\(\) and save\(\) and lock\(\) methods"):
        check_token_cache({})


def test_an_attribute_that_is_not_callable_counts_as_missing() -> None:
    """lock = None is no lock() method."""
    cache = _NoLock()
    cache.lock = None  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"no lock\(\) method"):
        check_token_cache(cache)
