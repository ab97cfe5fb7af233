"""The async clients: the flow step, end to end, a 1,000-task cold start (asyncio, and trio
where the client runs on it) and 401 storm, event-loop lag during a renewal, the renewal
stall; on ``httpx.AsyncClient``, ``httpx2.AsyncClient`` and ``aiohttp.ClientSession``.

    python benchmarks/bench_httpx.py                   # prints the Markdown sections
    python benchmarks/bench_httpx.py --quick           # fewer, shorter rounds
    python benchmarks/bench_httpx.py --stack aiohttp   # one client's sections only

Each section function takes the running ``benchmarks/server.py`` (``_harness.server()``)
and a ``stack`` (``peers_httpx.HTTPX`` by default, ``HTTPX2``, ``peers_aiohttp.AIOHTTP``:
the client and its contenders; its name titles the section, "httpx2: ...") and returns a
``report.Section``, as the other benchmark modules do; each runs its own event loop
(``anyio.run``), under asyncio unless it says otherwise. requests-emma's adapter for the
stack (``EmmaHttpxAuth``, ``EmmaHttpx2Auth``, ``EmmaAiohttpMiddleware``) is measured when it
can be imported, and its targets are "not measured" otherwise. aiohttp has no flow step.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import functools
import gc
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness
import anyio
import peers_httpx
import report
from _harness import Server, median, percentile
from bench_speed import static_token
from peers_aiohttp import AIOHTTP
from peers_httpx import HTTPX, HTTPX2, AsyncContender, Builder, Stack
from report import Section, Target, bar_chart, fmt

SLOW = 0.25  # seconds: a request slower than this waited on a renewal
LAG_LIMIT = 0.05  # seconds: the most an event loop may be late during a renewal
TICK = 0.005  # seconds between the lag ticker's wake-ups
FLOOR = "static header"
NOT_MEASURED = "not measured"
#: 1,000 tasks share this many keep-alive connections. Every task runs the auth flow before
#: it waits for a connection, so the auth sees all 1,000 at once whatever the pool's size;
#: but httpcore's pool compares every waiting request with every connection on each event,
#: so 1,000 requests waiting on 100 connections took 7-26 s on 2 shared cores whatever the
#: auth did (static header included), and 2 s on 10.
BURST_POOL = 10
TIMEOUT = 60.0  # seconds: waiting for a pooled connection is not a failure here
STACKS = {stack.name: stack for stack in (HTTPX, HTTPX2, AIOHTTP)}
LIBRARIES = (
    "requests-emma",
    "httpx",
    "httpx2",
    "httpcore",
    "aiohttp",
    "anyio",
    "trio",
    "httpx-auth",
    "authlib",
)

FULL = {
    "flow_step": {"rounds": 30, "count": 2_000, "in_process": 500},
    "end_to_end": {"rounds": 100, "count": 20},
    "burst": {"rounds": 3},
    "loop_lag": {"rounds": 2, "seconds": 4.0},
    "stall": {"rounds": 3, "seconds": 8.0},
}
QUICK = {
    "flow_step": {"rounds": 10, "count": 1_000, "in_process": 300},
    "end_to_end": {"rounds": 30, "count": 20},
    "burst": {"rounds": 1},
    "loop_lag": {"rounds": 1, "seconds": 4.0},
    "stall": {"rounds": 1, "seconds": 8.0},
}


def _run(function: Callable[..., Awaitable[Any]], *args: Any, backend: str = "asyncio") -> Any:
    return anyio.run(functools.partial(function, *args), backend=backend)


def _emma_note(stack: Stack) -> list[str]:
    missing = stack.emma_missing()
    if missing is None:
        return []
    return [f"{stack.emma}: {missing}; its rows and targets are left out."]


def _emma_target(
    stack: Stack, what: str, target: str, measured: Callable[[], tuple[str, bool]]
) -> Target:
    """A target for requests-emma's adapter: measured, or "not measured" when it is not
    installed."""
    missing = stack.emma_missing()
    if missing is not None:
        return Target(what, target, f"{NOT_MEASURED}: {stack.emma} {missing}", False)
    text, passed = measured()
    return Target(what, target, text, passed)


@dataclasses.dataclass
class Outcome:
    """What the tasks saw: latencies, successes, failures by kind."""

    latencies: list[float] = dataclasses.field(default_factory=list)
    ok: int = 0
    failures: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    seconds: float = 0.0

    async def request(self, client: Any, url: str) -> None:
        start = time.perf_counter()
        try:
            response = await client.get(url)
            failure = None if response.status_code == 200 else f"HTTP {response.status_code}"
        except Exception as exc:  # noqa: BLE001 - a benchmark counts what users would see
            failure = type(exc).__name__
        self.latencies.append(time.perf_counter() - start)
        if failure is None:
            self.ok += 1
        else:
            self.failures[failure] += 1

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def failure_text(self) -> str:
        return ", ".join(f"{n} {kind}" for kind, n in self.failures.most_common()) or "0"


async def _warm(contender: AsyncContender, url: str, requests: int = 5) -> None:
    """The first token (fetched by the caller where the library wants that) and a connection."""
    if contender.fetch_first is not None:
        await contender.fetch_first()
    for _ in range(requests):
        response = await contender.client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{contender.name}: warm-up request answered {response.status_code}")


@dataclasses.dataclass
class Pairs:
    """Seconds per operation of each contender and of the floor timed right next to it."""

    times: dict[str, list[float]]
    floor: dict[str, list[float]]

    def ratio(self, name: str) -> float:
        return median([t / f for t, f in zip(self.times[name], self.floor[name])])

    def ratios(self, name: str) -> list[float]:
        return [t / f for t, f in zip(self.times[name], self.floor[name])]

    def added(self, name: str) -> float:
        return median([t - f for t, f in zip(self.times[name], self.floor[name])])


async def _paired(
    names: Sequence[str], rounds: int, measure: Callable[[str], Awaitable[float]]
) -> Pairs:
    """Each contender timed right next to the floor (``names[0]``), alternately before and
    after it, in rotating order, round by round, so a change in the machine's load hits
    both sides of a ratio. The floor's pairs with itself are all 1."""
    floor, others = names[0], list(names[1:])
    pairs = Pairs({n: [] for n in names}, {n: [] for n in names})
    for round_ in range(rounds):
        shift = round_ % max(1, len(others))
        for i, name in enumerate(others[shift:] + others[:shift]):
            if (round_ + i) % 2:
                t = await measure(name)
                t_floor = await measure(floor)
            else:
                t_floor = await measure(floor)
                t = await measure(name)
            pairs.times[name].append(t)
            pairs.floor[name].append(t_floor)
            pairs.times[floor].append(t_floor)
            pairs.floor[floor].append(t_floor)
    return pairs


