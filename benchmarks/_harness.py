"""What the benchmark scripts share: the server process, sessions, statistics, the machine."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass
class Server:
    """A running ``benchmarks/server.py`` process and how to reach it."""

    base_url: str
    client_id: str
    client_secret: str
    token_url: str
    control_url: str
    process: subprocess.Popen[str]

    def __post_init__(self) -> None:
        self._control = requests.Session()

    def _call(self, method: str, command: str, knobs: dict[str, Any] | None = None) -> Any:
        response = self._control.request(method, self.control_url + command, json=knobs, timeout=30)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "stats")  # type: ignore[no-any-return]

    def reset(self, **knobs: Any) -> dict[str, Any]:
        """Zero the counters; keyword arguments set the server's knobs for what follows."""
        return self._call("POST", "reset", knobs)  # type: ignore[no-any-return]

    def revoke(self, *, access_only: bool = False) -> None:
        """Revoke every token; with ``access_only``, refresh tokens stay valid."""
        self._call("POST", "revoke", {"access_only": access_only})

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1/locations/18"


@contextlib.contextmanager
def server(
    *, token_lifetime: int = 3600, token_delay: float = 0.0, token_failure_rate: float = 0.0
) -> Iterator[Server]:
    """Start ``server.py`` in its own process (its own GIL); stop it on exit."""
    process = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "server.py"),
            f"--token-lifetime={token_lifetime}",
            f"--token-delay={token_delay}",
            f"--token-failure-rate={token_failure_rate}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("benchmarks/server.py exited before printing its address")
        yield Server(**json.loads(line), process=process)
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the server's signal to stop
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pooled_session() -> requests.Session:
    return mount_pool(requests.Session())


def mount_pool(session: requests.Session, size: int = 64) -> requests.Session:
    """Keep a keep-alive connection per thread (requests keeps 10, and warns of the rest)."""
    session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=size))
    return session


def run_threads(count: int, target: Callable[[int], None], timeout: float = 120.0) -> None:
    """Run ``target(i)`` in ``count`` threads started together; fail if one is left running."""
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        target(i)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [thread for thread in threads if thread.is_alive()]
    if left:
        raise RuntimeError(f"{len(left)} of {count} threads still running after {timeout} s")


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (share in 0..1) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, str]:
    """The machine and versions, for the results page."""
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    load = load_average()
    return {
        "cores": str(os.cpu_count()),
        "memory": memory,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "load average at start": load,
    }


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def versions(distributions: Sequence[str]) -> dict[str, str]:
    found = {}
    for name in distributions:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()  # the page shortens the subject, at a word boundary
