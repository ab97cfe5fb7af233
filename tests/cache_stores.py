"""The real shared caches the fleet tests run against: a private directory, or a fresh prefix
on the session's redis-server. Import ``shared_cache`` into a test module to use it."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from redis_server import RedisServer

from requests_emma import FileTokenCache, RedisTokenCache, TokenCache


@pytest.fixture(params=["file", "redis"])
def shared_cache(request: pytest.FixtureRequest, tmp_path: Path) -> TokenCache:
    """A FileTokenCache on a private directory, or a RedisTokenCache on a real redis-server."""
    if request.param == "file":
        directory = tmp_path / "tokens"
        directory.mkdir(mode=0o700)
        return FileTokenCache(directory)
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    return RedisTokenCache.from_url(redis_server.url, prefix=f"shared-{secrets.token_hex(4)}:")