# -- the async flow step, alone and on an in-process transport ---------------------------------


def _in_process_transport(http: Any) -> Any:
    def answer(request: Any) -> Any:
        if request.headers.get("Authorization", "").startswith("Bearer "):
            return http.Response(200, json={"id": 18})
        return http.Response(401, json={"code": "UNAUTHORIZED", "message": "no token"})

    return http.MockTransport(answer)


async def _flow_step(
    server: Server, token: str, rounds: int, count: int, in_process: int, stack: Stack
) -> Any:
    url, http = server.api_url, stack.http
    real = {FLOOR: stack.static_header(token, **stack.options(4))}
    for name, build in stack.renewing(server, 3600).items():
        real[name] = build(**stack.options(4))
    for contender in real.values():
        await _warm(contender, url)
    # The same auths (and their cached tokens) on clients whose transport answers in-process.
    mock = functools.partial(_in_process_transport, http)
    local: dict[str, AsyncContender] = {}
    for name, contender in real.items():
        if name == FLOOR:
            local[name] = stack.static_header(token, transport=mock())
        elif name == stack.emma:
            local[name] = peers_httpx.emma(
                server, auth=contender.client.auth, stack=stack, transport=mock()
            )
        elif name.startswith("authlib"):
            local[name] = peers_httpx.authlib(
                server, 3600, token=contender.client.token, http=http, transport=mock()
            )
        else:  # httpx-auth: a second auth finds the first one's token in the global cache
            local[name] = peers_httpx.httpx_auth(server, 3600, transport=mock())
    for name, contender in local.items():
        contender.fetch_first = None  # authlib's was given the token
        await _warm(contender, url, requests=20)
    builder = real[FLOOR].client

    async def flow(name: str) -> float:
        requests = [builder.build_request("GET", url) for _ in range(count)]
        response = http.Response(200, request=requests[0])
        step = real[name].step
        assert step is not None
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for request in requests:
                await step(request, response)
            return (time.perf_counter() - start) / count
        finally:
            gc.enable()

    async def through_client(name: str) -> float:
        client = local[name].client
        start = time.perf_counter()
        for _ in range(in_process):
            await client.get(url)
        return (time.perf_counter() - start) / in_process

    names = list(real)
    flow_pairs = await _paired(names, rounds, flow)
    local_pairs = await _paired(names, rounds, through_client)
    for contender in (*real.values(), *local.values()):
        await contender.client.aclose()
    return names, flow_pairs, local_pairs


