"""A real ``redis-server`` on a free loopback port, started and stopped by the tests.

No persistence (``--save '' --appendonly no``), its files in a temporary directory. Under
``CI=true`` a missing ``redis-server`` fails the test instead of skipping it: CI installs
it (``.ci/run``), so a missing one there is a broken setup, not a reason to test less.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import redis

START_TIMEOUT = 20.0


def redis_server_binary() -> str:
    """The path of ``redis-server``; skips the test (fails it under CI) when missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must install it (see .ci/run)")
        pytest.skip(message)
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; ``url`` to reach it."""

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._directory = tempfile.TemporaryDirectory(prefix="redis-test-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = redis_server_binary()
        for _ in range(3):  # another process may take the free port before redis binds it
            self.port = free_port()
            self._process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", self._directory.name,
                 "--daemonize", "no", "--loglevel", "warning"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if self._wait_ready():
                return self
            self._kill()
        raise RuntimeError("redis-server did not start")

    def _wait_ready(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.RedisError:
                    time.sleep(0.05)
            return False
        finally:
            client.close()

    def pause(self) -> None:
        """Stop the process (SIGSTOP): connections stay open, nothing is answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # a paused server cannot exit
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill()
        self._process = None

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def close(self) -> None:
        self.stop()
        self._directory.cleanup()

    def __enter__(self) -> RedisServer:  # noqa: PYI034 - typing.Self needs Python 3.11
        try:
            return self.start()
        except BaseException:
            # A skip (no redis-server here) or a failed start leaves no directory behind.
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()
