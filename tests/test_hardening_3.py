"""Hardening, round 3: event loops that end or stop, clocks that disagree across a fleet, old
entries put back, and what still leaked. Each test checks one point of the round against a
real FakeEmmaServer, real caches, threads and event loops."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cache_stores import MemoryCache, Store
from cli_runs import run_cli
from fakes import WAIT, FakeClock, auth_for, use_clock
from otel_kit import install

from requests_emma import (
    EmmaAuth,
    EmmaAuthError,
    FileTokenCache,
    RetryPolicy,
    TokenCache,
    TokenRequestError,
)
from requests_emma._caches.protocol import cache_key
from requests_emma._core.exchange import Failure, failure_outcome
from requests_emma.httpx import EmmaHttpxAuth
from requests_emma.testing import FakeEmmaServer

#: A proxy URL with a password, and a port no URL parser takes.
PROXY_PASSWORD = "proxy-pw-8e1f"
BAD_PROXY = f"http://user:{PROXY_PASSWORD}@proxy.invalid:80800"
#: A host whose clock runs this far from the others' (seconds).
SKEW = 600.0


def _error_of(auth: EmmaAuth) -> EmmaAuthError:
    with pytest.raises(EmmaAuthError) as raised:
        auth.get_token()
    return raised.value


def _refresh_tokens_received(server: FakeEmmaServer) -> list[str]:
    return [
        json.loads(request.body)["refreshToken"]
        for request in server.requests
        if request.path == "/v1/refresh-token"
    ]


class _Gate:
    """A token hook that holds the server's answer to its ``nth`` token call (1-based)
    until opened, and says when that call arrived."""

    def __init__(self, nth: int) -> None:
        self.nth, self.calls = nth, 0
        self.arrived, self.opened = threading.Event(), threading.Event()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.calls += 1
            mine = self.calls == self.nth
        if mine:
            self.arrived.set()
            self.opened.wait(WAIT * 3)


@pytest.fixture
def gate(server: FakeEmmaServer) -> Iterator[_Gate]:
    """Holds the answer to the server's second token call (the first is issue-token)."""
    hook = server.token_hook = _Gate(2)
    yield hook
    hook.opened.set()


def _httpx_auth(server: FakeEmmaServer, **options: object) -> EmmaHttpxAuth:
    return EmmaHttpxAuth(
        server.client_id,
        server.client_secret,
        base_url=server.base_url,
        **options,  # type: ignore[arg-type]
    )


# -- event loops that end or stop (points 1 to 4) ----------------------------------------------


class _WatchedLocks:
    """A real token cache, with a count of the lock waits in progress."""

    def __init__(self, cache: TokenCache) -> None:
        self.cache, self.waiting = cache, 0
        self.changed = threading.Condition()

    def load(self, key: str) -> bytes | None:
        return self.cache.load(key)

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        self.cache.save(key, entry, ttl)

    def lock(self, key: str, timeout: float) -> _WatchedLock:
        return _WatchedLock(self, self.cache.lock(key, timeout))

    def waits_over(self) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.waiting == 0, WAIT)


class _WatchedLock:
    def __init__(self, watch: _WatchedLocks, lock: contextlib.AbstractContextManager[object]):
        self.watch, self.lock = watch, lock

    def __enter__(self) -> object:
        with self.watch.changed:
            self.watch.waiting += 1
        try:
            return self.lock.__enter__()
        finally:
            with self.watch.changed:
                self.watch.waiting -= 1
                self.watch.changed.notify_all()

    def __exit__(self, *exc_info: object) -> None:
        self.lock.__exit__(None, None, None)


