"""Many threads on one Session: the 64-thread burst, the renewal stall, short tokens."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import peers
from _harness import Server, median, percentile, run_threads
from bench_speed import static_token
from peers import Contender
from report import Section, Target, bar_chart, fmt

SLOW = 0.25  # seconds: a request slower than this waited on a renewal


@dataclasses.dataclass
class Outcome:
    """What the threads saw: latencies, successes, failures by kind."""

    latencies: list[float] = dataclasses.field(default_factory=list)
    ok: int = 0
    failures: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def request(self, contender: Contender, url: str) -> None:
        start = time.perf_counter()
        try:
            response = contender.session.get(url, timeout=30)
            failure = None if response.status_code == 200 else f"HTTP {response.status_code}"
        except Exception as exc:  # noqa: BLE001 - a benchmark counts what users would see
            failure = type(exc).__name__
        elapsed = time.perf_counter() - start
        with self.lock:
            self.latencies.append(elapsed)
            if failure is None:
                self.ok += 1
            else:
                self.failures[failure] += 1

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def failure_text(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in self.failures.most_common()) or "0"


def _fresh(server: Server, build: Callable[[], Contender]) -> Contender:
    contender = build()
    if contender.fetch_first is not None:
        contender.fetch_first()
    return contender


# -- the 64-thread burst --------------------------------------------------------------------


def burst(server: Server, *, rounds: int, threads: int = 64, charts: Path) -> Section:
    server.reset(token_lifetime=3600, token_delay=0.05, token_failure_rate=0.0)
    builders: dict[str, Callable[[], Contender]] = {
        "requests-emma": lambda: peers.emma(server),
        "requests-auth": lambda: peers.requests_auth(server, 3600),
        "authlib": lambda: peers.authlib(server, 3600),
        "google-auth": lambda: peers.google_auth(server),
        "requests-oauthlib": lambda: peers.requests_oauthlib(server),
    }
    # Phases: a cold start, then two 401 storms: access tokens revoked (refresh tokens still
    # good), then everything revoked (a refresh token must be refused before a new issue).
    phases = ("cold start", "access tokens revoked", "all tokens revoked")
    calls: dict[str, dict[str, list[int]]] = {n: collections.defaultdict(list) for n in builders}
    succeeded: dict[str, dict[str, list[int]]] = {
        n: collections.defaultdict(list) for n in builders
    }
    for round_ in range(rounds):
        names = list(builders) if round_ % 2 == 0 else list(reversed(builders))
        for name in names:
            server.reset()
            contender = _fresh(server, builders[name])
            for phase in phases:
                if phase != "cold start":
                    server.revoke(access_only=phase == "access tokens revoked")
                    server.reset()
                outcome = Outcome()
                run_threads(threads, lambda i, o=outcome, c=contender: o.request(c, server.api_url))
                calls[name][phase].append(server.stats()["token_calls"])
                succeeded[name][phase].append(outcome.ok)
    rows = []
    for name, builder in builders.items():
        contender = builder()
        row: list[object] = [name]
        for phase in phases:
            note = ""
            if phase == "cold start" and contender.fetch_first:
                note = " (fetched by the caller first)"
            elif phase != "cold start" and not contender.refreshes_on_401:
                note = " (no refresh on 401)"
            row += [
                f"{median(calls[name][phase]):.0f}{note}",
                f"{median(succeeded[name][phase]):.0f} / {threads}",
            ]
        rows.append(row)
    emma_calls, emma_ok = calls["requests-emma"], succeeded["requests-emma"]
    judged = ("cold start", "access tokens revoked")
    emma_passed = all(max(emma_calls[p]) == 1 and min(emma_ok[p]) == threads for p in judged)
    bar_chart(
        charts / "burst.png",
        title=f"Token calls for {threads} threads starting at once (lower is better)",
        labels=list(builders),
        series={phase: [median(calls[n][phase]) for n in builders] for phase in phases},
        ylabel="token calls (median)",
    )
    return Section(
        title="64-thread burst",
        intro=f"""
{threads} threads on one Session, released together by a barrier, each sending one request:
first with no token yet (cold start), then after the server revoked every access token (a
401 storm; refresh tokens stay valid), then after it revoked every token, refresh tokens
included. Token endpoint 50 ms, 3600 s tokens; medians over {rounds} rounds.
""",
        headers=["library"]
        + [f"{what}, {phase}" for phase in phases for what in ("token calls", "succeeded")],
        rows=rows,
        notes=[
            (
                "authlib and requests-oauthlib need the caller to fetch the first token "
                "(`fetch_token()`) before the session can be used: the cold start's one call is "
                "that one."
            ),
            (
                "requests-auth, authlib and requests-oauthlib do not renew on a 401: after a "
                "revocation their requests fail until the token would have expired."
            ),
            (
                "requests-emma renews with its refresh token first: when the refresh token was "
                "revoked too, that call is refused and a new token is issued, two calls for one "
                "renewal. The peers use no refresh token with this grant."
            ),
        ],
        targets=[
            Target(
                "burst, requests-emma",
                "1 token call on a cold start and 1 after a revocation, all succeeded",
                "; ".join(
                    f"{p}: max {max(emma_calls[p])} calls, min {min(emma_ok[p])} "
                    f"of {threads} succeeded"
                    for p in phases
                ),
                emma_passed,
            )
        ],
        chart="burst.png",
    )


# -- sustained load with short tokens ---------------------------------------------------------


def _sustained(
    server: Server, contender: Contender, *, threads: int, seconds: float
) -> tuple[Outcome, dict[str, int]]:
    """``threads`` threads sending requests back to back for ``seconds``."""
    server.reset()
    outcome = Outcome()
    stop_at = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < stop_at:
            outcome.request(contender, server.api_url)

    run_threads(threads, loop, timeout=seconds + 120)
    return outcome, server.stats()


def _lifetime_builders(server: Server, lifetime: int) -> dict[str, Callable[[], Contender]]:
    return {
        "requests-emma": lambda: peers.emma(server),
        "requests-auth": lambda: peers.requests_auth(server, lifetime),
        "authlib": lambda: peers.authlib(server, lifetime),
        "google-auth (blocking)": lambda: peers.google_auth(server),
        "google-auth (non-blocking)": lambda: peers.google_auth(server, non_blocking=True),
    }


def stall(server: Server, *, rounds: int, seconds: float, charts: Path) -> Section:
    lifetime, delay, threads = 2, 0.3, 8
    server.reset(token_lifetime=3600, token_delay=0.0)
    static = peers.static_header(server, static_token(server))
    server.reset(token_lifetime=lifetime, token_delay=delay, token_failure_rate=0.0)
    builders: dict[str, Callable[[], Contender]] = {
        "static header": lambda: static,
        **_lifetime_builders(server, lifetime),
    }
    runs: dict[str, list[tuple[Outcome, dict[str, int]]]] = {name: [] for name in builders}
    for round_ in range(rounds):
        names = list(builders) if round_ % 2 == 0 else list(reversed(builders))
        for name in names:
            contender = _fresh(server, builders[name])
            contender.session.get(server.api_url, timeout=30)  # the first token, not timed
            runs[name].append(_sustained(server, contender, threads=threads, seconds=seconds))
    lifetimes = seconds / lifetime
    summary = {}
    for name, results in runs.items():
        latencies = [x for outcome, _ in results for x in outcome.latencies]
        summary[name] = {
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies),
            "slow per lifetime": median(
                [sum(x > SLOW for x in o.latencies) / lifetimes for o, _ in results]
            ),
            "slow": sum(x > SLOW for o, _ in results for x in o.latencies),
            "requests": median([len(o.latencies) for o, _ in results]),
            "token calls": median([s["token_calls"] for _, s in results]),
            "401 per s": median([s["api_401"] / seconds for _, s in results]),
            "401": sum(s["api_401"] for _, s in results),
            "failures": ", ".join(o.failure_text() for o, _ in results),
        }
    static_max = summary["static header"]["max"]
    rows = [
        (
            name,
            fmt(s["p50"] * 1e3, 1),
            fmt(s["p99"] * 1e3, 1),
            fmt(s["max"] * 1e3, 1),
            fmt(s["max"] / static_max, 1) + "x",
            fmt(s["slow per lifetime"], 2),
            f"{s['requests']:.0f}",
            f"{s['token calls']:.0f}",
            fmt(s["401 per s"], 2),
            s["failures"],
        )
        for name, s in summary.items()
    ]
    emma = summary["requests-emma"]
    bar_chart(
        charts / "stall.png",
        title=f"Latency, {threads} threads, {lifetime} s tokens, {delay} s token endpoint",
        labels=list(summary),
        series={q: [summary[n][q] * 1e3 for n in summary] for q in ("p50", "p99", "max")},
        ylabel="ms (log scale)",
        log=True,
        line=SLOW * 1e3,
        line_label=f"{SLOW * 1e3:.0f} ms: waited on a renewal",
    )
    return Section(
        title="Renewal stall",
        intro=f"""
{threads} threads on one Session sending requests back to back for {seconds:g} s per round,
{rounds} rounds, {lifetime} s tokens, a token endpoint that takes {delay} s. A request slower
than {SLOW} s waited on a renewal. Latencies pooled over rounds; per-round counts are
medians. "max vs static" compares with the static-header run of the same rounds.
""",
        headers=[
            "library",
            "p50 ms",
            "p99 ms",
            "max ms",
            "max vs static",
            f"requests > {SLOW} s per lifetime",
            "requests per round",
            "token calls per round",
            "server 401s per s",
            "failures",
        ],
        rows=rows,
        notes=[
            (
                "requests-oauthlib is not in this table: it does not renew a client-credentials "
                "token (it raises `TokenExpiredError`; see short tokens)."
            ),
            (
                "google-auth treats any token within 3 min 45 s of expiry as expired (blocking "
                "mode) or stale (non-blocking mode), a fixed threshold: with 2 s tokens the "
                "blocking mode renews before every request and the non-blocking one renews "
                "continuously in the background."
            ),
        ],
        targets=[
            Target(
                "stall: slow requests, requests-emma",
                f"0 requests > {SLOW} s",
                f"{emma['slow']} ({fmt(emma['slow per lifetime'])} per lifetime)",
                emma["slow"] == 0,
            ),
            Target(
                "stall: max latency, requests-emma",
                "≤ 2x the static-header max",
                f"{fmt(emma['max'] * 1e3, 0)} ms vs {fmt(static_max * 1e3, 0)} ms "
                f"({fmt(emma['max'] / static_max, 1)}x)",
                emma["max"] <= 2 * static_max,
            ),
            Target(
                "stall: server-side 401s, requests-emma",
                "0",
                f"{emma['401']} ({fmt(emma['401 per s'])} per s)",
                emma["401"] == 0,
            ),
        ],
        chart="stall.png",
    )


def short_tokens(server: Server, *, rounds: int, seconds: float) -> Section:
    lifetime, threads = 1, 16
    server.reset(token_lifetime=lifetime, token_delay=0.0, token_failure_rate=0.0)
    builders = {
        **_lifetime_builders(server, lifetime),
        "requests-oauthlib": lambda: peers.requests_oauthlib(server),
    }
    runs: dict[str, list[tuple[Outcome, dict[str, int]]]] = {name: [] for name in builders}
    for round_ in range(rounds):
        names = list(builders) if round_ % 2 == 0 else list(reversed(builders))
        for name in names:
            contender = _fresh(server, builders[name])
            runs[name].append(_sustained(server, contender, threads=threads, seconds=seconds))
    rows = []
    for name, results in runs.items():
        requests_done = median([len(o.latencies) for o, _ in results])
        calls = median([s["token_calls"] for _, s in results])
        rows.append(
            (
                name,
                f"{requests_done:.0f}",
                f"{calls:.0f}",
                fmt(calls / (seconds / lifetime), 1),
                "; ".join(o.failure_text() for o, _ in results),
                f"{median([s['api_401'] for _, s in results]):.0f}",
            )
        )
    emma_failed = sum(o.failed for o, _ in runs["requests-emma"])
    emma_calls = max(s["token_calls"] for _, s in runs["requests-emma"])
    # At most two renewals per lifetime (plus the first token) is what a margin of a fifth
    # of the lifetime allows with time to spare on a loaded machine.
    allowed = int(2 * seconds / lifetime) + 1
    return Section(
        title="Short tokens",
        intro=f"""
{threads} threads on one Session, requests back to back for {seconds:g} s per round, {rounds}
rounds, {lifetime} s tokens, an instant token endpoint. Counts are medians per round;
failures are listed per round.
""",
        headers=[
            "library",
            "requests",
            "token calls",
            "token calls per lifetime",
            "failures",
            "server 401s",
        ],
        rows=rows,
        notes=[
            (
                "requests-oauthlib raises `TokenExpiredError` once its token expires: renewing a "
                "client-credentials token is left to the caller."
            ),
        ],
        targets=[
            Target(
                "short tokens: failures, requests-emma", "0", str(emma_failed), emma_failed == 0
            ),
            Target(
                "short tokens: token calls, requests-emma",
                f"≤ {allowed} per round (2 per lifetime)",
                f"max {emma_calls}",
                emma_calls <= allowed,
            ),
        ],
    )
