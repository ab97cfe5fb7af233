"""A fleet sharing one token: real processes, each with its own EmmaAuth, sharing a real file
or a real Redis; token calls counted on a FakeEmmaServer in the test process."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cache_workers
import pytest
from cache_stores import PROCESS_WAIT, Store, spawn
from cache_workers import CacheSpec
from redis_server import RedisServer

from requests_emma._caches.protocol import cache_key
from requests_emma.testing import FakeEmmaServer

# Every test here runs a fleet of real processes: slow (see setup.cfg), run on one Python in CI.
pytestmark = pytest.mark.slow


class Member:
    """One process of the fleet, driven by commands."""

    def __init__(
        self,
        spec: CacheSpec | None,
        server: FakeEmmaServer,
        together: Any,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        self.commands, self.results = spawn.Queue(), spawn.Queue()
        self.process = spawn.Process(
            target=cache_workers.fleet_member,
            args=(
                spec,
                server.base_url,
                client_id or server.client_id,
                client_secret or server.client_secret,
                self.commands,
                self.results,
                together,
            ),
        )
        self.process.start()

    def send(self, command: str) -> None:
        self.commands.put(command)

    def result(self) -> tuple[Any, str | None, float]:
        return self.results.get(timeout=PROCESS_WAIT)  # type: ignore[no-any-return]

    def get(self) -> tuple[Any, str | None, float]:
        """One request; its (status or error name, access token sent, seconds)."""
        self.send("get")
        return self.result()

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)  # type: ignore[arg-type]
        self.process.join(timeout=PROCESS_WAIT)

    def stop(self) -> None:
        if self.process.is_alive():
            self.send("stop")
            self.process.join(timeout=PROCESS_WAIT)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=PROCESS_WAIT)


class Fleet:
    """``count`` members started together; stopped by :meth:`stop`."""

    def __init__(self, spec: CacheSpec | None, server: FakeEmmaServer, count: int, **creds: str):
        self.together = spawn.Barrier(count)
        self.members = [Member(spec, server, self.together, **creds) for _ in range(count)]

    def get_together(self) -> list[tuple[Any, str | None, float]]:
        """Each member sends one request, all released at once by a barrier."""
        for member in self.members:
            member.send("get-together")
        return [member.result() for member in self.members]

    def stop(self) -> None:
        for member in self.members:
            member.stop()


@pytest.fixture
def fleets() -> Iterator[list[Fleet]]:
    """Fleets made in a test are stopped after it."""
    made: list[Fleet] = []
    yield made
    for fleet in made:
        fleet.stop()


@pytest.fixture
def spec(shared_store: Store) -> CacheSpec:
    """How each member builds the shared cache: a private directory, or a fresh prefix on the
    session's redis-server."""
    assert shared_store.spec is not None
    return shared_store.spec


def start(
    fleets: list[Fleet], spec: CacheSpec | None, server: FakeEmmaServer, count: int, **creds: str
) -> Fleet:
    fleet = Fleet(spec, server, count, **creds)
    fleets.append(fleet)
    return fleet


def test_a_cold_start_of_8_processes_makes_one_token_call(
    spec: CacheSpec, server: FakeEmmaServer, fleets: list[Fleet]
) -> None:
    """8 processes sending their first request at once: one issue-token call, eight 200s."""
    server.token_delay = 0.3  # a token call that takes a while: the window for a race
    results = start(fleets, spec, server, 8).get_together()
    assert [status for status, _, _ in results] == [200] * 8
    assert len({token for _, token, _ in results}) == 1
    assert server.token_calls == 1


def test_without_a_cache_each_process_makes_its_own_token_call(
    server: FakeEmmaServer, fleets: list[Fleet]
) -> None:
    """The same cold start without a shared cache: one token call per process."""
    results = start(fleets, None, server, 4).get_together()
    assert [status for status, _, _ in results] == [200] * 4
    assert server.token_calls == 4


def test_a_renewal_in_one_process_is_seen_by_the_others(
    spec: CacheSpec, server: FakeEmmaServer, fleets: list[Fleet]
) -> None:
    """After one process renews a rejected token, the others adopt its new token: no call."""
    first, second, third = start(fleets, spec, server, 3).members
    assert [m.get()[0] for m in (first, second, third)] == [200] * 3
    assert server.token_calls == 1
    server.expire_access_tokens()
    status, renewed, _ = first.get()  # 401, renewal (a refresh), replay
    assert status == 200 and server.token_calls == 2
    for other in (second, third):
        status, token, _ = other.get()  # 401, adopt from the cache, replay
        assert (status, token) == (200, renewed)
    assert server.token_calls == 2


def test_a_rotated_refresh_token_is_used_across_processes(
    spec: CacheSpec, server: FakeEmmaServer, fleets: list[Fleet]
) -> None:
    """A process renews with the refresh token another process rotated, not its own
    revoked one: every renewal is a refresh, no fallback to issue-token."""
    first, second = start(fleets, spec, server, 2).members
    assert first.get()[0] == 200 and second.get()[0] == 200  # second adopts first's token
    server.expire_access_tokens()
    assert first.get()[0] == 200  # first refreshes: the refresh token second holds is revoked
    assert second.get()[0] == 200  # second adopts that token, and its rotated refresh token
    server.expire_access_tokens()
    assert second.get()[0] == 200  # second refreshes with the rotated refresh token
    assert first.get()[0] == 200  # and first adopts the result
    assert (server.issue_calls, server.refresh_calls) == (1, 2)


