"""Test doubles shared by the test modules: a hand-moved clock and a lock that can be watched."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from requests_emma import EmmaAuth
from requests_emma.testing import FakeEmmaServer

WAIT = 10.0  # seconds to wait for something that should happen at once


class FakeClock:
    """The one fake clock: monotonic and wall time move together, by hand or by a sleep,
    and every sleep is recorded. Put it on an auth with :func:`use_clock`."""

    WALL_START = 1_700_000_000.0

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now - 1000.0 + self.WALL_START

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def use_clock(auth: EmmaAuth, clock: FakeClock) -> FakeClock:
    """Make ``clock`` the only clock ``auth`` reads: decisions, lifetimes and retry waits."""
    auth._clock = clock
    return clock


class WatchedLock:
    """A real lock that counts how many acquisitions had to block, for tests to wait on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self.blocked = 0  # acquisitions that found the lock taken and waited
        self.on_try: Callable[[], None] | None = None  # called before each acquisition

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self.on_try is not None:
            self.on_try()
        if self._lock.acquire(blocking=False):
            return True
        if not blocking:
            return False
        with self._changed:
            self.blocked += 1
            self._changed.notify_all()
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def wait_for_blocked(self, count: int, timeout: float = WAIT) -> bool:
        """Wait until ``count`` acquisitions have blocked; False if that took too long."""
        with self._changed:
            return self._changed.wait_for(lambda: self.blocked >= count, timeout=timeout)


def auth_for(server: FakeEmmaServer, **options: Any) -> EmmaAuth:
    """An EmmaAuth with the fake server's credentials and base URL, plus ``options``."""
    return EmmaAuth(server.client_id, server.client_secret, base_url=server.base_url, **options)


def join_renewal(auth: EmmaAuth) -> None:
    """Wait for the background renewal ``auth`` started last; fail if none was started."""
    worker = auth._worker
    assert worker is not None, "no background renewal was started"
    worker.join(WAIT)
    assert not worker.is_alive(), "the background renewal did not finish"