def flow_step(
    server: Server,
    *,
    rounds: int,
    count: int,
    in_process: int,
    charts: Path | None = None,
    stack: Stack = HTTPX,
) -> Section:
    """``charts``: the folder to draw the chart in (none drawn without it)."""
    if stack.http is None:
        raise ValueError(f"{stack.name} has no auth flow to time alone")
    server.reset(token_lifetime=3600, token_delay=0.0, token_failure_rate=0.0)
    names, flow, local = _run(
        _flow_step, server, static_token(server), rounds, count, in_process, stack
    )
    chart = f"{stack.name}-flow.png"
    client = stack.client.strip("`")
    if charts is not None:
        bar_chart(
            charts / chart,
            title=f"{client}: a cached token (ratio to a static header; lower is better)",
            labels=names,
            series={
                "flow step alone": [flow.ratio(n) for n in names],
                "in-process transport": [local.ratio(n) for n in names],
            },
            ylabel="time / static header (log scale)",
            log=True,
            line=1.25,
            line_label=f"1.25: {stack.emma_class}'s target, on the flow step alone",
        )
    floor_local = median(local.times[FLOOR])
    rows = [
        (
            n,
            fmt(median(flow.times[n]) * 1e6),
            fmt(flow.ratio(n)),
            fmt(median(local.times[n]) * 1e6, 1),
            fmt(local.added(n) * 1e6, 1),
            fmt(local.ratio(n), 3),
        )
        for n in names
    ]

    def emma_measured() -> tuple[str, bool]:
        ratio = flow.ratio(stack.emma)
        return f"{fmt(ratio)}x", ratio <= 1.25

    http = stack.http.__name__
    return Section(
        title=f"{stack.name}: the async flow step",
        intro=f"""
*Flow step alone*: what {stack.client} does with an auth for one request, without
network: `auth.async_auth_flow(request)`, `__anext__()` for the request to send, `asend()`
of a 200 response (which ends the flow), `aclose()`; for authlib, first what its
`AsyncOAuth2Client.request` does before sending (`await ensure_active_token(token)`), then
its `token_auth`'s flow. A cached, long-lived (3600 s) token; {count:,} fresh requests per
measurement. *In-process transport*: `await client.get(url)` on an `AsyncClient` (authlib:
its own `AsyncOAuth2Client`) whose transport is an `{http}.MockTransport` answering 200,
with the same auth and token, {in_process} requests per measurement. {rounds} rounds,
contenders in rotating order, each timed right next to the floor (alternately before and
after it); medians over rounds of those adjacent pairs. The floor is an `{http}.Auth` whose
`auth_flow` sets a fixed `Authorization` header.
""",
        headers=[
            "contender",
            "µs, flow step alone",
            "ratio to floor, flow step alone",
            "µs per request, in-process transport",
            "µs added over the floor, in-process",
            "ratio to floor, in-process",
        ],
        rows=rows,
        notes=[
            f"The floor on the in-process transport: {fmt(floor_local * 1e6, 1)} µs per request.",
            (
                "httpx-auth and the floor implement `auth_flow` only, so both run through "
                "httpx's default `async_auth_flow`; authlib's `token_auth` declares "
                "`requires_request_body = True` and rebuilds the request with its header."
                if stack is HTTPX
                else "The floor implements `auth_flow` only, so it runs through httpx2's "
                "default `async_auth_flow`; authlib's `token_auth` declares "
                "`requires_request_body = True` and rebuilds the request with its header."
            ),
            *_peer_notes(stack, names),
            *_emma_note(stack),
        ],
        targets=[
            _emma_target(
                stack,
                f"{stack.emma_class} async flow step",
                "≤ 1.25x the static header",
                emma_measured,
            )
        ],
        chart=None if charts is None else chart,
    )


def _peer_notes(stack: Stack, names: Sequence[str]) -> list[str]:
    """Figures measured elsewhere (httpx), and why a peer is missing (httpx2, aiohttp)."""
    if stack is HTTPX:
        return [
            (
                "Figures to compare with (measured elsewhere, in-process transport): "
                "httpx-auth adds 22 µs per request over a static header, authlib 58 µs."
            )
        ]
    if stack is HTTPX2:
        notes = [
            (
                "httpx-auth is left out: its auths are `httpx.Auth`s, which `httpx2.AsyncClient` "
                'refuses (`TypeError: Invalid "auth" argument`). authlib 1.9 builds its '
                "`AsyncOAuth2Client` on httpx2 when httpx2 is installed: it is the httpx2 auth a "
                "user would pick."
            )
        ]
        if not any(n.startswith("authlib") for n in names):
            notes.append("authlib: not installed; its row is left out.")
        return notes
    return []


# -- end to end --------------------------------------------------------------------------------


async def _end_to_end(server: Server, token: str, rounds: int, count: int, stack: Stack) -> Any:
    url = server.api_url
    contenders = {FLOOR: stack.static_header(token, **stack.options(4))}
    for name, build in stack.renewing(server, 3600).items():
        contenders[name] = build(**stack.options(4))
    for contender in contenders.values():
        await _warm(contender, url, requests=20)

    async def requests(name: str) -> float:
        client = contenders[name].client
        start = time.perf_counter()
        for _ in range(count):
            response = await client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"{name}: answered {response.status_code}")
        return (time.perf_counter() - start) / count

    pairs = await _paired(list(contenders), rounds, requests)
    for contender in contenders.values():
        await contender.client.aclose()
    return pairs


def end_to_end(server: Server, *, rounds: int, count: int, stack: Stack = HTTPX) -> Section:
    server.reset(token_lifetime=3600, token_delay=0.0, token_failure_rate=0.0)
    pairs = _run(_end_to_end, server, static_token(server), rounds, count, stack)
    rows = [
        (
            n,
            fmt(median(pairs.times[n]) * 1e6, 0),
            fmt(pairs.ratio(n), 3),
            f"{fmt(percentile(pairs.ratios(n), 0.25), 3)} to "
            f"{fmt(percentile(pairs.ratios(n), 0.75), 3)}"
            if n != FLOOR
            else "",
        )
        for n in pairs.times
    ]

    def emma_measured() -> tuple[str, bool]:
        ratio = pairs.ratio(stack.emma)
        return f"{fmt(ratio, 3)}x", ratio <= 1.03

    return Section(
        title=f"{stack.name}: end to end",
        intro=f"""
`GET /v1/locations/18` with {_client_phrase(stack)} on a
keep-alive connection to the server process, one task, {count} requests per measurement,
{rounds} rounds, each contender timed right next to the floor (alternately before and after
it); the ratio is the median over rounds of those adjacent pairs. The whole request:
building it, {_auth_phrase(stack)}, sending, the server's answer. A cached, long-lived
token.
""",
        headers=[
            "contender",
            "µs per request",
            "ratio to static header",
            "middle half of the per-round ratios",
        ],
        rows=rows,
        notes=_emma_note(stack),
        targets=[
            _emma_target(
                stack,
                f"{stack.emma_class} end to end",
                "within 3 % of a static header",
                emma_measured,
            )
        ],
    )


