"""The token cache protocol and entry format: keys, encoding, decoding, protocol checks."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from requests_emma import Token
from requests_emma._cache import (
    CLOCK_SKEW,
    SCHEMA_VERSION,
    cache_key,
    check_token_cache,
    decode_token,
    encode_token,
    is_spent,
)

BASE = "https://api.emma.ms/external"
SECRET = "s3cret-value-never-stored"


def a_token(**changes: object) -> Token:
    values: dict[str, object] = {
        "access_token": "header.payload.signature",
        "token_type": "Bearer",
        "expires_at": time.time() + 300,
        "refresh_token": "refresh-me",
        "refresh_expires_at": time.time() + 1800,
    }
    values.update(changes)
    return Token(**values)  # type: ignore[arg-type]


def test_cache_key_is_a_fingerprint_without_the_secret() -> None:
    """The key is 64 hex digits and contains neither the secret nor the client id."""
    key = cache_key(BASE, "client-id", SECRET)
    assert len(key) == 64 and set(key) <= set("0123456789abcdef")
    assert SECRET not in key and "client-id" not in key


def test_cache_key_is_stable_across_processes() -> None:
    """Another interpreter computes the same key for the same inputs."""
    code = (
        "from requests_emma._cache import cache_key;"
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


def test_an_entry_round_trips() -> None:
    """decode_token(encode_token(t)) is t, refresh token and both expiries included."""
    token = a_token()
    assert decode_token(encode_token(token)) == token


def test_an_entry_without_refresh_token_round_trips() -> None:
    """A token without refresh token decodes with refresh fields None."""
    token = a_token(refresh_token=None, refresh_expires_at=None)
    assert decode_token(encode_token(token)) == token


def test_an_entry_is_json_with_a_schema_version() -> None:
    """The entry is a JSON object carrying the schema version."""
    entry = json.loads(encode_token(a_token()))
    assert entry["schema"] == SCHEMA_VERSION


def _entry(**changes: object) -> bytes:
    entry = json.loads(encode_token(a_token()))
    entry.update(changes)
    return json.dumps(entry).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        encode_token(a_token())[:-7],  # truncated
        b"\xff\xfe\x00garbage",
        b"null",
        b"[1, 2, 3]",
        b'{"access_token": "x"}',  # foreign: no schema
        _entry(schema=SCHEMA_VERSION + 1),
        _entry(schema="1"),
        _entry(access_token=""),
        _entry(access_token=7),
        _entry(token_type=None),
        _entry(expires_at="soon"),
        _entry(expires_at=True),
        _entry(refresh_token=12),
        _entry(refresh_expires_at="later"),
        b'{"schema": 1, "expires_at": NaN, "access_token": "a", "token_type": "Bearer"}',
        b"[" * 100_000 + b"]" * 100_000,  # nested too deeply
        b" " * 70_000 + encode_token(a_token()),  # far larger than an entry
    ],
    ids=lambda data: repr(data[:30]),
)
def test_anything_but_a_valid_entry_decodes_as_none(data: bytes) -> None:
    """Corrupt, truncated, foreign or other-schema content decodes as None, never raises."""
    assert decode_token(data) is None


def test_a_token_is_spent_only_when_its_refresh_token_is_too() -> None:
    """An expired access token with a live refresh token is still worth sharing."""
    now = time.time()
    assert not is_spent(a_token(expires_at=now - 10, refresh_expires_at=now + 600), now)
    assert is_spent(a_token(expires_at=now - 10, refresh_expires_at=now - 1), now)
    assert is_spent(a_token(expires_at=now - 10, refresh_token=None, refresh_expires_at=None), now)


def test_a_token_within_the_clock_skew_of_its_end_is_spent() -> None:
    """A token with less than CLOCK_SKEW seconds left is treated as spent."""
    now = time.time()
    spent = a_token(expires_at=now + CLOCK_SKEW - 1, refresh_token=None, refresh_expires_at=None)
    live = a_token(expires_at=now + CLOCK_SKEW + 1, refresh_token=None, refresh_expires_at=None)
    assert is_spent(spent, now) and not is_spent(live, now)


class _Complete:
    def load(self, key: str) -> Token | None:
        return None

    def save(self, key: str, token: Token) -> None:
        pass

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        yield


class _NoLock:
    def load(self, key: str) -> Token | None:
        return None

    def save(self, key: str, token: Token) -> None:
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
