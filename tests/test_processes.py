"""EmmaAuth across processes and at the edges of a process's life: fork, exit, import."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from fakes import WAIT, FakeClock, auth_for, exit_code_in_a_forked_child, use_clock

from requests_emma import EmmaAuth, FileTokenCache
from requests_emma.testing import FakeEmmaServer

fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Forking while other threads run is what this module tests; Python 3.12 warns about it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_no_thread_starts_at_import_or_construction() -> None:
    """Importing requests_emma and constructing an EmmaAuth starts no thread."""
    result = run_python(
        """
        import threading
        before = threading.active_count()
        import requests_emma
        requests_emma.EmmaAuth("id", "secret")
        print(threading.active_count() - before)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


@pytest.mark.slow
def test_a_renewal_in_flight_does_not_keep_the_process_alive(server: FakeEmmaServer) -> None:
    """A process whose background renewal hangs in the token endpoint still exits at once."""
    renewing, release = threading.Event(), threading.Event()
    calls = 0

    def hang_renewals() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            renewing.set()
            release.wait(WAIT)

    server.token_hook = hang_renewals
    code = f"""
        import sys, time
        from requests_emma import EmmaAuth
        from requests_emma._system_clock import SystemClock
        from requests_emma.testing import use_clock

        class Later(SystemClock):
            \"\"\"Real time, moved ahead by ``ahead`` seconds.\"\"\"
            ahead = 0.0
            def monotonic(self): return time.monotonic() + self.ahead
            def wall(self): return time.time() + self.ahead

        auth = EmmaAuth({server.client_id!r}, {server.client_secret!r},
                        base_url={server.base_url!r})
        clock = use_clock(auth, Later())
        auth.get_token()
        clock.ahead = 250.0  # inside the 300 s token's 60 s margin, not expired
        auth.get_token()  # starts the early renewal, which hangs in the server
        sys.stdin.readline()  # until the test has seen it get there
        print("leaving")
        """
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if not renewing.wait(30):  # a child's start-up on a loaded machine, widely
            child.kill()
            pytest.fail(f"the early renewal never reached the server: {child.communicate()[1]}")
        started = time.monotonic()
        out, err = child.communicate("leave\n", timeout=60)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert out.strip() == "leaving"
    assert calls == 2  # the first token, then the renewal that hung
    assert elapsed < WAIT / 2  # not held until the hung call was released, WAIT s on


@fork_only
def test_a_child_forked_during_a_renewal_can_get_a_token(server: FakeEmmaServer) -> None:
    """A child forked while another thread is renewing the token gets its own token."""
    auth = auth_for(server)
    entered, release = threading.Event(), threading.Event()

    def hold_the_first_call() -> None:
        if not entered.is_set():
            entered.set()
            release.wait(WAIT)

    server.token_hook = hold_the_first_call
    renewer = threading.Thread(target=auth.get_token)
    renewer.start()
    try:
        assert entered.wait(WAIT)
        assert auth.status().renewing
        # The child: the parent's lock holder does not exist there.
        code = exit_code_in_a_forked_child(lambda: 0 if auth.get_token().access_token else 1)
    finally:
        release.set()
        renewer.join(WAIT)
    assert code == 0
    assert server.issue_calls == 2  # the parent's, held; the child's own


@fork_only
def test_a_child_forked_while_a_renewal_is_planned_gets_a_token(
    server: FakeEmmaServer, tmp_path: Path
) -> None:
    """A child forked while another thread plans its first renewal (naming its token cache
    for the log) gets a token of another auth: nothing held at the fork blocks the child."""
    entered, release = threading.Event(), threading.Event()

    class SlowlyNamedCache(FileTokenCache):
        def __repr__(self) -> str:
            if threading.current_thread() is planner:
                entered.set()
                release.wait(WAIT)
            return "SlowlyNamedCache()"

    slow = auth_for(server, token_cache=SlowlyNamedCache(tmp_path))
    other = auth_for(server)
    planner = threading.Thread(target=slow.get_token)
    planner.start()
    try:
        assert entered.wait(WAIT)
        # The child: the planning thread does not exist there.
        code = exit_code_in_a_forked_child(lambda: 0 if other.get_token().access_token else 1)
    finally:
        release.set()
        planner.join(WAIT)
    assert code == 0


def _child_token(auth: EmmaAuth, queue: multiprocessing.Queue[tuple[str, str]]) -> None:
    token = auth.get_token()
    # 400 s on: the token has expired, and the child renews it.
    later = FakeClock(start=time.monotonic() + 400, wall_start=time.time() + 400)
    use_clock(auth, later)
    queue.put((token.access_token, auth.get_token().access_token))


@fork_only
def test_a_prefork_worker_reuses_the_access_token_but_not_the_refresh_token(
    server: FakeEmmaServer,
) -> None:
    """A worker forked by multiprocessing keeps the parent's access token (no call) and
    renews with issue-token, never with the parent's refresh token."""
    auth = auth_for(server)
    parent_token = auth.get_token()
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[tuple[str, str]] = context.Queue()
    worker = context.Process(target=_child_token, args=(auth, queue))
    worker.start()
    kept, renewed = queue.get(timeout=WAIT)
    worker.join(WAIT)
    assert worker.exitcode == 0
    assert kept == parent_token.access_token and renewed != kept
    assert (server.issue_calls, server.refresh_calls) == (2, 0)  # the child's renewal: issue


def test_a_token_lives_from_when_its_request_was_sent(server: FakeEmmaServer) -> None:
    """A token call that takes 5 s gives a token expiring 300 s after it was sent, not after."""
    clock = FakeClock()
    auth = auth_for(server)
    use_clock(auth, clock)
    sent_wall = clock.wall()
    server.token_hook = lambda: clock.advance(5)  # the answer comes 5 s later
    token = auth.get_token()
    assert token.expires_at == sent_wall + 300
    clock.advance(296)
    auth.get_token()  # 301 s after the request was sent: expired, renewed
    assert server.token_calls == 2
