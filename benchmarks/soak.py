"""Soak test: many threads on one Session against a hostile token endpoint, checked throughout.

    python benchmarks/soak.py               # 60 s
    python benchmarks/soak.py --seconds 10  # the CI version

32 threads share one ``requests.Session`` with one ``EmmaAuth``. The fake emma (its own
process) issues 1-second tokens, answers token calls after 200 ms, fails 20 % of them with
503, and has every token revoked at random moments. The threads send a mix of GETs and POSTs
whose bodies are bytes, JSON, an open file, or a multipart form; each POST carries the
SHA-256 of its body, which the server checks on every attempt it receives (401s and replays
included) and echoes back.

It passes when:

- no request fails as a user would see it: every answer is a 200 with the body intact. A
  401 is allowed only where emma itself would send it whatever the client did: the request
  was replayed after a 401 and its replay's token was revoked while the request ran, or was
  valid when the replay was sent and expired on the way (each request is stamped with the
  time it is sent; the server says why it refused);
- the server saw no body that differs from what was sent, on any attempt;
- token calls stay within what 1-second lifetimes and the revocations allow;
- traced memory (``tracemalloc``), with all threads paused between requests, does not grow
  from the end of warm-up to the end of the run;
- every thread the test started has ended, and no non-daemon thread is left running.

A summary is printed; the exit status is 1 on any violation.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import hashlib
import io
import json
import random
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness
import requests
from _harness import Server
from requests.adapters import HTTPAdapter

LIFETIME = 1
TOKEN_DELAY = 0.2
TOKEN_FAILURE_RATE = 0.2
#: Growth of traced memory allowed from the end of warm-up to the end. A leak of even 50
#: bytes a request is megabytes over a run; a paused process varies by a few kilobytes.
MEMORY_SLACK = 256 * 1024


@dataclasses.dataclass
class Tally:
    """What the threads saw, under one lock."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    kinds: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    failures: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    examples: list[str] = dataclasses.field(default_factory=list)
    replays: int = 0
    revoked_during_replay: int = 0
    expired_in_flight: int = 0
    slowest: float = 0.0

    def ok(self, kind: str, replayed: bool, seconds: float) -> None:
        with self.lock:
            self.kinds[kind] += 1
            self.replays += replayed
            self.slowest = max(self.slowest, seconds)

    def fail(self, kind: str, what: str) -> None:
        with self.lock:
            self.failures[what] += 1
            if len(self.examples) < 5:
                self.examples.append(f"{kind}: {what}")


class Revocations:
    """Counts revocations, so a request can tell whether one happened while it ran."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def bump(self) -> None:
        with self.lock:
            self.count += 1


class Pause:
    """Stops every worker between two requests, for a memory snapshot of a quiet process."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.running = threading.Event()
        self.running.set()
        self.idle = 0
        self.changed = threading.Condition()

    def checkpoint(self) -> None:
        if self.running.is_set():
            return
        with self.changed:
            self.idle += 1
            self.changed.notify_all()
        self.running.wait()
        with self.changed:
            self.idle -= 1

    def snapshot(self, timeout: float = 120.0) -> int | None:
        """Traced bytes with every worker paused (``None`` if they did not all pause)."""
        self.running.clear()
        try:
            with self.changed:
                if not self.changed.wait_for(lambda: self.idle == self.workers, timeout):
                    return None
            gc.collect()
            return tracemalloc.get_traced_memory()[0]
        finally:
            self.running.set()


def _request(
    session: requests.Session, server: Server, rng: random.Random, scratch: Path
) -> tuple[str, requests.PreparedRequest, str | None]:
    """A random request, prepared, with the SHA-256 of its body (``None`` for a GET)."""
    kind = rng.choice(("get", "bytes", "json", "file", "multipart"))
    url = server.base_url + "/v1/bench/echo"
    payload = rng.randbytes(rng.randint(0, 16 * 1024))
    if kind == "get":
        request = requests.Request("GET", server.api_url)
    elif kind == "bytes":
        request = requests.Request("POST", url, data=payload)
    elif kind == "json":
        document = {"name": "soak", "n": rng.random(), "blob": payload.hex()[:4096]}
        request = requests.Request("POST", url, json=document)
    elif kind == "file":
        scratch.write_bytes(payload)
        request = requests.Request("POST", url, data=scratch.open("rb"))
    else:
        files = {"upload": ("data.bin", io.BytesIO(payload), "application/octet-stream")}
        request = requests.Request("POST", url, data={"note": "soak"}, files=files)
    prepared = session.prepare_request(request)
    if kind == "get":
        return kind, prepared, None
    # requests sends no body for empty data (prepared.body is None): b"" is what arrives.
    body = payload if kind in ("file", "bytes") else prepared.body
    assert isinstance(body, bytes), kind
    digest = hashlib.sha256(body).hexdigest()
    prepared.headers["X-Body-SHA256"] = digest
    return kind, prepared, digest


