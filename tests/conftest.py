"""What the test suite needs beyond the shipped pytest plugin (which brings ``emma_server``,
``emma_auth``, ``emma_httpx_auth`` and ``emma_aiohttp_middleware``): short names for the
first two, the fake clock, real redis-servers, raw servers, the command line run in this
process, and (from cache_stores.py) the token caches the cache tests run over."""

from __future__ import annotations

import gc
import importlib
import logging
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from cache_stores import shared_cache, shared_store, store, token_directory
from fakes import WAIT, FakeClock, Handler, RawServer, use_clock
from hypothesis import HealthCheck, settings
from redis_server import RedisServer
from requests.auth import AuthBase

from requests_emma import EmmaAuth, EmmaSession
from requests_emma._system_clock import SystemClock
from requests_emma.testing import FakeEmmaServer, no_retry_waits

__all__ = [  # the fixtures of cache_stores.py, made available to every test module
    "shared_cache",
    "shared_store",
    "store",
    "token_directory",
]

# The machines that run the suite are shared and noisy: judge Hypothesis tests by what they
# find, not by how fast examples were generated or run.
settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("shared-machine")


# The fake server and the auth on it are the shipped plugin's (requests_emma.testing.
# pytest_plugin), under the short names the tests use.


@pytest.fixture
def server(emma_server: FakeEmmaServer) -> FakeEmmaServer:
    """The plugin's ``emma_server``."""
    return emma_server


@pytest.fixture
def auth(emma_auth: EmmaAuth) -> EmmaAuth:
    """The plugin's ``emma_auth``, on ``server``."""
    return emma_auth


@pytest.fixture
def get(server: FakeEmmaServer) -> Callable[..., requests.Response]:
    """GET with requests and ``auth``: ``get(auth)`` the server's locations, ``get(auth, path)``
    another path of its API, ``at=`` another server's; requests' options pass through."""

    def get(
        auth: AuthBase,
        path: str = "/v1/locations",
        *,
        at: FakeEmmaServer | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        kwargs.setdefault("timeout", WAIT)
        return requests.get((at or server).base_url + path, auth=auth, **kwargs)

    return get


@pytest.fixture
def session(auth: EmmaAuth) -> Iterator[EmmaSession]:
    """An EmmaSession on the ``auth`` fixture, closed after the test."""
    with EmmaSession(auth) as emma:
        yield emma


@pytest.fixture
def clock(auth: EmmaAuth) -> FakeClock:
    """The one fake clock, put on the ``auth`` fixture: decisions, lifetimes, retry waits."""
    return use_clock(auth, FakeClock())


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits on the real clock, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(SystemClock, "sleep", lambda clock, seconds: recorded.append(seconds))
    return recorded


@pytest.fixture
def no_waits() -> Iterator[None]:
    with no_retry_waits():
        yield


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test depends on the developer's own emma credentials."""
    for name in ("EMMA_CLIENT_ID", "EMMA_CLIENT_SECRET", "EMMA_API_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _private_cache_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test, nor a command line it starts, reads or writes the developer's token cache:
    the user cache directory (``XDG_CACHE_HOME``) is one of the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache-home")))


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="requests_emma")
    return caplog


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``redis`` every test that runs a real redis-server (by a fixture, or a cache
    fixture's "redis" parameter): ``pytest -m redis`` runs them alone, ``-m "not redis"``
    all the others."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        uses = {"redis_server", "own_redis_server"} & set(getattr(item, "fixturenames", ()))
        if uses or any(isinstance(value, str) and value == "redis" for value in params.values()):
            item.add_marker(pytest.mark.redis)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session; tests keep apart by key prefix."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A real redis-server for one test, which may stop or pause it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    """Start loopback servers that answer byte by byte as the test pleases; closed after."""
    servers: list[RawServer] = []

    def start(*handlers: Handler) -> RawServer:
        servers.append(RawServer(*handlers))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


#: Every Redis (and Valkey) connection pool made in this test run, weakly.
_POOLS: weakref.WeakSet[Any] = weakref.WeakSet()


def _track_pools() -> None:
    for name in ("redis.connection", "valkey.connection"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        pool = module.ConnectionPool
        made = pool.__init__

        def init(self: Any, *args: Any, __made: Any = made, **kwargs: Any) -> None:
            __made(self, *args, **kwargs)
            _POOLS.add(self)

        pool.__init__ = init


_track_pools()


@pytest.fixture(autouse=True)
def _redis_connections_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test every Redis connection pool it made is disconnected: a cache (a
    command line run in this process, say) keeps its pool's sockets open until the garbage
    collector finds it, which would then warn (ResourceWarning) inside whichever test runs
    at the time."""
    yield
    for pool in list(_POOLS):
        pool.disconnect()
    if "redis" in request.node.nodeid:
        # What a Redis test left to the collector (a client's socket a lock script used)
        # is collected here, quietly, not inside whichever test the collector next runs in.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
