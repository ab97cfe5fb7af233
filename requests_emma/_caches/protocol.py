"""The token cache protocol, and the key an entry is stored under.

A token cache lets the processes of a fleet share one token. ``EmmaAuth(token_cache=...)``
keeps using its in-memory token on the request path; only when the token must be renewed
does it take the cache's lock, look at the cache (another process may have renewed
meanwhile, and rotated the refresh token this process holds), and either adopt the cached
token or renew and save. So the cache sees one lock, one load and at most one save per
renewal, never a call per request.

A cache stores opaque bytes: the library seals every entry (``_core/cache_entry.py``: AES-GCM under a
key derived from the client secret) before it reaches the cache, and opens and checks it
after a load. A cache therefore never sees a token, and needs no knowledge of the format.

Contract for implementations (:class:`FileTokenCache`, :class:`RedisTokenCache`, or your
own):

- ``load`` returns the bytes last saved under the key, or ``None`` if there are none. Bytes
  that are not a valid entry (damaged, foreign, sealed with another secret) are the
  library's to reject: it treats them as absent, and the next ``save`` replaces them.
- An outage (the store unreachable, a timeout) raises: the auth logs a warning and carries
  on with its in-memory token for that renewal. A cache outage therefore never fails a
  request, and it must not hide behind ``None`` either. A refusal that no retry mends (a
  full Redis, a missing ACL permission, a Cluster node reached as a plain Redis) is the
  exception: the cache says why in one WARNING and carries on as if empty (``load`` gives
  ``None``, ``save`` stores nothing, ``lock`` holds nothing), so the renewal works as with
  no cache, without a warning per renewal, until the cause is gone.
- ``lock(key, timeout)`` raises ``TimeoutError`` (or a subclass: ``filelock.Timeout`` is
  one) when another holder keeps the lock for ``timeout`` seconds. That is not an outage:
  another process is renewing, and this one gives up its renewal rather than call emma too.
- Nothing stored is logged; ``repr`` shows where the cache is, never a secret.

Entries are keyed by ``cache_key()``, a fingerprint of the base URL, the client id and the
client secret: the secret itself is never stored, and two clients (or one client id with a
wrong secret) never share an entry.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Protocol

#: Entries are a few hundred bytes; anything much larger is not one of ours.
MAX_ENTRY_BYTES = 64 * 1024

#: How long a lock waits at most, and (Redis) how long a dead holder's lock lives: longer
#: than a renewal may take with the default ``RetryPolicy`` (a 30 s deadline, plus slack).
#: A renewal waits for the lock no longer than its own deadline allows.
LOCK_TIMEOUT = 45.0

_KEY_DOMAIN = b"requests-emma token cache key v1"


class TokenCache(Protocol):
    """What ``EmmaAuth(token_cache=...)`` needs from a shared token cache: a store of opaque
    bytes under short keys, with a lock per key.

    Keys are ``cache_key()`` fingerprints: short ASCII strings (hex digits), safe as file
    names and Redis keys. Entries are sealed by the library before ``save`` and checked
    after ``load``. :class:`FileTokenCache` and :class:`RedisTokenCache` implement it; any
    object with these three methods does.
    """

    def load(self, key: str) -> bytes | None:
        """The bytes last saved under ``key``, or ``None`` if there are none.

        Raises when the store cannot be read (an outage), rather than returning ``None``.
        """

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        """Store ``entry`` under ``key``, replacing what was there. ``ttl``: the seconds for
        which the entry is of any use; a store may drop it after that, and may store
        nothing (or delete what is there) when ``ttl <= 0``. Raises on an outage."""

    def lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[object]:
        """A lock held across processes (and hosts, for a networked store) for ``key``.

        It spans "load, renew if needed, save", so N processes that need a token at once
        make one token call. Entering it waits at most ``timeout`` seconds (less if the
        cache has a shorter bound of its own), then raises ``TimeoutError``; any other
        exception is taken for an outage.
        """


def cache_key(base_url: str, client_id: str, client_secret: str) -> str:
    """The cache key of one client at one API: a SHA-256 fingerprint, in hex.

    The same inputs give the same key in every process and on every host. The secret is
    part of the fingerprint, so a client id used with a wrong secret never finds the right
    secret's token; the secret itself cannot be read back from the key. A trailing ``/`` of
    the base URL does not change the key.
    """
    parts = length_prefixed(base_url.rstrip("/"), client_id, client_secret)
    return hashlib.sha256(_KEY_DOMAIN + parts).hexdigest()


def length_prefixed(*parts: str) -> bytes:
    """``parts`` in UTF-8, each after its length (8 bytes, big-endian), so that ("ab", "c")
    and ("a", "bc") give different bytes: of cache keys and of the entries' key and
    associated data."""
    encoded = [part.encode("utf-8") for part in parts]
    return b"".join(len(raw).to_bytes(8, "big") + raw for raw in encoded)


def check_token_cache(cache: object) -> TokenCache:
    """``cache`` as a :class:`TokenCache`, or a ``ValueError`` naming what it lacks.

    Used by ``EmmaAuth`` at construction, so a wrong object fails there rather than at the
    first renewal.
    """
    missing = lacking(cache, "load", "save", "lock")
    if missing:
        methods = " and ".join(f"{name}()" for name in missing)
        noun = "method" if len(missing) == 1 else "methods"
        raise ValueError(
            f"token_cache has no {methods} {noun}: a token cache needs load(key), "
            f"save(key, entry, ttl) and lock(key, timeout) (see requests_emma.TokenCache), "
            f"got a {type(cache).__name__}"
        )
    return cache  # type: ignore[return-value]  # checked above, as far as Python can check


def lacking(thing: object, *methods: str) -> list[str]:
    """The names in ``methods`` that ``thing`` has no method of (no callable attribute)."""
    return [name for name in methods if not callable(getattr(thing, name, None))]
