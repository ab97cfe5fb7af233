"""Code that the token cache tests run in child processes (multiprocessing, spawn).

A cache is passed as a spec, ``("file", directory, lock_timeout)`` or ``("redis", url,
lock_timeout)``, and built in the child: a Redis client holds sockets and does not cross a
process boundary.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from requests_emma import FileTokenCache, RedisTokenCache, Token, TokenCache
from requests_emma._wire import issue_token_body, parse_token

CacheSpec = tuple[str, str, float]


def make_cache(spec: CacheSpec) -> TokenCache:
    kind, where, lock_timeout = spec
    if kind == "file":
        return FileTokenCache(where, lock_timeout=lock_timeout)
    return RedisTokenCache.from_url(where, lock_timeout=lock_timeout, blocking_timeout=30.0)


def issue_token(base_url: str, client_id: str, client_secret: str) -> Token:
    """One real issue-token call to the test server."""
    sent_at = time.time()
    response = requests.post(
        base_url + "/v1/issue-token", json=issue_token_body(client_id, client_secret), timeout=30
    )
    response.raise_for_status()
    return parse_token(response.content, sent_at).to_token(sent_at)


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
    with cache.lock(key):
        token = cache.load(key)
        if token is not None:
            results.put(("adopted", token.access_token))
            return
        token = issue_token(*credentials)
        cache.save(key, token)
    results.put(("renewed", token.access_token))


def hold_lock(spec: CacheSpec, key: str, held: Any) -> None:
    """Take the cache lock, say so through the ``held`` Event, and keep it (until killed;
    two minutes at most)."""
    cache = make_cache(spec)
    with cache.lock(key):
        held.set()
        time.sleep(120)