class _LockTimesOutOnce(MemoryCache):
    """An in-memory cache whose first lock wait times out (another process renews), with a
    record of what its lock did and when the token call came."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[object]:
        if "timed out" not in self.events:
            self.events.append("timed out")
            raise TimeoutError("held by another process")
        self.events.append("taken")
        yield None
        self.events.append("released")


def test_an_async_renewal_holds_the_lock_it_takes_after_a_lock_wait_timed_out(
    server: FakeEmmaServer, caplog: pytest.LogCaptureFixture
) -> None:
    """On an event loop, a lock taken at the second try (the first wait timed out) is held
    through the token call and released by the renewal's Unlock, with no cache warning."""
    cache = _LockTimesOutOnce()
    server.token_hook = lambda: cache.events.append("token call")
    auth = _httpx_auth(server, token_cache=cache)
    with caplog.at_level("WARNING", logger="requests_emma"):
        asyncio.run(auth.aget_token())
    assert cache.events == ["timed out", "taken", "token call", "released"]
    assert not caplog.records


def test_a_cache_lock_taken_after_the_event_loop_ended_is_released(
    server: FakeEmmaServer, shared_store: Store
) -> None:
    """A cache lock an ended event loop's renewal got after it stopped waiting is released."""
    # The garbage collector is off: no finalizer releases the lock by chance.
    key = cache_key(server.base_url, server.client_id, server.client_secret)
    watched = _WatchedLocks(shared_store.other())
    auth = _httpx_auth(server, token_cache=watched, retry=RetryPolicy(deadline=WAIT))
    holder = shared_store.other().lock(key, WAIT)
    holder.__enter__()

    async def timed_out_request() -> None:
        async with httpx.AsyncClient(auth=auth) as client:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(client.get(server.base_url + "/v1/locations"), 1.0)

    gc.disable()
    try:
        try:
            asyncio.run(timed_out_request())
        finally:
            holder.__exit__(None, None, None)
        assert watched.waits_over()
        with shared_store.other(lock_timeout=WAIT).lock(key, WAIT):
            pass  # raises if the lock stayed taken
    finally:
        gc.enable()
    assert server.token_calls == 0


def test_asyncio_run_per_call_never_sends_a_refresh_token_twice(
    server: FakeEmmaServer, gate: _Gate
) -> None:
    """asyncio.run() per request: no refresh token is sent twice, cancelled calls included."""
    auth = _httpx_auth(server)
    clock = use_clock(auth, FakeClock())

    async def call(wait_for_refresh: bool) -> int:
        async with httpx.AsyncClient(auth=auth) as client:
            response = await client.get(server.base_url + "/v1/locations")
            if wait_for_refresh:  # the early renewal's refresh call reached emma
                assert await asyncio.to_thread(gate.arrived.wait, WAIT)
            return response.status_code

    assert asyncio.run(call(False)) == 200  # issue-token
    clock.advance(server.token_lifetime - 10)  # inside the refresh margin
    assert asyncio.run(call(True)) == 200  # the early renewal ends with the loop
    gate.opened.set()
    for _ in range(3):
        assert asyncio.run(call(False)) == 200
        clock.advance(1.0)
    received = _refresh_tokens_received(server)
    assert received and len(received) == len(set(received)) and server.refresh_reuses == 0


def test_a_thread_giving_up_its_loops_renewal_does_not_resend_its_refresh_token(
    server: FakeEmmaServer, gate: _Gate
) -> None:
    """A thread giving up its own loop's renewal issues a token, not resending its refresh."""
    auth = _httpx_auth(server)
    clock = use_clock(auth, FakeClock())
    auth.get_token()
    clock.advance(server.token_lifetime + 1)  # expired: callers wait for a renewal

    async def block_the_loop() -> str:
        waiting = asyncio.ensure_future(auth.aget_token())
        assert await asyncio.to_thread(gate.arrived.wait, WAIT)  # the refresh call is out
        token = auth.get_token()  # blocks this loop: its renewal cannot land
        gate.opened.set()
        await waiting
        return token.access_token

    access_token = asyncio.run(block_the_loop())
    assert server.is_valid_access_token(access_token)
    received = _refresh_tokens_received(server)
    assert len(received) == 1 and server.refresh_reuses == 0
    assert server.issue_calls == 2


