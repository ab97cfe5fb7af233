"""RedisTokenCache on the Redis deployments fleets run: a Cluster of three masters, a master
and a replica under a Sentinel, TLS with ACL users, a full Redis, valkey-py. Each is started
for real on loopback (shared by the tests here), and fleets of real processes share tokens
through it against a FakeEmmaServer."""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import valkey
from cache_workers import CacheSpec
from redis_server import RedisServer, redis_cluster, redis_sentinel, wait_for
from test_fleet import Fleet

from requests_emma import EmmaAuth, RedisTokenCache, RetryPolicy
from requests_emma._caches.protocol import cache_key
from requests_emma._caches.redis_cache import DEFAULT_PREFIX
from requests_emma.testing import FakeEmmaServer

KEY = cache_key("https://api.emma.ms/external", "client-id", "secret")
ENTRY = b"\x01sealed entry bytes\x00\xff, opaque to the cache"
PASSWORD = "hunter2-acl-password"
#: The ACL of the fleets how-to: the least the cache needs.
MINIMAL_ACL = "+get +getrange +set +del +pttl +pexpire +evalsha +script|load"


@pytest.fixture(scope="session")
def cluster() -> Iterator[list[RedisServer]]:
    with redis_cluster() as nodes:
        yield nodes


@pytest.fixture(scope="session")
def sentinel() -> Iterator[tuple[RedisServer, RedisServer, RedisServer]]:
    with redis_sentinel() as servers:
        yield servers


@pytest.fixture(scope="session")
def tls_server() -> Iterator[RedisServer]:
    """TLS only, with two ACL users on the default prefix: ``emma`` with the minimal ACL and
    ``kv`` with what an operator might give a key-value cache (no scripting)."""
    with RedisServer(tls=True) as server:
        admin = server.client()
        for user, rules in (("emma", MINIMAL_ACL), ("kv", "+@read +@write")):
            admin.execute_command(
                "ACL", "SETUSER", user, "on", f">{PASSWORD}", f"~{DEFAULT_PREFIX}*", *rules.split()
            )
        admin.close()
        yield server


def url_of(server: RedisServer, user: str) -> str:
    assert server.tls is not None
    return f"rediss://{user}:{PASSWORD}@127.0.0.1:{server.port}/0?ssl_ca_certs={server.tls.ca}"


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


@contextlib.contextmanager
def fleet_of(spec: CacheSpec, server: FakeEmmaServer, count: int) -> Iterator[Fleet]:
    fleet = Fleet(spec, server, count)
    try:
        yield fleet
    finally:
        fleet.stop()


def one_token_call_for(spec: CacheSpec, server: FakeEmmaServer, count: int = 4) -> None:
    """``count`` processes on a cold start at once: all succeed, one token call between them,
    nobody waits long."""
    server.token_delay = 0.3  # the window for a race
    with fleet_of(spec, server, count) as fleet:
        results = fleet.get_together()
        assert [status for status, _, _ in results] == [200] * count
        assert len({token for _, token, _ in results}) == 1
        assert max(seconds for _, _, seconds in results) < 10.0  # not a lock's TTL
    assert server.token_calls == 1


# -- Cluster -------------------------------------------------------------------------------


def test_a_cluster_url_keeps_the_entry_and_its_lock_in_one_slot(
    cluster: list[RedisServer],
) -> None:
    """redis+cluster:// makes a Cluster client; the entry and its lock hash to one slot."""
    cache = RedisTokenCache.from_url(f"redis+cluster://127.0.0.1:{cluster[1].port}")
    assert repr(cache).startswith(f"RedisTokenCache(redis+cluster://127.0.0.1:{cluster[1].port}")
    cache.save(KEY, ENTRY, 60.0)
    assert cache.load(KEY) == ENTRY
    name = cache._name(KEY)
    with cache.lock(KEY, 5.0):
        assert cache.client.exists(name + ":lock") == 1
    assert cache.client.keyslot(name) == cache.client.keyslot(name + ":lock")


