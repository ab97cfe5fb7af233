"""A shared cache entry: what it holds, how it is encoded, and how it is sealed.

A :class:`~requests_emma.TokenCache` stores opaque bytes; this module makes and reads them.
An entry (:class:`Entry`) is what one process tells the others about the client's token:

- ``token``: the access token and the newest refresh token, with their expiries in Unix
  time, and ``issued_at``, the saver's own clock when that token was asked for, so that the
  token's lifetime (``expires_at - issued_at``) is read off one clock;
- ``generation``: a counter, written under the cache lock as one more than the highest the
  saver knows. An entry of a higher generation than the one a process holds is newer than
  what it holds, whatever the clocks of the two hosts say;
- ``hold``: "no token calls before ``until``" (Unix time), when emma asked to wait
  (``Retry-After``) or refused the client credentials, so the fleet respects it as one.

Sealing: the JSON of an entry is encrypted and authenticated with AES-GCM (from
``cryptography``) under a 256-bit key derived by HKDF-SHA256 from the client secret, with
the base URL and the client id, length-prefixed, as HKDF's ``info``. The cache key (the
entry's name in the store) and the format version are AES-GCM's associated data. A sealed
entry is ``version (1 byte) || nonce (12 random bytes) || ciphertext and tag``.

So a reader of the store learns nothing but an entry's size; a writer who lacks the secret
cannot make an entry that opens; an entry copied under another key, or sealed for another
base URL, client id or secret (a rotated secret included), fails to open. An entry that
fails to open, or opens to something that is not a valid entry, is treated as absent. What
opens is decoded through the same checks as a token response (``_wire.checked_grant``),
so a token from the cache is held to the same rules as one from emma.

``cryptography`` is imported when the first :class:`Sealer` is made, that is at the first
renewal through a shared cache, not with the package.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from .._caches.protocol import MAX_ENTRY_BYTES, length_prefixed
from .._errors import TokenResponseError
from .durations import finite
from .token import Token

#: Format version: the first byte of a sealed entry, and part of its associated data.
VERSION = 1
_VERSION_BYTE = VERSION.to_bytes(1, "big")
_NONCE_BYTES = 12  # 96 bits, AES-GCM's own size
_KEY_INFO = b"requests-emma token cache entry key v1"
_AAD_DOMAIN = b"requests-emma token cache entry v1"

#: Kinds of :class:`Hold`: emma asked to wait (429, 503 with ``Retry-After``), or it refused
#: the client credentials.
BUSY = "busy"
REFUSED = "refused"
#: The longest hold on token calls: a ``Retry-After`` of more is read as this (an hour).
MAX_HOLD = 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Hold:
    """No token calls before ``until``: why (``kind``, ``detail`` such as ``"HTTP 429"``),
    how many refusals of the credentials in a row (``strikes``), and the ``seconds`` the hold
    was set for, which bound it on any other host's clock. ``until`` is monotonic in a
    lifecycle and Unix time in a cache entry (converted by the lifecycle, nowhere else)."""

    until: float
    kind: str
    detail: str
    strikes: int = 0
    seconds: float = math.inf

    def left(self, now: float) -> float:
        """Seconds until the hold ends, at ``now`` on the clock of ``until``."""
        return self.until - now


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """What a shared cache holds for one client: see the module docstring."""

    generation: int
    token: Token | None = None
    issued_at: float | None = None
    hold: Hold | None = None

    def useful_until(self) -> float:
        """Unix time after which nothing in the entry is of use: its access token has expired,
        and so has its refresh token (one of unknown lifetime counts until the access token
        expires), and its hold has ended."""
        until = -math.inf if self.hold is None else self.hold.until
        token = self.token
        if token is not None:
            until = max(until, token.expires_at)
            if token.refresh_token is not None and token.refresh_expires_at is not None:
                until = max(until, token.refresh_expires_at)
        return until


class Sealer:
    """Seals and opens the entries of one client (base URL, client id, client secret)."""

    def __init__(self, base_url: str, client_id: str, client_secret: str) -> None:
        try:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        except ImportError:  # a required dependency, but an install can be broken
            # This frame is in the error's traceback, which pytest -l and Sentry show with
            # its locals: the secret must not be one of them.
            del client_secret
            raise ImportError(
                "a token cache needs the cryptography package, which seals its entries "
                "(a dependency of requests-emma): pip install cryptography"
            ) from None

        info = _KEY_INFO + length_prefixed(base_url.rstrip("/"), client_id)
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
            client_secret.encode("utf-8")
        )
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Sealer(key=***)"

    def seal(self, name: str, entry: Entry) -> bytes:
        """``entry`` encrypted and authenticated, bound to the cache key ``name``."""
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION_BYTE + nonce + self._aead.encrypt(nonce, encode(entry), _aad(name))

    def open(self, name: str, sealed: bytes) -> Entry | None:
        """The entry sealed under ``name``; ``None`` if it fails to open (changed, truncated,
        foreign, another format version, another key or name) or is not a valid entry."""
        from cryptography.exceptions import InvalidTag

        if not isinstance(sealed, (bytes, bytearray, memoryview)):
            return None  # a cache of one's own that returned something else: not an entry
        sealed = bytes(sealed)
        if not 1 + _NONCE_BYTES <= len(sealed) <= MAX_ENTRY_BYTES or sealed[0] != VERSION:
            return None
        nonce, ciphertext = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return decode(self._aead.decrypt(nonce, ciphertext, _aad(name)))
        except InvalidTag:
            return None


def encode(entry: Entry) -> bytes:
    """The JSON of ``entry``, before sealing."""
    data: dict[str, Any] = {"generation": entry.generation, "token": None, "hold": None}
    if entry.token is not None:
        data["token"] = {**dataclasses.asdict(entry.token), "issued_at": entry.issued_at}
    if entry.hold is not None:
        seconds = entry.hold.seconds if math.isfinite(entry.hold.seconds) else None
        data["hold"] = {**dataclasses.asdict(entry.hold), "seconds": seconds}
    return json.dumps(data, allow_nan=False, separators=(",", ":")).encode("utf-8")


def decode(data: bytes) -> Entry | None:
    """The :class:`Entry` in ``data``; ``None`` for anything that is not a valid one. The
    token goes through ``_wire.checked_grant``, as a token response does."""
    try:
        entry = _of(json.loads(data), dict)
        token = _of(entry.get("token"), dict, type(None))
        hold = _of(entry.get("hold"), dict, type(None))
        generation = _count(entry.get("generation"), least=1)
        token, issued_at = (None, None) if token is None else _token(token)
        return Entry(generation, token, issued_at, None if hold is None else _hold(hold))
    # RecursionError: JSON nested too deeply; TokenResponseError: a token that a token
    # response could not carry either.
    except (ValueError, RecursionError, TokenResponseError):
        return None


def _token(data: dict[str, Any]) -> tuple[Token, float]:
    from .wire import checked_grant

    issued_at, expires_at = _number(data.get("issued_at")), _number(data.get("expires_at"))
    access_token, token_type = (_of(data.get(name), str) for name in ("access_token", "token_type"))
    refresh_token = _of(data.get("refresh_token"), str, type(None))
    refresh_at = data.get("refresh_expires_at")
    refresh_in = None if refresh_at is None else _number(refresh_at) - issued_at
    if refresh_in is not None and refresh_in <= 0:
        refresh_token = refresh_in = None  # expired before its access token was issued
    lifetime = expires_at - issued_at
    grant = checked_grant(access_token, token_type, lifetime, "cache", refresh_token, refresh_in)
    return grant.to_token(issued_at), issued_at


def _hold(data: dict[str, Any]) -> Hold:
    kind = data.get("kind")
    if kind not in (BUSY, REFUSED):
        raise ValueError(f"no kind of hold: {kind!r}")
    seconds = finite(data.get("seconds"))
    if seconds is None or seconds < 0:  # an entry of an older release: the longest hold
        seconds = MAX_HOLD if kind == BUSY else 60.0
    detail = _of(data.get("detail"), str)[:200]
    return Hold(_number(data.get("until")), kind, detail, _count(data.get("strikes")), seconds)


def _of(value: Any, *kinds: type) -> Any:
    """``value`` if it is one of ``kinds``, else ``ValueError``: a field of the wrong type
    makes the entry invalid."""
    if isinstance(value, kinds):
        return value
    raise ValueError(f"not a {kinds[0].__name__}: {type(value).__name__}")


def _number(value: object) -> float:
    """``value`` as a finite float, else ``ValueError``."""
    return float(_of(finite(value), float))  # finite() gives None for anything else


def _count(value: object, least: int = 0) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) of at least ``least``, else
    ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"not a count of at least {least}: {value!r}")
    return value


def _aad(name: str) -> bytes:
    return _AAD_DOMAIN + _VERSION_BYTE + length_prefixed(name)