def test_an_async_waiter_gives_up_a_renewal_whose_loop_stopped(
    server: FakeEmmaServer,
) -> None:
    """A task waiting for a renewal whose loop stopped gives it up in time and gets a token."""
    gate = server.token_hook = _Gate(1)
    auth = _httpx_auth(server, retry=RetryPolicy(deadline=0.5, attempts=1))
    loop = asyncio.new_event_loop()
    background = threading.Thread(target=loop.run_forever, daemon=True)
    background.start()
    try:
        asyncio.run_coroutine_threadsafe(auth.aget_token(), loop)
        assert gate.arrived.wait(WAIT)  # its token call is out, its loop then stops
        loop.call_soon_threadsafe(loop.stop)
        background.join(WAIT)

        async def wait_for_a_token() -> str:
            token = await asyncio.wait_for(auth.aget_token(), 30.0)
            return token.access_token

        assert server.is_valid_access_token(asyncio.run(wait_for_a_token()))
    finally:
        gate.opened.set()


# -- clocks that disagree (points 5 and 6) -----------------------------------------------------


def test_a_cached_hold_lasts_its_seconds_on_a_host_whose_clock_is_behind(
    server: FakeEmmaServer, tmp_path: Path
) -> None:
    """Retry-After: 3 saved by one host holds a host 10 minutes behind for 3 s, not 603."""
    server.fail_next_token_calls(1, 429, headers={"Retry-After": "3"})
    first = auth_for(server, token_cache=FileTokenCache(tmp_path), retry=RetryPolicy(attempts=1))
    behind = auth_for(server, token_cache=FileTokenCache(tmp_path))
    use_clock(first, FakeClock())
    use_clock(behind, FakeClock(wall_start=1_700_000_000.0 - SKEW))
    assert isinstance(_error_of(first), TokenRequestError)
    held = _error_of(behind)
    assert "no token call made" in str(held)
    assert held.retry_after is not None and held.retry_after <= 3.0  # type: ignore[attr-defined]
    assert behind.status().retry_after is not None and behind.status().retry_after <= 3.0
    assert server.token_calls == 1


def test_a_cached_token_lasts_its_lifetime_on_a_host_behind_the_saver(
    tmp_path: Path,
) -> None:
    """A 30 s token saved by a host 10 minutes ahead serves another host at most 30 s."""
    with FakeEmmaServer(token_lifetime=30) as server:
        ahead = auth_for(server, token_cache=FileTokenCache(tmp_path))
        other = auth_for(server, token_cache=FileTokenCache(tmp_path))
        use_clock(ahead, FakeClock(wall_start=1_700_000_000.0 + SKEW))
        use_clock(other, FakeClock())
        token = ahead.get_token()
        assert other.get_token().access_token == token.access_token  # from the cache
        valid_for = other.status().valid_for
        assert valid_for is not None and 0 < valid_for <= 30.0
        assert server.token_calls == 1


# -- what still leaked (points 9, 11 and 12) ---------------------------------------------------


def test_a_proxy_password_stays_out_of_the_token_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad HTTPS_PROXY's password is in no TokenRequestError, cause or status()."""
    monkeypatch.setenv("HTTPS_PROXY", BAD_PROXY)
    auth = EmmaAuth("client", "secret", base_url="https://emma.invalid/external")
    error = _error_of(auth)
    assert isinstance(error, TokenRequestError) and "InvalidURL" in str(error)
    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and len(chain) < 10:
        chain.append(link)
        link = link.__cause__ or link.__context__
    assert not [link for link in chain if PROXY_PASSWORD in str(link)]
    assert PROXY_PASSWORD not in str(auth.status().last_error)


def test_a_password_with_a_slash_or_an_at_sign_is_left_out_whole() -> None:
    """A failure's URL user info goes whole, a password with an unescaped / or @ too."""
    cause = ValueError("Failed to parse: 'http://user:pw/x@y-z@proxy.invalid:80800'")
    outcome = failure_outcome(Failure.OTHER, cause, sent_at=0.0, sent_wall=0.0)
    assert outcome.reason == (
        "request failed (ValueError: Failed to parse: 'http://***@proxy.invalid:80800')"
    )
    assert str(cause) == "Failed to parse: 'http://***@proxy.invalid:80800'"


