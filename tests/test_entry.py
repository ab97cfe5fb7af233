"""Sealed cache entries: encryption, authentication, binding, and the checks on what opens."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from requests_emma import Token
from requests_emma._caches.protocol import cache_key
from requests_emma._core.cache_entry import (
    MAX_HOLD,
    VERSION,
    Entry,
    Hold,
    Sealer,
    decode,
    encode,
)
from requests_emma._core.wire import MAX_LIFETIME

BASE = "https://api.emma.ms/external"
CLIENT = "client-id"
SECRET = "s3cret-value-never-stored"
KEY = cache_key(BASE, CLIENT, SECRET)


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


def sealer(base_url: str = BASE, client_id: str = CLIENT, secret: str = SECRET) -> Sealer:
    return Sealer(base_url, client_id, secret)


def an_entry(**token_changes: object) -> Entry:
    token = a_token(**token_changes)
    hold = Hold(time.time() + 60, "busy", "HTTP 429", 0, 60.0)
    return Entry(3, token, token.expires_at - 300, hold)


def test_an_entry_round_trips() -> None:
    """open(seal(e)) is e: token, refresh token, expiries, issue time, hold, generation."""
    entry = an_entry()
    assert sealer().open(KEY, sealer().seal(KEY, entry)) == entry


def test_an_entry_with_a_hold_and_no_token_round_trips() -> None:
    """An entry may hold a hold on token calls and no token."""
    entry = Entry(1, None, None, Hold(time.time() + 5, "refused", "HTTP 400", 2, 5.0))
    assert sealer().open(KEY, sealer().seal(KEY, entry)) == entry


@pytest.mark.parametrize(("kind", "seconds"), [("busy", MAX_HOLD), ("refused", 60.0)])
def test_a_hold_of_an_older_release_is_bounded_by_the_longest_hold(
    kind: str, seconds: float
) -> None:
    """A hold saved without its seconds opens bounded by the longest hold of its kind: an
    hour when emma asked to wait, a minute for refused credentials."""
    hold = {"until": time.time() + 86400, "kind": kind, "detail": "HTTP 429", "strikes": 0}
    entry = sealer().open(KEY, _sealed_json({"generation": 1, "token": None, "hold": hold}))
    assert entry is not None and entry.hold is not None and entry.hold.seconds == seconds


def test_a_sealed_entry_shows_neither_token_nor_the_secret() -> None:
    """The sealed bytes contain no access token, refresh token, secret or client id."""
    entry = an_entry(access_token="eyJhbGciOi.visible-access.sig", refresh_token="visible-refresh")
    sealed = sealer().seal(KEY, entry)
    for secret in (b"visible-access", b"visible-refresh", SECRET.encode(), CLIENT.encode()):
        assert secret not in sealed
    assert b"expires_at" not in sealed and b"generation" not in sealed


def test_a_sealed_entry_starts_with_its_version_and_uses_a_fresh_nonce() -> None:
    """The first byte is the format version; sealing the same entry twice differs."""
    entry = an_entry()
    first, second = sealer().seal(KEY, entry), sealer().seal(KEY, entry)
    assert first[0] == second[0] == VERSION
    assert first[1:13] != second[1:13] and first != second


def _flipped(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


SEALED = Sealer(BASE, CLIENT, SECRET).seal(KEY, an_entry())


@pytest.mark.parametrize(
    "data",
    [
        b"",
        _flipped(SEALED, 0),  # the version
        _flipped(SEALED, 5),  # the nonce
        _flipped(SEALED, 20),  # the ciphertext
        _flipped(SEALED, len(SEALED) - 1),  # the tag
        SEALED[:-1],
        SEALED[:13],
        SEALED[:1],
        encode(an_entry()),  # plain JSON, as an older version stored it
        json.dumps({"schema": 1, "access_token": "planted\r\nX-Evil: 1"}).encode(),
        Sealer(BASE, CLIENT, SECRET + "-rotated").seal(KEY, an_entry()),
        Sealer(BASE + "/staging", CLIENT, SECRET).seal(KEY, an_entry()),
        Sealer(BASE, CLIENT + "-other", SECRET).seal(KEY, an_entry()),
        Sealer(BASE, CLIENT, SECRET).seal(cache_key(BASE, "other", SECRET), an_entry()),
        SEALED + b"\x00" * 70_000,  # far larger than an entry
    ],
    ids=[
        "empty",
        "flipped-version",
        "flipped-nonce",
        "flipped-ciphertext",
        "flipped-tag",
        "truncated-by-one",
        "nonce-only",
        "version-only",
        "plain-json",
        "plain-json-crlf",
        "another-secret",
        "another-base-url",
        "another-client-id",
        "copied-from-another-key",
        "oversized",
    ],
)
def test_an_entry_that_fails_to_open_is_none(data: bytes) -> None:
    """Changed, truncated, foreign, old-format or differently keyed bytes open as None."""
    assert sealer().open(KEY, data) is None


@pytest.mark.parametrize("data", [SEALED.hex(), None, 42, [SEALED]], ids=repr)
def test_something_other_than_bytes_opens_as_none(data: object) -> None:
    """A cache of one's own that loads a str or another object gives no entry, no crash."""
    assert sealer().open(KEY, data) is None  # type: ignore[arg-type]


