"""The token cache protocol and the format of a cache entry.

A token cache lets the processes of a fleet share one token. ``EmmaAuth(token_cache=...)``
keeps using its in-memory token on the request path; only when the token must be renewed
does it take the cache's lock, look at the cache (another process may have renewed
meanwhile, and rotated the refresh token this process holds), and either adopt the cached
token or renew and save. So the cache sees one lock, one load and at most one save per
renewal, never a call per request.

Contract for implementations (:class:`FileTokenCache`, :class:`RedisTokenCache`, or your
own):

- ``load`` returns ``None`` for an absent, expired, corrupt, truncated, foreign or
  other-schema entry: the next ``save`` rewrites it. Content is never a crash.
- An outage (the store unreachable, a timeout, a lock not acquired in time) raises: the
  auth logs a warning and carries on with its in-memory token for that renewal. A cache
  outage therefore never fails a request, and it must not hide behind ``None`` either.
- Nothing stored is logged; ``repr`` shows where the cache is, never a secret.

An entry is :func:`encode_token`'s JSON: the whole :class:`Token` (the refresh token
included, so rotation works across processes) with wall-clock Unix times, which mean the
same in every process and on every host, and a schema version. Entries are keyed by
``cache_key()``, a fingerprint of the base URL, the client id and the client secret:
the secret itself is never stored, and two clients (or one client id with a wrong secret)
never share an entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from typing import Protocol

from ._token import Token

#: Version of the entry format; an entry with any other version is ignored.
SCHEMA_VERSION = 1
#: Entries are a few hundred bytes; anything much larger is not one of ours.
MAX_ENTRY_BYTES = 64 * 1024
#: Clocks of the hosts sharing a cache may be this many seconds apart: an entry with less
#: than this left is treated as expired, so a host whose clock runs behind never adopts a
#: token that the server already considers expired.
CLOCK_SKEW = 5.0

#: How long a lock waits, and (Redis) how long a dead holder's lock lives: longer than a
#: renewal may take with the default ``RetryPolicy`` (a 30 s deadline, plus slack).
LOCK_TIMEOUT = 45.0

_KEY_DOMAIN = b"requests-emma token cache key v1"


class TokenCache(Protocol):
    """What ``EmmaAuth(token_cache=...)`` needs from a shared token cache.

    Keys are ``cache_key()`` fingerprints: short ASCII strings (hex digits), safe as file
    names and Redis keys. :class:`FileTokenCache` and :class:`RedisTokenCache` implement
    it; any object with these three methods does.
    """

    def load(self, key: str) -> Token | None:
        """The stored token, or ``None`` if absent, expired, corrupt or of another schema.

        Raises when the store cannot be read (an outage), rather than returning ``None``.
        """

    def save(self, key: str, token: Token) -> None:
        """Store ``token`` under ``key``, replacing what was there. Raises on an outage."""

    def lock(self, key: str) -> contextlib.AbstractContextManager[object]:
        """A lock held across processes (and hosts, for a networked store) for ``key``.

        It spans "load, renew if needed, save", so N processes that need a token at once
        make one token call. Entering it raises when the lock cannot be had in time.
        """


def cache_key(base_url: str, client_id: str, client_secret: str) -> str:
    """The cache key of one client at one API: a SHA-256 fingerprint, in hex.

    The same inputs give the same key in every process and on every host. The secret is
    part of the fingerprint, so a client id used with a wrong secret never finds the right
    secret's token; the secret itself cannot be read back from the key. A trailing ``/`` of
    the base URL does not change the key.
    """
    digest = hashlib.sha256(_KEY_DOMAIN)
    for part in (base_url.rstrip("/"), client_id, client_secret):
        raw = part.encode("utf-8")
        # Length-prefixed, so ("ab", "c") and ("a", "bc") give different keys.
        digest.update(len(raw).to_bytes(8, "big"))
        digest.update(raw)
    return digest.hexdigest()


def check_token_cache(cache: object) -> TokenCache:
    """``cache`` as a :class:`TokenCache`, or a ``ValueError`` naming what it lacks.

    Used by ``EmmaAuth`` at construction, so a wrong object fails there rather than at the
    first renewal.
    """
    missing = [
        name for name in ("load", "save", "lock") if not callable(getattr(cache, name, None))
    ]
    if missing:
        methods = " and ".join(f"{name}()" for name in missing)
        noun = "method" if len(missing) == 1 else "methods"
        raise ValueError(
            f"token_cache has no {methods} {noun}: a token cache needs load(key), "
            f"save(key, token) and lock(key) (see requests_emma.TokenCache), "
            f"got a {type(cache).__name__}"
        )
    return cache  # type: ignore[return-value]  # checked above, as far as Python can check


def encode_token(token: Token) -> bytes:
    """The cache entry for ``token``: UTF-8 JSON with a schema version."""
    entry = {
        "schema": SCHEMA_VERSION,
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_at": token.expires_at,
        "refresh_token": token.refresh_token,
        "refresh_expires_at": token.refresh_expires_at,
    }
    return json.dumps(entry, allow_nan=False, separators=(",", ":")).encode("utf-8")


def decode_token(data: bytes) -> Token | None:
    """The :class:`Token` in a cache entry; ``None`` for anything that is not a valid entry
    of this schema version (corrupt, truncated, foreign, another version)."""
    if len(data) > MAX_ENTRY_BYTES:
        return None
    try:
        entry = json.loads(data)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deeply
        return None
    if not isinstance(entry, dict) or entry.get("schema") != SCHEMA_VERSION:
        return None
    access_token, token_type = entry.get("access_token"), entry.get("token_type")
    refresh_token = entry.get("refresh_token")
    expires_at = _finite(entry.get("expires_at"))
    refresh_expires_at = _finite(entry.get("refresh_expires_at"))
    if not (isinstance(access_token, str) and access_token and isinstance(token_type, str)):
        return None
    if expires_at is None or not (refresh_token is None or isinstance(refresh_token, str)):
        return None
    if refresh_expires_at is None and entry.get("refresh_expires_at") is not None:
        return None
    return Token(
        access_token=access_token,
        token_type=token_type,
        expires_at=expires_at,
        refresh_token=refresh_token or None,
        refresh_expires_at=refresh_expires_at,
    )


def usable_until(token: Token) -> float:
    """Unix time after which nothing in ``token`` is of use: its access token has expired,
    and so has its refresh token (one of unknown lifetime counts until the access token's
    expiry)."""
    if token.refresh_token is not None and token.refresh_expires_at is not None:
        return max(token.expires_at, token.refresh_expires_at)
    return token.expires_at


def is_spent(token: Token, now: float | None = None) -> bool:
    """Whether a cached ``token`` is no use any more, allowing for :data:`CLOCK_SKEW`."""
    return usable_until(token) - CLOCK_SKEW <= (time.time() if now is None else now)


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