def _client_phrase(stack: Stack) -> str:
    if stack.http is None:
        return f"one {stack.client} per contender, its middleware in `middlewares=`"
    return f"{stack.client} (authlib: its `AsyncOAuth2Client`)"


def _auth_phrase(stack: Stack) -> str:
    return "the middleware" if stack.http is None else "the auth flow"


# -- a 1,000-task cold start and 401 storm -----------------------------------------------------


async def _burst(client: Any, url: str, tasks: int) -> Outcome:
    """``tasks`` tasks, released together once all are waiting, each sending one request."""
    outcome = Outcome()
    ready = 0
    all_ready, go = anyio.Event(), anyio.Event()

    async def one() -> None:
        nonlocal ready
        ready += 1
        if ready == tasks:
            all_ready.set()
        await go.wait()
        await outcome.request(client, url)

    async with anyio.create_task_group() as group:
        for _ in range(tasks):
            group.start_soon(one)
        await all_ready.wait()
        started = time.perf_counter()
        go.set()
    outcome.seconds = time.perf_counter() - started
    return outcome


async def _open_connections(client: Any, server: Server) -> None:
    """Open the pool's connections with requests that carry no auth (the server's counters),
    so that a cold start times the auth, not connecting."""
    async with anyio.create_task_group() as group:
        for _ in range(BURST_POOL):
            group.start_soon(functools.partial(client.get, server.control_url + "stats", auth=None))


async def _cold_start(
    server: Server, build: Builder, tasks: int, stack: Stack
) -> tuple[int, Outcome]:
    """Token calls and what the callers saw when ``tasks`` tasks start with no token."""
    contender = build(**stack.options(BURST_POOL, TIMEOUT))
    async with contender.client:
        await _open_connections(contender.client, server)
        server.reset()
        if contender.fetch_first is not None:
            await contender.fetch_first()
        outcome = await _burst(contender.client, server.api_url, tasks)
        return server.stats()["token_calls"], outcome


async def _storm(
    server: Server, build: Builder, tasks: int, stack: Stack
) -> tuple[int, Outcome, str]:
    """Token calls and what the callers saw when ``tasks`` tasks find their token revoked,
    and what the next request got."""
    url = server.api_url
    contender = build(**stack.options(BURST_POOL, TIMEOUT))
    async with contender.client:
        await _open_connections(contender.client, server)
        if contender.fetch_first is not None:
            await contender.fetch_first()
        await _burst(contender.client, url, tasks)  # the token
        server.revoke(access_only=True)
        server.reset()
        outcome = await _burst(contender.client, url, tasks)
        calls = server.stats()["token_calls"]
        after = Outcome()
        await after.request(contender.client, url)
        return calls, outcome, after.failure_text() if after.failed else "200"


def _burst_intro(tasks: int, token_delay: float, rounds: int, stack: Stack) -> str:
    if stack.http is None:
        pool = f"""
The tasks share {BURST_POOL} keep-alive connections (`TCPConnector(limit={BURST_POOL})`),
opened before the round: aiohttp runs the middlewares before it waits for a connection, so
the middleware sees all {tasks:,} at once.
"""
    else:
        pool = f"""
The tasks share {BURST_POOL} keep-alive connections, opened before the round: each task runs
the auth flow before it waits for a connection, so the auth sees all {tasks:,} at once (and
httpcore's pool hands out connections in time that grows with the waiting requests times the
connections: on 100, these bursts took 7-26 s whatever the auth did).
"""
    return (
        f"""
{tasks:,} tasks on one {stack.client}, released together once all are waiting, each sending
one request; token endpoint {token_delay:g} s, 3600 s tokens; {rounds} round(s), contenders
interleaved; medians over rounds.
"""
        + pool
    )


_FAILURE_NOTE = "A failure is what a caller sees: a status other than 200, or an exception (named)."
_HTTPX_AUTH_BLOCKS = (
    "httpx-auth fetches its token with a blocking `httpx.Client` call inside the event loop: "
    "every other task waits for it, which is why it makes one call."
)


def _failure_notes(names: Sequence[str]) -> list[str]:
    if any(n.startswith("httpx-auth") for n in names):
        return [f"{_FAILURE_NOTE} {_HTTPX_AUTH_BLOCKS}"]
    return [_FAILURE_NOTE]