def test_a_plain_url_at_a_cluster_node_is_said_once_and_fails_no_request(
    cluster: list[RedisServer], server: FakeEmmaServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A redis:// URL naming a node that does not own the entry's slot: one WARNING saying it
    is a Cluster node and what to write, no "unavailable", and every renewal succeeds."""
    name = DEFAULT_PREFIX + "{" + cache_key(*server_credentials(server)) + "}"
    node = next(node for node in cluster if moved(node, name))
    cache = RedisTokenCache.from_url(node.url)
    with caplog.at_level(logging.WARNING, logger="requests_emma"):
        for _ in range(3):  # three processes' worth of renewals, on one cache object
            auth = EmmaAuth(
                server.client_id, server.client_secret, base_url=server.base_url, token_cache=cache
            )
            assert auth.get_token().access_token
    [warning] = warnings_in(caplog)
    assert "Redis Cluster node" in warning and "redis+cluster://" in warning
    assert "unavailable" not in warning


def server_credentials(server: FakeEmmaServer) -> tuple[str, str, str]:
    return server.base_url, server.client_id, server.client_secret


def moved(node: RedisServer, name: str) -> bool:
    client = node.client()
    try:
        client.get(name)
    except redis.exceptions.MovedError:
        return True
    finally:
        client.close()
    return False


@pytest.mark.slow
def test_a_cluster_fleet_makes_one_token_call(
    cluster: list[RedisServer], server: FakeEmmaServer
) -> None:
    """4 processes on redis+cluster:// at a cold start: one token call."""
    one_token_call_for(CacheSpec("redis", f"redis+cluster://127.0.0.1:{cluster[0].port}"), server)


# -- TLS and ACL users ---------------------------------------------------------------------


def test_the_minimal_acl_is_enough(
    tls_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Over TLS, a user with the minimal ACL saves, loads, locks and releases, and gives a
    lock left without a TTL one, with no refusal logged."""
    cache = RedisTokenCache.from_url(url_of(tls_server, "emma"), lock_timeout=1.0)
    admin = tls_server.client()
    with caplog.at_level(logging.WARNING, logger="requests_emma"):
        cache.save(KEY, ENTRY, 60.0)
        assert cache.load(KEY) == ENTRY
        admin.set(cache._name(KEY) + ":lock", "left behind")
        with cache.lock(KEY, 10.0):
            pass
    assert admin.exists(cache._name(KEY) + ":lock") == 0
    assert not any("refused" in message for message in warnings_in(caplog))
    assert PASSWORD not in repr(cache)


def test_without_scripting_the_lock_is_released_and_that_is_said_once(
    tls_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A user without EVALSHA: the lock is released all the same (GET and DEL), and one
    WARNING names the missing permission."""
    cache = RedisTokenCache.from_url(url_of(tls_server, "kv"))
    admin = tls_server.client()
    with caplog.at_level(logging.WARNING, logger="requests_emma"):
        for _ in range(3):
            with cache.lock(KEY, 5.0):
                assert admin.exists(cache._name(KEY) + ":lock") == 1
            assert admin.exists(cache._name(KEY) + ":lock") == 0
    [warning] = warnings_in(caplog)
    assert "'evalsha'" in warning and "released by GET and DEL" in warning


@pytest.mark.slow
def test_a_tls_fleet_with_the_minimal_acl_makes_one_token_call(
    tls_server: RedisServer, server: FakeEmmaServer
) -> None:
    """4 processes over rediss:// as the minimal-ACL user: one token call."""
    one_token_call_for(CacheSpec("redis", url_of(tls_server, "emma")), server)


@pytest.mark.slow
def test_a_fleet_without_scripting_is_not_held_up_by_the_lock(
    tls_server: RedisServer, server: FakeEmmaServer
) -> None:
    """4 processes as a user without scripting: every request succeeds at once, one token
    call (the lock was stranded for its TTL, and waiters failed at their deadline)."""
    one_token_call_for(CacheSpec("redis", url_of(tls_server, "kv")), server)


def test_the_acl_of_the_fleets_how_to_is_the_minimal_acl(tls_server: RedisServer) -> None:
    """The ACL SETUSER command in docs/how-to/fleets.md, run as written (for another user),
    gives a user with which the cache works and logs no refusal."""
    page = (Path(__file__).parent.parent / "docs" / "how-to" / "fleets.md").read_text()
    command = re.search(r"redis-cli (ACL SETUSER .*?)\n```", page, re.DOTALL)
    assert command is not None
    words = shlex.split(command.group(1).replace("\\\n", " "))
    assert " ".join(words[6:]) == MINIMAL_ACL
    admin = tls_server.client()
    admin.execute_command(*[{"emma": "docs", ">password": f">{PASSWORD}"}.get(w, w) for w in words])
    cache = RedisTokenCache.from_url(url_of(tls_server, "docs"))
    cache.save(KEY, ENTRY, 60.0)
    with cache.lock(KEY, 5.0):
        assert cache.load(KEY) == ENTRY
    assert admin.exists(cache._name(KEY) + ":lock") == 0


# -- the lock and the entry, on any Redis ---------------------------------------------------


@pytest.mark.parametrize("ttl", [None, 3600], ids=["no TTL", "an hour"])
def test_a_lock_left_with_no_or_a_long_ttl_is_given_lock_timeout(
    redis_server: RedisServer, ttl: int | None
) -> None:
    """A lock key left with no TTL, or one longer than lock_timeout, gets lock_timeout from
    the first waiter: the lock is taken after about that, not never (or in an hour)."""
    cache = RedisTokenCache.from_url(redis_server.url, prefix="stray:", lock_timeout=1.0)
    cache.client.set(cache._name(KEY) + ":lock", "left behind", ex=ttl)
    with cache.lock(KEY, 20.0):
        assert cache.client.get(cache._name(KEY) + ":lock") != b"left behind"


def test_the_lock_lives_no_longer_than_a_renewal(redis_server: RedisServer) -> None:
    """The lock's TTL is the renewal's deadline and a few seconds: a holder that dies costs
    the fleet one renewal's time."""
    cache = RedisTokenCache.from_url(redis_server.url, prefix="ttl:")
    with cache.lock(KEY, 5.0):
        ttl = cache.client.pttl(cache._name(KEY) + ":lock") / 1000
    assert RetryPolicy().deadline < ttl <= RetryPolicy().deadline + 5.0


def test_load_never_reads_a_large_value_whole(redis_server: RedisServer) -> None:
    """A 4 MB value under an entry's name reads as "not ours", and Redis sends no more than
    an entry's size for it."""
    cache = RedisTokenCache.from_url(redis_server.url, prefix="large:")
    cache.client.set(cache._name(KEY), b"A" * 4_000_000)
    sent_before = cache.client.info("stats")["total_net_output_bytes"]
    assert cache.load(KEY) == b""
    assert cache.client.info("stats")["total_net_output_bytes"] - sent_before < 200_000


def test_a_full_redis_is_said_once_and_fails_no_request(
    server: FakeEmmaServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis at maxmemory with noeviction: one WARNING naming maxmemory, no "unavailable"
    per renewal, and every renewal succeeds."""
    with RedisServer("--maxmemory", "4mb", "--maxmemory-policy", "noeviction") as full:
        admin = full.client()
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for number in range(1000):
                admin.set(f"filler:{number}", b"x" * 100_000)
        cache = RedisTokenCache.from_url(full.url)
        with caplog.at_level(logging.WARNING, logger="requests_emma"):
            for _ in range(3):
                auth = EmmaAuth(
                    server.client_id,
                    server.client_secret,
                    base_url=server.base_url,
                    token_cache=cache,
                )
                assert auth.get_token().access_token
        [warning] = warnings_in(caplog)
        assert "maxmemory" in warning


# -- valkey-py -----------------------------------------------------------------------------


def test_a_valkey_client_works_as_a_redis_py_one(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A valkey.Valkey client saves, loads and locks; a lock lost before its release (valkey's
    own LockNotOwnedError) is a WARNING, not an error."""
    cache = RedisTokenCache(valkey.Valkey.from_url(redis_server.url), prefix="valkey:")
    cache.save(KEY, ENTRY, 60.0)
    assert cache.load(KEY) == ENTRY
    with caplog.at_level(logging.WARNING, logger="requests_emma"), cache.lock(KEY, 5.0):
        cache.client.delete(cache._name(KEY) + ":lock")  # as if its TTL had run out
    [warning] = warnings_in(caplog)
    assert "it had expired" in warning


def test_without_redis_py_from_url_uses_valkey_py(redis_server: RedisServer) -> None:
    """With redis-py not importable, from_url makes a valkey-py client that works."""
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from requests_emma import RedisTokenCache\n"
        f"cache = RedisTokenCache.from_url({redis_server.url!r}, prefix='no-redis-py:')\n"
        "cache.save('k', b'entry', 60.0)\n"
        "with cache.lock('k', 5.0):\n"
        "    print(type(cache.client).__module__, cache.load('k'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["valkey.client", "b'entry'"]


@pytest.mark.slow
def test_a_valkey_fleet_makes_one_token_call(
    redis_server: RedisServer, server: FakeEmmaServer
) -> None:
    """4 processes on valkey-py clients: one token call."""
    one_token_call_for(CacheSpec("valkey", redis_server.url, prefix="valkey-fleet:"), server)


# -- Sentinel (last: the failover changes which server is the master) ----------------------


def test_sentinel_caches_name_the_service_and_its_sentinels(
    sentinel: tuple[RedisServer, RedisServer, RedisServer],
) -> None:
    """repr of a cache from a Sentinel URL, or on a master_for client, names the service and
    the sentinels, and no made-up localhost:6379."""
    port = sentinel[2].port
    cache = RedisTokenCache.from_url(f"redis+sentinel://127.0.0.1:{port}/mymaster/0")
    assert repr(cache).startswith(f"RedisTokenCache(redis+sentinel://127.0.0.1:{port}/mymaster/0")
    cache.save(KEY, ENTRY, 60.0)
    assert cache.load(KEY) == ENTRY
    client = redis.sentinel.Sentinel([("127.0.0.1", port)]).master_for("mymaster")
    assert repr(RedisTokenCache(client)).startswith(
        f"RedisTokenCache(redis+sentinel://127.0.0.1:{port}/mymaster"
    )


@pytest.mark.slow
def test_a_sentinel_failover_mid_run_fails_no_request(
    sentinel: tuple[RedisServer, RedisServer, RedisServer], server: FakeEmmaServer
) -> None:
    """A fleet on a Sentinel URL; the Sentinel fails the master over to the replica, then
    every token is revoked: every request still succeeds."""
    _master, replica, watcher = sentinel
    spec = CacheSpec("redis", f"redis+sentinel://127.0.0.1:{watcher.port}/mymaster")
    with fleet_of(spec, server, 3) as fleet:
        assert [status for status, _, _ in fleet.get_together()] == [200] * 3
        admin = watcher.client()
        admin.execute_command("SENTINEL", "FAILOVER", "mymaster")
        wait_for(
            lambda: admin.sentinel_get_master_addr_by_name("mymaster")[1] == replica.port,
            "the Sentinel did not fail over",
        )
        new_master = replica.client()
        wait_for(lambda: new_master.info("replication")["role"] == "master", "no new master")
        server.expire_access_tokens()
        for _ in range(2):
            assert [status for status, _, _ in fleet.get_together()] == [200] * 3
