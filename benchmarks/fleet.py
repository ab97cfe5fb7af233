"""Fleet cold start: 16 processes sharing a token cache against the same 16 without one.

Each round starts a FakeEmmaServer (token endpoint answering after ``token_delay``), then
``processes`` fresh processes, each with its own ``EmmaAuth``; they wait on a barrier and
then send their first request at once. Measured per contender:

- token calls received by the server (target with a cache: 1; without: one per process);
- seconds from the barrier until the last process has its first 200.

Contenders ("no cache", "file", and "redis" when ``redis-server`` and redis-py are
installed) are interleaved within each round; the table shows medians over the rounds and
each time as a ratio to "no cache" in the same run.

    python benchmarks/fleet.py [--processes 16] [--rounds 5] [--token-delay 0.2]

``measure()`` returns the numbers for other scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import requests

from requests_emma import EmmaAuth, FileTokenCache, RedisTokenCache, TokenCache
from requests_emma.testing import FakeEmmaServer

WAIT = 120.0
spawn = multiprocessing.get_context("spawn")


def _member(
    cache_kind: str,
    where: str,
    base_url: str,
    client_id: str,
    client_secret: str,
    start: Any,
    results: Any,
) -> None:
    """One process: build an EmmaAuth, wait for the others, send the first request, report
    (status, monotonic time of the answer). CLOCK_MONOTONIC is system-wide on Linux, so
    times from all processes compare."""
    cache: TokenCache | None = None
    if cache_kind == "file":
        cache = FileTokenCache(where)
    elif cache_kind == "redis":
        cache = RedisTokenCache.from_url(where)
    auth = EmmaAuth(client_id, client_secret, base_url=base_url, token_cache=cache)
    with requests.Session() as session:
        start.wait(timeout=WAIT)
        response = session.get(base_url + "/v1/locations", auth=auth, timeout=30)
        results.put((response.status_code, time.monotonic()))


@contextlib.contextmanager
def _redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on a free loopback port, or None if it cannot be had."""
    binary = shutil.which("redis-server")
    try:
        import redis
    except ImportError:
        redis = None  # type: ignore[assignment]
    if binary is None or redis is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
            for _ in range(200):  # at most about 10 s
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        break
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


def _one_round(kind: str, where: str, processes: int, token_delay: float) -> tuple[int, float]:
    """(token calls, seconds until every process has its first 200) for one cold start."""
    with FakeEmmaServer() as server:
        server.token_delay = token_delay
        start, results = spawn.Barrier(processes + 1), spawn.Queue()
        credentials = (server.base_url, server.client_id, server.client_secret)
        members = [
            spawn.Process(target=_member, args=(kind, where, *credentials, start, results))
            for _ in range(processes)
        ]
        for member in members:
            member.start()
        start.wait(timeout=WAIT)  # every process is up, its EmmaAuth built
        released = time.monotonic()
        answers = [results.get(timeout=WAIT) for _ in members]
        for member in members:
            member.join(timeout=WAIT)
        if any(status != 200 for status, _ in answers):
            raise RuntimeError(f"{kind}: not every first request got a 200: {answers}")
        return server.token_calls, max(at for _, at in answers) - released


def measure(processes: int = 16, rounds: int = 5, token_delay: float = 0.2) -> dict[str, Any]:
    """Median token calls and seconds-to-all-first-200 per contender, over ``rounds``."""
    samples: dict[str, list[tuple[int, float]]] = {}
    with _redis_server() as redis_url:
        for _ in range(rounds):
            contenders = [("no cache", "none", "")]
            directory = tempfile.mkdtemp(prefix="fleet-bench-")
            contenders.append(("file", "file", directory))
            if redis_url is not None:
                with contextlib.suppress(Exception):
                    import redis

                    redis.Redis.from_url(redis_url).flushdb()  # a cold start each round
                contenders.append(("redis", "redis", redis_url))
            for name, kind, where in contenders:
                samples.setdefault(name, []).append(_one_round(kind, where, processes, token_delay))
            shutil.rmtree(directory, ignore_errors=True)
    baseline = statistics.median(seconds for _, seconds in samples["no cache"])
    table = {}
    for name, runs in samples.items():
        seconds = statistics.median(s for _, s in runs)
        table[name] = {
            "token_calls": statistics.median(calls for calls, _ in runs),
            "token_calls_max": max(calls for calls, _ in runs),
            "seconds_to_all_first_200": seconds,
            "ratio_to_no_cache": seconds / baseline,
        }
    return {
        "processes": processes,
        "rounds": rounds,
        "token_delay": token_delay,
        "contenders": table,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        (
            f"Fleet cold start: {result['processes']} processes, token endpoint "
            f"{result['token_delay']:g} s, median of {result['rounds']} rounds"
        ),
        "",
        "| contender | token calls (max) | all first 200 after (s) | vs no cache |",
        "| --- | --- | --- | --- |",
    ]
    for name, row in result["contenders"].items():
        lines.append(
            f"| {name} | {row['token_calls']:g} ({row['token_calls_max']}) | "
            f"{row['seconds_to_all_first_200']:.3f} | {row['ratio_to_no_cache']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--token-delay", type=float, default=0.2)
    args = parser.parse_args()
    print(markdown(measure(args.processes, args.rounds, args.token_delay)))


if __name__ == "__main__":
    main()