def cold_start(
    server: Server,
    *,
    rounds: int,
    tasks: int = 1_000,
    token_delay: float = 0.3,
    stack: Stack = HTTPX,
) -> Section:
    server.reset(token_lifetime=3600, token_delay=0.0, token_failure_rate=0.0)
    token = static_token(server)
    server.reset(token_delay=token_delay)
    builders: dict[str, Builder] = {
        FLOOR: lambda **c: stack.static_header(token, **c),
        **stack.renewing(server, 3600),
    }
    backends = stack.backends
    runs: dict[tuple[str, str], list[tuple[int, Outcome]]] = {
        (n, b): [] for n in builders for b in backends
    }
    errors: dict[tuple[str, str], str] = {}
    for round_ in range(rounds):
        names = list(builders) if round_ % 2 == 0 else list(reversed(builders))
        for name in names:
            for backend in backends:
                try:
                    result = _run(
                        _cold_start, server, builders[name], tasks, stack, backend=backend
                    )
                except Exception as exc:  # noqa: BLE001 - a library that cannot run there
                    errors[name, backend] = f"does not run: {type(exc).__name__}: {exc}"[:200]
                    continue
                runs[name, backend].append(result)
    server.reset(token_delay=0.0)
    rows = []
    for name in builders:
        row: list[object] = [name]
        for backend in backends:
            done = runs[name, backend]
            if not done:
                row += [errors.get((name, backend), "not run"), "", ""]
                continue
            calls = f"{median([c for c, _ in done]):.0f}"
            if name == FLOOR:
                calls += " (a fixed token)"
            elif peers_fetch_first(name):
                calls += " (fetched by the caller first)"
            row += [
                calls,
                f"{median([o.failed for _, o in done]):.0f} / {tasks}",
                fmt(median([o.seconds for _, o in done]), 2),
            ]
        rows.append(row)

    def emma_measured() -> tuple[str, bool]:
        parts, passed = [], True
        for backend in backends:
            done = runs[stack.emma, backend]
            if not done:
                parts.append(f"{backend}: {errors.get((stack.emma, backend), 'not run')}")
                passed = False
                continue
            calls, failed = max(c for c, _ in done), max(o.failed for _, o in done)
            parts.append(f"{backend}: max {calls} calls, max {failed} failed")
            passed = passed and calls == 1 and failed == 0
        return "; ".join(parts), passed

    on = (
        "under asyncio and, in an event loop of its own, under trio "
        f"({stack.name} runs on trio through anyio)"
        if "trio" in backends
        else "under asyncio (aiohttp runs on asyncio only)"
    )
    return Section(
        title=f"{stack.name}: {tasks:,}-task cold start",
        intro=_burst_intro(tasks, token_delay, rounds, stack)
        + f"""
With no token yet, {on}.
""",
        headers=["contender"]
        + [
            f"{what}, {backend}"
            for backend in backends
            for what in ("token calls", "failed", "s until all answered")
        ],
        rows=rows,
        notes=[
            (
                "authlib needs the caller to fetch the first token (`fetch_token()`) before the "
                "client can be used; the one call is that one."
                if stack.http is not None
                else "The cookbook's `TokenRefresh401Middleware` is given its first token by "
                "the caller (the one call is that one); its `TokenRefreshExpiryMiddleware` "
                "fetches under an `asyncio.Lock`."
            ),
            ("The static-header row is the time this burst takes with no token work."),
            *_failure_notes(list(builders)),
            *_emma_note(stack),
        ],
        targets=[
            _emma_target(
                stack,
                f"{stack.emma_class} cold start, {tasks:,} tasks, {' and '.join(backends)}",
                "1 token call, 0 failures",
                emma_measured,
            )
        ],
    )


def peers_fetch_first(name: str) -> bool:
    """Whether the contender's first token is fetched by the caller."""
    return name.startswith(("authlib", "cookbook, on 401"))


def storm(
    server: Server,
    *,
    rounds: int,
    tasks: int = 1_000,
    token_delay: float = 0.3,
    stack: Stack = HTTPX,
) -> Section:
    server.reset(token_lifetime=3600, token_delay=token_delay, token_failure_rate=0.0)
    builders = stack.renewing(server, 3600)
    runs: dict[str, list[tuple[int, Outcome, str]]] = {n: [] for n in builders}
    for round_ in range(rounds):
        names = list(builders) if round_ % 2 == 0 else list(reversed(builders))
        for name in names:
            runs[name].append(_run(_storm, server, builders[name], tasks, stack))
    server.reset(token_delay=0.0)
    rows = [
        (
            name,
            f"{median([c for c, _, _ in done]):.0f}",
            f"{median([o.failed for _, o, _ in done]):.0f} / {tasks}",
            "; ".join(o.failure_text() for _, o, _ in done),
            "; ".join(after for _, _, after in done),
        )
        for name, done in runs.items()
    ]

    def emma_measured() -> tuple[str, bool]:
        done = runs[stack.emma]
        calls, failed = max(c for c, _, _ in done), max(o.failed for _, o, _ in done)
        return f"max {calls} calls, max {failed} failed", calls == 1 and failed == 0

    return Section(
        title=f"{stack.name}: 401 storm, {tasks:,} tasks",
        intro=_burst_intro(tasks, token_delay, rounds, stack)
        + """
The client gets its token (a burst, not counted), then the server revokes every access token
(refresh tokens stay valid) and the same burst runs again. "Next request" is one more request
after the storm.
""",
        headers=[
            "contender",
            "token calls",
            "failed",
            "failures seen by callers, per round",
            "next request, per round",
        ],
        rows=rows,
        notes=[
            *_storm_notes(stack),
            *_failure_notes(list(builders)),
            *_emma_note(stack),
        ],
        targets=[
            _emma_target(
                stack,
                f"{stack.emma_class} 401 storm, {tasks:,} tasks",
                "1 token call, 0 failures",
                emma_measured,
            )
        ],
    )