def test_a_proxy_password_stays_out_of_the_token_call_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad HTTPS_PROXY's password is not in the token call span's status."""
    otel = install()
    otel.clear()
    monkeypatch.setenv("HTTPS_PROXY", BAD_PROXY)
    _error_of(EmmaAuth("client", "secret", base_url="https://emma.invalid/external"))
    [span] = [span for span in otel.spans() if span.name == "POST /v1/issue-token"]
    otel.clear()
    assert span.status.description is not None and "InvalidURL" in span.status.description
    assert PROXY_PASSWORD not in span.status.description


def test_the_cli_calls_a_bad_proxy_url_a_configuration_error(tmp_path: Path) -> None:
    """`check` with an unparsable HTTPS_PROXY: exit 2 (configuration), no password shown."""
    env = {
        "EMMA_CLIENT_ID": "client",
        "EMMA_CLIENT_SECRET": "secret",
        "EMMA_API_URL": "https://emma.invalid/external",
        "HTTPS_PROXY": BAD_PROXY,
    }
    result = run_cli("check", "--no-cache", env=env, cache_home=tmp_path)
    assert result.returncode == 2, result.stderr
    assert PROXY_PASSWORD not in result.stderr and "HTTPS_PROXY" in result.stderr


def test_a_pickle_holds_no_client_secret_from_the_environment(
    server: FakeEmmaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret from the environment is not pickled; the copy reads the environment again."""
    monkeypatch.setenv("EMMA_CLIENT_ID", server.client_id)
    monkeypatch.setenv("EMMA_CLIENT_SECRET", server.client_secret)
    data = pickle.dumps(EmmaAuth(base_url=server.base_url))
    assert server.client_secret.encode() not in data
    assert pickle.loads(data).get_token().access_token
    assert server.issue_calls == 1


def test_a_pickle_holds_a_client_secret_passed_explicitly(server: FakeEmmaServer) -> None:
    """A secret passed as an argument is pickled (the copy needs it), as documented."""
    data = pickle.dumps(auth_for(server))
    assert server.client_secret.encode() in data
    assert pickle.loads(data).get_token().access_token


def test_a_retry_after_of_a_day_holds_token_calls_for_an_hour(server: FakeEmmaServer) -> None:
    """Retry-After: 86400 holds token calls for an hour, in status() and the next error."""
    server.fail_next_token_calls(1, 429, headers={"Retry-After": "86400"})
    auth = auth_for(server)
    use_clock(auth, FakeClock())
    _error_of(auth)
    assert auth.status().retry_after == pytest.approx(3600.0)
    held = _error_of(auth)
    assert held.retry_after == pytest.approx(3600.0)  # type: ignore[attr-defined]
    assert server.token_calls == 1


# -- entries that come back (point 7) ----------------------------------------------------------


def test_an_old_entry_put_back_costs_one_renewal(
    server: FakeEmmaServer, shared_store: Store
) -> None:
    """An old entry put back costs the process adopting it one renewal, the saver none."""
    clock = FakeClock()
    key = cache_key(server.base_url, server.client_id, server.client_secret)
    saver = auth_for(server, token_cache=shared_store.other())
    use_clock(saver, clock)
    saver.get_token()
    backup = shared_store.read_raw(key)
    assert backup is not None
    clock.advance(server.token_lifetime + 1)
    current = saver.get_token()  # refreshed: the backup's refresh token is rotated away
    shared_store.write_raw(key, backup)
    calls = server.token_calls
    newcomer = auth_for(server, token_cache=shared_store.other())
    use_clock(newcomer, clock)
    assert server.is_valid_access_token(newcomer.get_token().access_token)
    assert server.token_calls - calls == 2  # the refused refresh, then issue-token
    assert saver.get_token().access_token == current.access_token
    assert server.is_valid_access_token(current.access_token)
