"""Code that the token cache tests run in child processes (multiprocessing, spawn).

A cache is passed as a :class:`CacheSpec` and built in the child: a Redis client holds
sockets and does not cross a process boundary.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import requests

from requests_emma import FileTokenCache, RedisTokenCache, Token, TokenCache
from requests_emma._core.cache_entry import Entry, Sealer
from requests_emma._core.wire import issue_token_body, parse_token


@dataclasses.dataclass(frozen=True)
class CacheSpec:
    """How to build a cache in a child: ``kind`` "file" (``where`` is the directory),
    "redis" (``where`` is the URL for ``from_url``; ``prefix`` keeps tests sharing a server
    apart) or "valkey" (the same, on a valkey-py client)."""

    kind: str
    where: str
    lock_timeout: float = 60.0
    prefix: str = "requests-emma:token:"


def make_cache(spec: CacheSpec) -> TokenCache:
    if spec.kind == "file":
        return FileTokenCache(spec.where, lock_timeout=spec.lock_timeout)
    if spec.kind == "valkey":
        import valkey

        return RedisTokenCache(
            valkey.Valkey.from_url(spec.where), prefix=spec.prefix, lock_timeout=spec.lock_timeout
        )
    return RedisTokenCache.from_url(
        spec.where, prefix=spec.prefix, lock_timeout=spec.lock_timeout, blocking_timeout=30.0
    )


def issue_token(base_url: str, client_id: str, client_secret: str) -> Entry:
    """One real issue-token call to the test server; its token as a cache entry."""
    sent_at = time.time()
    response = requests.post(
        base_url + "/v1/issue-token", json=issue_token_body(client_id, client_secret), timeout=30
    )
    response.raise_for_status()
    return Entry(1, parse_token(response.content, sent_at).to_token(sent_at), sent_at)


def token_in(sealed: bytes | None, key: str, credentials: tuple[str, str, str]) -> Token | None:
    """The token in the sealed entry ``sealed`` saved under ``key``, if it opens."""
    entry = None if sealed is None else Sealer(*credentials).open(key, sealed)
    return None if entry is None else entry.token


def check_then_renew(
    spec: CacheSpec,
    key: str,
    credentials: tuple[str, str, str],
    start: Any,  # a multiprocessing Barrier
    results: Any,  # a multiprocessing Queue
) -> None:
    """Wait for the others, then under the cache lock: adopt the cached token, or issue
    one and save it. Reports ``("renewed" | "adopted", access_token)``."""
    cache = make_cache(spec)
    start.wait(timeout=60)
    with cache.lock(key, 60.0):
        token = token_in(cache.load(key), key, credentials)
        if token is not None:
            results.put(("adopted", token.access_token))
            return
        entry = issue_token(*credentials)
        cache.save(key, Sealer(*credentials).seal(key, entry), 300.0)
    assert entry.token is not None
    results.put(("renewed", entry.token.access_token))


def hold_lock(spec: CacheSpec, key: str, held: Any) -> None:
    """Take the cache lock, say so through the ``held`` Event, and keep it (until killed;
    two minutes at most)."""
    cache = make_cache(spec)
    with cache.lock(key, 60.0):
        held.set()
        time.sleep(120)


def fleet_member(
    spec: CacheSpec | None,
    base_url: str,
    client_id: str,
    client_secret: str,
    commands: Any,  # a multiprocessing Queue of "get" / "get-together" / "stop"
    results: Any,  # a multiprocessing Queue
    together: Any,  # a multiprocessing Barrier, for "get-together"
) -> None:
    """One process of a fleet: an EmmaAuth (with the cache, if any) that sends a request
    per command and reports ``(status or error name, access token sent, seconds taken)``."""
    from requests_emma import EmmaAuth

    cache = None if spec is None else make_cache(spec)
    auth = EmmaAuth(client_id, client_secret, base_url=base_url, token_cache=cache)
    url = base_url + "/v1/locations"
    with requests.Session() as session:
        while True:
            command = commands.get(timeout=120)
            if command == "stop":
                return
            if command == "get-together":
                together.wait(timeout=60)
            started = time.monotonic()
            try:
                response = session.get(url, auth=auth, timeout=30)
            except requests.RequestException as error:
                results.put((type(error).__name__, None, time.monotonic() - started))
                continue
            sent = response.request.headers.get("Authorization", "")
            results.put(
                (response.status_code, sent.removeprefix("Bearer "), time.monotonic() - started)
            )