def _storm_notes(stack: Stack) -> list[str]:
    if stack is HTTPX:
        return [
            "httpx-auth and authlib do not renew on a 401.",
            (
                "Figures to compare with (measured elsewhere): neither httpx-auth nor authlib "
                "renews on a 401; all 50 of a 401 storm came back to the caller, and the next "
                "request was a 401 again."
            ),
        ]
    if stack is HTTPX2:
        return ["authlib does not renew on a 401."]
    return [
        (
            "The cookbook's `TokenRefresh401Middleware` renews on a 401 under an `asyncio.Lock`, "
            "its token call going through the session's middlewares (itself: the revoked token "
            "rides along); its `TokenRefreshExpiryMiddleware` renews only on expiry, not on a 401."
        )
    ]


# -- sustained load: event-loop lag and the renewal stall --------------------------------------


@dataclasses.dataclass
class Run:
    outcome: Outcome
    lags: list[float]
    stats: dict[str, Any]


async def _sustained(server: Server, contender: AsyncContender, tasks: int, seconds: float) -> Run:
    """``tasks`` tasks sending requests back to back for ``seconds``, and a ticker that
    sleeps ``TICK`` again and again and records how late it wakes: the event loop's lag."""
    url = server.api_url
    async with contender.client:
        await _warm(contender, url, requests=1)  # the first token, not timed
        server.reset()
        outcome, lags = Outcome(), []
        stop_at = time.perf_counter() + seconds

        async def ticker() -> None:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                await anyio.sleep(TICK)
                lags.append(max(0.0, time.perf_counter() - start - TICK))

        async def requests() -> None:
            while time.perf_counter() < stop_at:
                await outcome.request(contender.client, url)

        async with anyio.create_task_group() as group:
            group.start_soon(ticker)
            for _ in range(tasks):
                group.start_soon(requests)
        return Run(outcome, lags, server.stats())


def _sustained_runs(
    server: Server,
    *,
    rounds: int,
    tasks: int,
    seconds: float,
    lifetime: int,
    delay: float,
    stack: Stack,
) -> dict[str, list[Run]]:
    server.reset(token_lifetime=3600, token_delay=0.0, token_failure_rate=0.0)
    token = static_token(server)
    server.reset(token_lifetime=lifetime, token_delay=delay, token_failure_rate=0.0)
    builders: dict[str, Builder] = {
        FLOOR: lambda **c: stack.static_header(token, **c),
        **stack.renewing(server, lifetime),
    }
    runs: dict[str, list[Run]] = {name: [] for name in builders}
    for round_ in range(rounds):
        names = list(builders) if round_ % 2 == 0 else list(reversed(builders))
        for name in names:
            contender = builders[name](**stack.options(tasks, TIMEOUT))
            # The objects of everything run before (in run.py: every benchmark, matplotlib)
            # out of the collector's reach: a full collection over them paused the event
            # loop 40-100 ms, as long as the lag the target allows, whoever ran then.
            gc.collect()
            gc.freeze()
            try:
                runs[name].append(_run(_sustained, server, contender, tasks, seconds))
            finally:
                gc.unfreeze()
    server.reset(token_lifetime=3600, token_delay=0.0)
    return runs


def loop_lag(
    server: Server,
    *,
    rounds: int,
    seconds: float,
    tasks: int = 50,
    delay: float = 0.5,
    charts: Path | None = None,
    stack: Stack = HTTPX,
) -> Section:
    """``charts``: the folder to draw the chart in (none drawn without it)."""
    lifetime = 2
    runs = _sustained_runs(
        server,
        rounds=rounds,
        tasks=tasks,
        seconds=seconds,
        lifetime=lifetime,
        delay=delay,
        stack=stack,
    )
    chart = f"{stack.name}-lag.png"
    if charts is not None:
        pooled = {name: [x for r in results for x in r.lags] for name, results in runs.items()}
        bar_chart(
            charts / chart,
            title=f"{stack.name}: event-loop lag, {tasks} tasks, {lifetime} s tokens, "
            f"{delay:g} s token endpoint",
            labels=list(pooled),
            series={
                "p99": [percentile(lags, 0.99) * 1e3 for lags in pooled.values()],
                "max": [max(lags) * 1e3 for lags in pooled.values()],
            },
            ylabel="ms late (log scale)",
            log=True,
            line=LAG_LIMIT * 1e3,
            line_label=f"{LAG_LIMIT * 1e3:g} ms: {stack.emma_class}'s target",
        )
    rows = []
    for name, results in runs.items():
        lags = [x for r in results for x in r.lags]
        rows.append(
            (
                name,
                fmt(max(lags) * 1e3, 1),
                fmt(percentile(lags, 0.99) * 1e3, 1),
                f"{sum(x > LAG_LIMIT for x in lags)}",
                f"{median([r.stats['token_calls'] for r in results]):.0f}",
                f"{median([len(r.outcome.latencies) for r in results]):.0f}",
                "; ".join(r.outcome.failure_text() for r in results),
            )
        )

    def emma_measured() -> tuple[str, bool]:
        results = runs[stack.emma]
        worst = max(x for r in results for x in r.lags)
        renewals = min(r.stats["token_calls"] for r in results)
        floor = max(x for r in runs[FLOOR] for x in r.lags)
        text = (
            f"max {fmt(worst * 1e3, 1)} ms, {renewals} or more token calls per round "
            f"(static header: max {fmt(floor * 1e3, 1)} ms)"
        )
        return text, worst <= LAG_LIMIT and renewals >= 1

    return Section(
        title=f"{stack.name}: event-loop lag during a renewal",
        intro=f"""
{tasks} tasks on one {stack.client} sending requests back to back for {seconds:g} s per
round, {rounds} round(s), {lifetime} s tokens and a token endpoint that takes {delay:g} s,
so each round has a renewal or more (the first token is fetched before the round). Beside
them a ticker task sleeps {TICK * 1e3:g} ms again and again; how late it wakes is how long
the event loop was kept from running anything else. asyncio; {tasks} keep-alive connections.
Before each run the objects made so far are frozen out of the garbage collector's reach
(`gc.freeze()`): a full collection over them would pause the loop whoever runs then.
""",
        headers=[
            "contender",
            "max lag ms",
            "p99 lag ms",
            f"ticks > {LAG_LIMIT * 1e3:g} ms late",
            "token calls per round",
            "requests per round",
            "failures, per round",
        ],
        rows=rows,
        notes=[
            ("The static-header row is the lag this load causes with no token work at all."),
            *(
                [
                    (
                        "Figure to compare with (measured elsewhere, 200 tasks, 0.5 s token "
                        "endpoint): httpx-auth froze the event loop for its whole token call, "
                        "546 ms. A frozen loop is frozen whatever the number of tasks; 50 here keep "
                        "the lag of the load itself (the static-header row) well under the 50 ms "
                        "target on 2 shared cores, where 200 tasks alone lagged the loop by "
                        "90-170 ms."
                    )
                ]
                if stack is HTTPX
                else []
            ),
            *_emma_note(stack),
        ],
        targets=[
            _emma_target(
                stack,
                f"{stack.emma_class} event-loop lag during a renewal",
                f"≤ {LAG_LIMIT * 1e3:g} ms",
                emma_measured,
            )
        ],
        chart=None if charts is None else chart,
    )