def _check(
    kind: str,
    response: requests.Response,
    digest: str | None,
    revoked_meanwhile: bool,
    tally: Tally,
    seconds: float,
) -> None:
    replayed = bool(response.history)
    if response.status_code == 200:
        if digest is not None and response.json().get("sha256") != digest:
            tally.fail(kind, "body changed on the way")
        else:
            tally.ok(kind, replayed, seconds)
        return
    reason = response.headers.get("X-Bench-Reject")
    if response.status_code == 401 and replayed:
        # Refusals of a replay that emma would send too, whatever the client did: its token
        # was revoked while the request ran, or was valid when sent and expired on the way
        # (a loaded machine can hold a request longer than a 1-second token lives).
        if reason == "revoked" and revoked_meanwhile:
            with tally.lock:
                tally.revoked_during_replay += 1
            return
        if reason == "expired in flight":
            with tally.lock:
                tally.expired_in_flight += 1
            return
    what = f"HTTP {response.status_code}"
    if reason:
        what += f" ({reason}, {'after a replay' if replayed else 'not replayed'})"
    tally.fail(kind, what)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--seed", type=int, default=None, help="for a repeatable mix")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    from requests_emma import EmmaAuth, RetryPolicy

    started_threads = set(threading.enumerate())
    violations: list[str] = []
    tally = Tally()
    revocations = Revocations()
    pause = Pause(args.threads)
    stop = threading.Event()
    warm_up = max(2.0, args.seconds / 5)
    scratch_dir = Path(_tempdir())
    tracemalloc.start()
    began = time.monotonic()
    with _harness.server(
        token_lifetime=LIFETIME, token_delay=TOKEN_DELAY, token_failure_rate=TOKEN_FAILURE_RATE
    ) as server:
        session = requests.Session()
        session.mount("http://", _StampingAdapter(pool_connections=4, pool_maxsize=args.threads))
        # An endpoint that fails one call in five needs more than the default five attempts
        # to make a user-visible failure negligible (0.2 ** 8 per renewal); short waits, as
        # the tokens live one second.
        session.auth = EmmaAuth(
            server.client_id,
            server.client_secret,
            base_url=server.base_url,
            retry=RetryPolicy(attempts=8, wait_initial=0.05, wait_max=0.5, wait_jitter=0.05),
        )

        def work(i: int) -> None:
            rng = random.Random(seed + i)
            scratch = scratch_dir / f"body-{i}"
            while not stop.is_set():
                pause.checkpoint()
                kind, prepared, response = "?", None, None
                try:
                    kind, prepared, digest = _request(session, server, rng, scratch)
                    before = revocations.count
                    start = time.monotonic()
                    response = session.send(prepared, timeout=30)
                    seconds = time.monotonic() - start
                    _check(kind, response, digest, revocations.count != before, tally, seconds)
                    response.close()
                except Exception as exc:  # noqa: BLE001 - every error is a finding
                    tally.fail(kind, f"{type(exc).__name__}: {str(exc)[:120]}")
                finally:
                    if prepared is not None and hasattr(prepared.body, "close"):
                        prepared.body.close()
                # Nothing from this request is held while the thread waits at the pause.
                del prepared, response

        def revoke() -> None:
            rng = random.Random(seed - 1)
            while not stop.wait(rng.uniform(1.0, 3.0)):
                revocations.bump()
                server.revoke(access_only=rng.random() < 0.5)
                revocations.bump()

        threads = [
            threading.Thread(target=work, args=(i,), name=f"soak-{i}") for i in range(args.threads)
        ]
        threads.append(threading.Thread(target=revoke, name="soak-revoker"))
        for thread in threads:
            thread.start()
        time.sleep(warm_up)
        server.reset()  # token calls are judged after warm-up, with the lifetimes then
        counted_from = time.monotonic()
        memory_start = pause.snapshot()
        time.sleep(max(0.0, args.seconds - warm_up))
        memory_end = pause.snapshot()
        counted = time.monotonic() - counted_from
        stats = server.stats()
        stop.set()
        for thread in threads:
            thread.join(60)
        left = [t.name for t in threads if t.is_alive()]
        session.close()
    tracemalloc.stop()
    elapsed = time.monotonic() - began

    # -- judging ----------------------------------------------------------------------------
    done = sum(tally.kinds.values())
    if tally.failures:
        violations.append(f"{sum(tally.failures.values())} user-visible failures")
    if stats["body_mismatches"]:
        violations.append(f"{stats['body_mismatches']} bodies arrived changed")
    if done == 0:
        violations.append("no request succeeded")
    grants = stats["token_calls"] - stats["failed_token_calls"]
    server_revocations = stats["revocations"]
    # Each lifetime needs one renewal; two each is the margin for a loaded machine. Each
    # revocation costs a renewal, two calls when the refresh token went too.
    allowed_grants = int(2 * counted / LIFETIME) + 2 * server_revocations + 4
    if grants > allowed_grants:
        violations.append(f"{grants} tokens granted, more than the {allowed_grants} allowed")
    # A fifth of the calls fail at random: about one failed call per four good ones.
    allowed_failed_calls = grants + 10
    if stats["failed_token_calls"] > allowed_failed_calls:
        violations.append(
            f"{stats['failed_token_calls']} failed token calls for {grants} good ones: "
            "retrying more than the failure rate explains"
        )
    growth = None
    if memory_start is None or memory_end is None:
        violations.append("the threads did not pause for the memory snapshot")
    else:
        growth = memory_end - memory_start
        if growth > MEMORY_SLACK:
            violations.append(f"traced memory grew by {growth:,} bytes after warm-up")
    if left:
        violations.append(f"threads still running: {', '.join(left)}")
    lingering = [t for t in threading.enumerate() if t not in started_threads and t.is_alive()]
    if any(not t.daemon for t in lingering):
        violations.append(
            "non-daemon threads left: " + ", ".join(t.name for t in lingering if not t.daemon)
        )

    summary = {
        "seconds": round(elapsed, 1),
        "threads": args.threads,
        "seed": seed,
        "requests ok": done,
        "by kind": dict(tally.kinds),
        "replayed after a 401": tally.replays,
        "401 after a replay whose token was revoked in flight (allowed)": (
            tally.revoked_during_replay
        ),
        "401 after a replay whose token expired in flight (allowed)": tally.expired_in_flight,
        "user-visible failures": dict(tally.failures),
        "failure examples": tally.examples,
        "slowest request (s)": round(tally.slowest, 3),
        "bodies checked on the server": stats["bodies_checked"],
        "bodies changed": stats["body_mismatches"],
        f"after warm-up ({counted:.1f} s)": {
            "token calls": stats["token_calls"],
            "token calls failed (503)": stats["failed_token_calls"],
            "tokens granted": grants,
            "tokens allowed": allowed_grants,
            "revocations": server_revocations,
            "server-side 401s": stats["api_401_by_reason"],
        },
        "traced memory growth after warm-up (bytes)": growth,
        "library threads still alive (daemon)": [t.name for t in lingering if t.daemon],
        "violations": violations,
    }
    print(json.dumps(summary, indent=2))
    print("soak: PASS" if not violations else "soak: FAIL: " + "; ".join(violations))
    return 1 if violations else 0


class _StampingAdapter(HTTPAdapter):
    """Stamps each request (first attempts and replays alike) with the time it is sent, so
    the server can tell a token sent expired from one that expired on the way."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        request.headers["X-Sent-At"] = repr(time.time())
        return super().send(request, *args, **kwargs)


def _tempdir() -> str:
    import atexit
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="requests-emma-soak-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