def test_a_lock_holder_killed_in_a_renewal_does_not_stop_the_fleet(
    spec: CacheSpec, server: FakeEmmaServer, fleets: list[Fleet]
) -> None:
    """A process killed (SIGKILL) while it holds the cache lock inside a renewal: the next
    process gets the lock (at once for a file, within the lock timeout for Redis) and renews."""
    if spec.kind == "redis":
        spec = CacheSpec(spec.kind, spec.where, lock_timeout=2.0, prefix=spec.prefix)
    in_token_call, release = threading.Event(), threading.Event()

    def stall_first_call() -> None:
        if not in_token_call.is_set():
            in_token_call.set()
            release.wait(PROCESS_WAIT)

    server.token_hook = stall_first_call
    doomed, survivor = start(fleets, spec, server, 2).members
    try:
        doomed.send("get")
        assert in_token_call.wait(
            PROCESS_WAIT
        )  # doomed holds the cache lock, inside its token call
        doomed.kill()
    finally:
        release.set()
    status, _, seconds = survivor.get()
    assert status == 200
    assert seconds < PROCESS_WAIT
    assert server.issue_calls == 2  # the dead process's call, and the survivor's


def test_redis_stopped_in_the_middle_of_a_run_fails_no_request(
    own_redis_server: RedisServer, server: FakeEmmaServer, fleets: list[Fleet]
) -> None:
    """With Redis gone, renewals fall back to each process's memory: every request is a 200,
    each within a bounded delay."""
    spec = CacheSpec("redis", own_redis_server.url)
    fleet = start(fleets, spec, server, 3)
    assert [status for status, _, _ in fleet.get_together()] == [200] * 3
    assert server.token_calls == 1
    own_redis_server.stop()
    server.expire_access_tokens()  # every process must renew now, without the cache
    results = fleet.get_together()
    assert [status for status, _, _ in results] == [200] * 3
    assert max(seconds for _, _, seconds in results) < 10.0  # short Redis timeouts, wide margin
    assert [member.get()[0] for member in fleet.members] == [200] * 3  # and it goes on


def test_a_corrupt_cache_file_is_ignored_and_rewritten(
    token_directory: Path, server: FakeEmmaServer, fleets: list[Fleet]
) -> None:
    """Garbage in the cache file: the fleet starts anyway with one token call and rewrites it."""
    entry = (
        token_directory
        / f"{cache_key(server.base_url, server.client_id, server.client_secret)}.json"
    )
    entry.write_bytes(b'{"schema": 1, "access_token": "trunc')
    results = start(fleets, CacheSpec("file", str(token_directory)), server, 4).get_together()
    assert [status for status, _, _ in results] == [200] * 4
    assert server.token_calls == 1
    credentials = (server.base_url, server.client_id, server.client_secret)
    token = cache_workers.token_in(entry.read_bytes(), entry.stem, credentials)
    assert token is not None and token.access_token == results[0][1]


def test_two_clients_sharing_a_cache_are_kept_apart(
    spec: CacheSpec, server: FakeEmmaServer, fleets: list[Fleet]
) -> None:
    """Two client ids get a token each; the right id with a wrong secret gets no token at all."""
    secret = server.client_secret
    server.client_id = None  # type: ignore[assignment]  # accept any client id, this secret only
    client_a = start(fleets, spec, server, 2, client_id="client-a", client_secret=secret)
    a_results = client_a.get_together()
    client_b = start(fleets, spec, server, 2, client_id="client-b", client_secret=secret)
    b_results = client_b.get_together()
    assert [status for status, _, _ in a_results + b_results] == [200] * 4
    a_tokens = {token for _, token, _ in a_results}
    b_tokens = {token for _, token, _ in b_results}
    assert len(a_tokens) == 1 and len(b_tokens) == 1 and a_tokens != b_tokens
    assert server.issue_calls == 2
    intruder = start(fleets, spec, server, 1, client_id="client-a", client_secret="wrong")
    assert intruder.members[0].get()[0] == "CredentialsError"
    assert server.issue_calls == 3


def test_a_rate_limit_met_by_one_process_holds_off_the_others(
    spec: CacheSpec, server: FakeEmmaServer, fleets: list[Fleet]
) -> None:
    """emma answers 429 with Retry-After: 60: the process that called gets the error, and
    the others sharing the cache fail at once too, with no token call of their own."""
    server.fail_next_token_calls(100, 429, headers={"Retry-After": "60"})
    first, *others = start(fleets, spec, server, 3).members
    assert first.get()[0] == "TokenRequestError"
    assert server.token_calls == 1
    for member in others:
        status, _, seconds = member.get()
        assert status == "TokenRequestError" and seconds < 10.0
    assert server.token_calls == 1