def stall(
    server: Server,
    *,
    rounds: int,
    seconds: float,
    tasks: int = 8,
    delay: float = 0.3,
    charts: Path | None = None,
    stack: Stack = HTTPX,
) -> Section:
    """``charts``: the folder to draw the chart in (none drawn without it).

    The target is relative: a request can be slow on asyncio with no auth at all (httpx's
    own pool waits, see the notes), so requests-emma's adapter passes when it has no more
    slow requests over the run than the static header in the same rounds."""
    lifetime = 2
    runs = _sustained_runs(
        server,
        rounds=rounds,
        tasks=tasks,
        seconds=seconds,
        lifetime=lifetime,
        delay=delay,
        stack=stack,
    )
    summary = {}
    for name, results in runs.items():
        latencies = [x for r in results for x in r.outcome.latencies]
        summary[name] = {
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies),
            "slow": median([sum(x > SLOW for x in r.outcome.latencies) for r in results]),
            "slow max": max(sum(x > SLOW for x in r.outcome.latencies) for r in results),
            "slow total": sum(x > SLOW for r in results for x in r.outcome.latencies),
            "requests": median([len(r.outcome.latencies) for r in results]),
            "token calls": median([r.stats["token_calls"] for r in results]),
            "401": median([r.stats["api_401"] for r in results]),
            "failures": "; ".join(r.outcome.failure_text() for r in results),
        }
    static_max = summary[FLOOR]["max"]
    chart = f"{stack.name}-stall.png"
    if charts is not None:
        bar_chart(
            charts / chart,
            title=f"{stack.name}: latency, {tasks} tasks, {lifetime} s tokens, "
            f"{delay:g} s token endpoint",
            labels=list(summary),
            series={q: [summary[n][q] * 1e3 for n in summary] for q in ("p50", "p99", "max")},
            ylabel="ms (log scale)",
            log=True,
            line=SLOW * 1e3,
            line_label=f"{SLOW * 1e3:.0f} ms: waited on a renewal",
        )
    rows = [
        (
            name,
            fmt(s["p50"] * 1e3, 1),
            fmt(s["p99"] * 1e3, 1),
            fmt(s["max"] * 1e3, 1),
            fmt(s["max"] / static_max, 1) + "x",
            f"{s['slow']:.0f}",
            f"{s['requests']:.0f}",
            f"{s['token calls']:.0f}",
            f"{s['401']:.0f}",
            s["failures"],
        )
        for name, s in summary.items()
    ]

    def emma_measured() -> tuple[str, bool]:
        s, floor = summary[stack.emma], summary[FLOOR]
        return (
            (
                f"{s['slow total']} in {rounds} round(s) (static header: "
                f"{floor['slow total']}); max latency {fmt(s['max'] * 1e3, 0)} ms (static "
                f"header {fmt(static_max * 1e3, 0)} ms)"
            ),
            s["slow total"] <= floor["slow total"],
        )

    return Section(
        title=f"{stack.name}: renewal stall",
        intro=f"""
{tasks} tasks on one {stack.client} sending requests back to back for {seconds:g} s per
round, {rounds} round(s), {lifetime} s tokens, a token endpoint that takes {delay:g} s;
asyncio, {tasks} keep-alive connections. A request slower than {SLOW} s waited on a
renewal. Latencies pooled over rounds; per-round counts are medians. "max vs static"
compares with the static-header run of the same rounds. As for the lag, the objects made
before each run are frozen out of the garbage collector's reach.
""",
        headers=[
            "contender",
            "p50 ms",
            "p99 ms",
            "max ms",
            "max vs static",
            f"requests > {SLOW} s per round",
            "requests per round",
            "token calls per round",
            "server 401s per round",
            "failures, per round",
        ],
        rows=rows,
        notes=[*_stall_notes(stack), *_emma_note(stack)],
        targets=[
            _emma_target(
                stack,
                f"{stack.emma_class} renewal stall (asyncio)",
                f"no more requests > {SLOW} s than the static header in the same run",
                emma_measured,
            )
        ],
        chart=None if charts is None else chart,
    )