def test_bytearray_and_memoryview_open_as_bytes() -> None:
    """A store that returns a bytearray or memoryview of the entry works as with bytes."""
    assert sealer().open(KEY, bytearray(SEALED)) == sealer().open(KEY, memoryview(SEALED))
    assert sealer().open(KEY, bytearray(SEALED)) is not None


def test_a_base_url_with_a_trailing_slash_opens_the_same_entries() -> None:
    """The key ignores a trailing slash of the base URL, as the cache key does."""
    assert sealer(BASE + "/").open(KEY, SEALED) is not None


def _sealed_json(data: object) -> bytes:
    """``data`` as JSON, sealed with the right key: content a holder of the secret wrote."""
    s = sealer()
    aead, aad = s._aead, b"requests-emma token cache entry v1\x01"
    aad += len(KEY).to_bytes(8, "big") + KEY.encode()
    nonce = b"\x00" * 12
    return bytes([VERSION]) + nonce + aead.encrypt(nonce, json.dumps(data).encode(), aad)


def _token_json(**changes: object) -> dict[str, object]:
    now = time.time()
    token: dict[str, object] = {
        "access_token": "header.payload.signature",
        "token_type": "Bearer",
        "issued_at": now,
        "expires_at": now + 300,
        "refresh_token": "refresh-me",
        "refresh_expires_at": now + 1800,
    }
    token.update(changes)
    return {"generation": 1, "token": token, "hold": None}


def test_the_sealing_in_these_tests_is_the_real_one() -> None:
    """_sealed_json of a valid entry opens: the cases below fail on content alone."""
    assert sealer().open(KEY, _sealed_json(_token_json())) is not None


@pytest.mark.parametrize(
    "data",
    [
        _token_json(access_token="has\r\nCRLF"),
        _token_json(access_token="caf\u00e9-non-ascii"),
        _token_json(access_token="\u20ac-not-latin-1"),
        _token_json(access_token=""),
        _token_json(access_token=7),
        _token_json(expires_at=time.time() + MAX_LIFETIME + 3600),  # lifetime over the cap
        _token_json(expires_at="soon"),
        _token_json(issued_at=None),
        _token_json(refresh_token=12),
        {"generation": 0, "token": None, "hold": None},
        {"generation": True, "token": None, "hold": None},
        {"generation": 1, "token": None, "hold": {"until": 1.0, "kind": "x", "detail": ""}},
        [1, 2, 3],
        "not an object",
    ],
    ids=lambda data: repr(data)[:40],
)
def test_content_that_a_token_response_would_fail_opens_as_none(data: object) -> None:
    """An opened entry goes through the token-response checks: a token unsafe in a header
    or with an unbelievable lifetime, or any malformed field, makes the entry absent."""
    assert sealer().open(KEY, _sealed_json(data)) is None


def test_decode_rejects_what_is_not_json() -> None:
    """Bytes that are not JSON, or nested too deeply, decode as None without raising."""
    assert decode(b"\xff\xfe") is None and decode(b"[" * 100_000) is None


def test_useful_until_is_the_latest_of_access_refresh_and_hold() -> None:
    """An entry is of use while its access token, its refresh token or its hold lasts."""
    now = time.time()
    token = a_token(expires_at=now + 10, refresh_expires_at=now + 100)
    assert Entry(1, token, now).useful_until() == now + 100
    no_refresh = a_token(expires_at=now + 10, refresh_token=None, refresh_expires_at=None)
    assert Entry(1, no_refresh, now, Hold(now + 60, "busy", "")).useful_until() == now + 60


def test_import_does_not_load_cryptography() -> None:
    """import requests_emma loads neither cryptography nor the entry module; a Sealer does."""
    code = (
        "import sys, requests_emma\n"
        "print('cryptography' in sys.modules)\n"
        "from requests_emma._core.cache_entry import Sealer\n"
        "Sealer('https://x', 'id', 'secret')\n"
        "print('cryptography' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "True"]


def test_without_cryptography_a_cache_says_what_to_install() -> None:
    """With cryptography missing, import works and the first sealer names the package;
    there is no unsealed fallback."""
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "import requests_emma\n"
        "from requests_emma._core.cache_entry import Sealer\n"
        "try:\n"
        "    Sealer('https://x', 'id', 'secret')\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install cryptography" in result.stdout


def test_without_cryptography_no_frame_of_the_error_shows_the_secret(tmp_path: Path) -> None:
    """The ImportError of a cache use without cryptography, shown with every frame's locals
    (pytest -l, Sentry), does not show the client secret."""
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o700)
    code = (
        "import sys, traceback; sys.modules['cryptography'] = None\n"
        "from requests_emma import EmmaAuth, FileTokenCache\n"
        "auth = EmmaAuth('id', sys.argv[1], base_url='http://127.0.0.1:1',\n"
        "                token_cache=FileTokenCache(sys.argv[2]))\n"
        "try:\n"
        "    auth.get_token()\n"
        "except ImportError as error:\n"
        "    shown = traceback.TracebackException.from_exception(error, capture_locals=True)\n"
        "    print(''.join(shown.format()))\n"
    )
    secret = "frame-secret-7c41d9"
    result = subprocess.run(
        [sys.executable, "-c", code, secret, str(directory)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "pip install cryptography" in result.stdout
    assert "__init__" in result.stdout and "self = " in result.stdout  # the locals are there
    assert secret not in result.stdout
