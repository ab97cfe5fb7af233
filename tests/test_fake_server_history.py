"""FakeEmmaServer's record of the requests it received: the newest ones, bounded in size."""

from __future__ import annotations

import tracemalloc

import pytest
import requests

from requests_emma.testing import FakeEmmaServer

BODY = b"x" * 4096


def post_unknown_paths(server: FakeEmmaServer, first: int, count: int) -> None:
    """``count`` POSTs of 4 KiB each, numbered from ``first`` in their paths (401: no token)."""
    with requests.Session() as session:
        session.trust_env = False  # loopback: never through a proxy from the environment
        for number in range(first, first + count):
            session.post(f"{server.base_url}/v1/bulk/{number}", data=BODY)


def test_the_history_keeps_the_newest_requests_and_stays_bounded() -> None:
    """Past max_recorded_requests, the oldest are dropped and memory stops growing."""
    tracemalloc.start()  # before the first request, so dropping old ones counts as freed
    try:
        with FakeEmmaServer(max_recorded_requests=50) as server:
            post_unknown_paths(server, 0, 60)  # warm up: the history is full
            before = tracemalloc.take_snapshot()
            post_unknown_paths(server, 60, 400)
            after = tracemalloc.take_snapshot()
            paths = [r.path for r in server.requests]
            assert all(r.body == BODY for r in server.requests)
    finally:
        tracemalloc.stop()
    assert paths == [f"/v1/bulk/{n}" for n in range(410, 460)]
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 512 * 1024, growth  # unbounded: over 2 MiB (400 bodies of 4 KiB, headers)


def test_the_history_keeps_1000_requests_by_default() -> None:
    """The default bound is 1,000 requests."""
    assert FakeEmmaServer().max_recorded_requests == 1000


def test_no_bound_keeps_every_request() -> None:
    """max_recorded_requests=None records every request."""
    with FakeEmmaServer(max_recorded_requests=None) as unbounded:
        post_unknown_paths(unbounded, 0, 1005)
        assert len(unbounded.requests) == 1005


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_a_bad_bound_is_refused(bad: object) -> None:
    """A negative, fractional or non-number bound is a ValueError naming it."""
    with pytest.raises(ValueError, match=f"max_recorded_requests .*not {bad!r}"):
        FakeEmmaServer(max_recorded_requests=bad)  # type: ignore[arg-type]