def _stall_notes(stack: Stack) -> list[str]:
    authlib = (
        "authlib's `ensure_active_token` holds an anyio `Lock` across its token call: "
        "every request waits for the renewal. It computes `expires_at` as "
        "`int(time.time()) + expires_in`, up to a second early."
    )
    pool = (
        f"The static-header row is the load alone. On asyncio, {stack.name}'s requests to this "
        "server sometimes take 0.3-2 s while the event loop is free (the lag ticker "
        "stays under 60 ms), with no auth at all (the static header's count), none on "
        "trio or with requests threads. httpcore's trace puts the wait before it "
        "starts writing the request on a pooled connection (none is opened), with 8 "
        "or 16 connections for the 8 tasks alike; httpx's open issue encode/httpx#3215 "
        "reports the same variance. Hence the target: no more slow requests than the "
        "static header."
    )
    if stack is HTTPX:
        return [
            authlib,
            pool,
            (
                "Figures to compare with (measured elsewhere, 8 s of 2 s tokens): renewals "
                "stalled 34 requests with httpx-auth and 80 with authlib."
            ),
        ]
    if stack is HTTPX2:
        return [authlib, pool]
    return [
        (
            "The cookbook's `TokenRefreshExpiryMiddleware` renews when its token has expired (no "
            "margin), under an `asyncio.Lock` every request waits on; its "
            "`TokenRefresh401Middleware` renews only after a 401, so requests sent with the "
            "expired token fail first and are sent again."
        ),
        "The static-header row is the load alone, on the same `ClientSession` set-up.",
    ]


# -- on its own --------------------------------------------------------------------------------


def sections_of(
    stack: Stack, server: Server, plan: dict[str, Any], charts: Path | None = None
) -> list[tuple[str, Callable[[], Section]]]:
    """``stack``'s sections, in the page's order, as (name, run) pairs (``run.py`` runs them
    one by one); ``plan``: ``FULL`` or ``QUICK``. aiohttp has no flow step."""
    on = {"server": server, "stack": stack}
    drawn = {**on, "charts": charts}
    sections = [
        ("end to end", lambda: end_to_end(**on, **plan["end_to_end"])),
        ("cold start", lambda: cold_start(**on, **plan["burst"])),
        ("401 storm", lambda: storm(**on, **plan["burst"])),
        ("event-loop lag", lambda: loop_lag(**drawn, **plan["loop_lag"])),
        ("renewal stall", lambda: stall(**drawn, **plan["stall"])),
    ]
    if stack.http is not None:
        sections.insert(0, ("flow step", lambda: flow_step(**drawn, **plan["flow_step"])))
    return sections


def _verdict(target: Target) -> str:
    if target.measured.startswith(NOT_MEASURED):
        return NOT_MEASURED
    return report.verdict(target.passed)


def markdown(sections: Sequence[Section], *, command: str, when: str, seconds: float) -> str:
    """The sections as Markdown, after a targets table (a missing contender's targets say
    "not measured" there) and the run's circumstances."""
    versions = _harness.versions(LIBRARIES)
    out = [
        f"- run: {when}, `{command}`, {seconds:.0f} s; code: `{_harness.git_revision()}`",
        "- machine: " + ", ".join(f"{k} {v}" for k, v in _harness.machine().items()),
        f"- load average at the end: {_harness.load_average()}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "## Targets",
        "",
        report.table(
            ["benchmark", "what", "target", "measured", "result"],
            [
                (s.title, t.what, t.target, t.measured, _verdict(t))
                for s in sections
                for t in s.targets
            ],
        ),
    ]
    for section in sections:
        out += ["", *report.section_lines(section)]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument(
        "--stack",
        choices=list(STACKS),
        action="append",
        help="the client to measure, again for more (default: all three)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    stacks = [STACKS[name] for name in args.stack or STACKS]
    began = time.monotonic()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections: list[Section] = []

    def step(name: str, run: Callable[[], Section]) -> None:
        print(f"== {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        section = run()
        sections.append(section)
        for target in section.targets:
            print(f"   {_verdict(target):12} {target.what}: {target.measured}", file=sys.stderr)
        print(f"   ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)

    with _harness.server() as server:
        for stack in stacks:
            for name, run in sections_of(stack, server, plan):
                step(f"{stack.name}: {name}", run)
    command = "python benchmarks/bench_httpx.py" + (" --quick" if args.quick else "")
    command += "".join(f" --stack {name}" for name in args.stack or ())
    print(markdown(sections, command=command, when=when, seconds=time.monotonic() - began))
    return 0


if __name__ == "__main__":
    sys.exit(main())
