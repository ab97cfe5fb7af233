"""The per-request path with opentelemetry-api installed and no provider configured.

    python benchmarks/bench_telemetry.py            # prints the Markdown section
    python benchmarks/bench_telemetry.py --quick    # fewer rounds

requests-emma records OpenTelemetry spans and metrics only when a token is renewed or a
request is replayed after a 401 (``requests_emma/_telemetry.py``). This checks that the
ordinary request path costs the same with the API installed as without it, two ways:

- *measured*: pairs of fresh interpreters, one where ``import opentelemetry`` fails (as if
  not installed: ``sys.modules["opentelemetry"] = None`` before anything imports it) and one
  where it is imported with its default providers (proxies that record nothing), each
  having got its token (the first renewal, which loads the API where it can). In each, the
  EmmaAuth attach step and the EmmaHttpxAuth async flow step are timed next to a static
  header, round by round, as in the attach and flow-step benchmarks; the two interpreters of
  a pair run one after the other with the same hash seed, and what is compared is each one's
  ratio to its own static header;
- *counted*: in each interpreter, ``cProfile`` of the same steps: the function calls per
  request, and how many of them are in ``_telemetry.py`` or the ``opentelemetry`` package.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Server, median
from report import Section, Target, fmt

HERE = Path(__file__).resolve().parent
#: The interpreters of a round, by what they are on the page: how each treats opentelemetry.
#: The API cannot be imported (as if not installed), twice: the second says how much two
#: interpreters set up alike differ (the noise); or it is imported with its default (no-op)
#: providers.
CONDITIONS = {
    "not importable": "blocked",
    "not importable, again": "blocked",
    "installed, no provider": "installed",
}
BASELINE, AGAIN, INSTALLED = CONDITIONS
#: The most the per-request cost may grow with the API installed: the median over
#: interpreters of their ratio to their own static header, installed vs not importable.
LIMIT = 1.05

FULL = {"rounds": 10, "steps": 20, "count": 2_000}
QUICK = {"rounds": 3, "steps": 10, "count": 1_000}


# -- in the child interpreter ------------------------------------------------------------------


def _telemetry_frames(stats: pstats.Stats) -> tuple[int, int]:
    """(all function calls, calls in ``_telemetry.py`` or the opentelemetry package)."""
    total = telemetry = 0
    for (filename, _, _), (_, calls, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
        total += calls
        path = filename.replace("\\", "/")
        if path.endswith("requests_emma/_telemetry.py") or "/opentelemetry/" in path:
            telemetry += calls
    return total, telemetry


def _child(options: dict[str, Any]) -> dict[str, Any]:
    """Measure in this interpreter, with opentelemetry blocked or imported as told."""
    if options["opentelemetry"] == "blocked":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # every import fails
        providers = "none (not importable)"
    else:
        from opentelemetry import metrics, trace

        providers = (
            f"{type(trace.get_tracer_provider()).__name__}, "
            f"{type(metrics.get_meter_provider()).__name__}"
        )
    import anyio
    import httpx
    import peers_httpx
    from bench_speed import _fresh_copy, _prepared, _time_attach
    from peers import StaticBearer

    import requests_emma._telemetry as telemetry
    from requests_emma import EmmaAuth
    from requests_emma.httpx import EmmaHttpxAuth

    server = Server(**options["server"], process=None)  # type: ignore[arg-type]
    emma = EmmaAuth(server.client_id, server.client_secret, base_url=server.base_url)
    emma.get_token()  # the first renewal: it loads the OpenTelemetry API where it can
    loaded = telemetry._api is not None
    emma_httpx = EmmaHttpxAuth.sharing(emma)
    floor = StaticBearer(emma.get_token().access_token)
    floor_httpx = peers_httpx.StaticBearer(emma.get_token().access_token)
    steps, count = options["steps"], options["count"]

    base = _prepared(server)
    attach: dict[str, list[float]] = {"emma": [], "floor": []}
    copied: dict[str, list[float]] = {"emma": [], "floor": []}
    for step in range(steps):
        order = [("emma", emma), ("floor", floor)]
        for name, auth in order if step % 2 else reversed(order):
            attach[name].append(_time_attach(auth, base, count, with_copy=False))
        for name, auth in reversed(order) if step % 2 else order:
            copied[name].append(_time_attach(auth, base, count, with_copy=True))

    response = httpx.Response(200, request=httpx.Request("GET", server.api_url))

    async def flow_steps() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {"emma": [], "floor": []}
        for step in range(steps):
            order = [("emma", emma_httpx), ("floor", floor_httpx)]
            for name, auth in order if step % 2 else reversed(order):
                requests = [httpx.Request("GET", server.api_url) for _ in range(count)]
                gc.collect()
                gc.disable()
                try:
                    start = time.perf_counter()
                    for request in requests:
                        await peers_httpx.drive_flow(auth, request, response)
                    times[name].append((time.perf_counter() - start) / count)
                finally:
                    gc.enable()
        return times

    flow = anyio.run(flow_steps)

    # The same steps under the profiler: what runs per request, counted.
    copies = [_fresh_copy(base) for _ in range(count)]
    profiler = cProfile.Profile()
    profiler.enable()
    for copy in copies:
        copy.prepare_auth(emma)
    profiler.disable()
    attach_calls, attach_telemetry = _telemetry_frames(pstats.Stats(profiler))

    async def profiled_flow() -> pstats.Stats:
        requests = [httpx.Request("GET", server.api_url) for _ in range(count)]
        profiler = cProfile.Profile()
        profiler.enable()
        for request in requests:
            await peers_httpx.drive_flow(emma_httpx, request, response)
        profiler.disable()
        return pstats.Stats(profiler)

    flow_calls, flow_telemetry = _telemetry_frames(anyio.run(profiled_flow))

    def ratios(times: dict[str, list[float]]) -> list[float]:
        return [e / f for e, f in zip(times["emma"], times["floor"])]

    return {
        "providers": providers,
        "api_loaded": loaded,
        "opentelemetry_imported": "opentelemetry.trace" in sys.modules,
        "attach_us": median(attach["emma"]) * 1e6,
        "attach_ratio": median(ratios(attach)),
        "copy_ratio": median(ratios(copied)),
        "flow_us": median(flow["emma"]) * 1e6,
        "flow_ratio": median(ratios(flow)),
        # The profile also counts the loop around the step: the same in both interpreters.
        "attach_calls": attach_calls / count,
        "attach_telemetry_calls": attach_telemetry,
        "flow_calls": flow_calls / count,
        "flow_telemetry_calls": flow_telemetry,
    }


# -- in the benchmark's interpreter ------------------------------------------------------------


def _run_child(server: Server, opentelemetry: str, seed: int, steps: int, count: int) -> Any:
    options = {
        "opentelemetry": opentelemetry,
        "steps": steps,
        "count": count,
        "server": {
            "base_url": server.base_url,
            "client_id": server.client_id,
            "client_secret": server.client_secret,
            "token_url": server.token_url,
            "control_url": server.control_url,
        },
    }
    # No OTEL_* setting reaches the children: "no provider configured" means none at all.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, str(HERE / "bench_telemetry.py"), "--child", json.dumps(options)],
        capture_output=True,
        text=True,
        env={**environment, "PYTHONHASHSEED": str(seed)},
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench_telemetry child ({opentelemetry}) failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def telemetry_cost(server: Server, *, rounds: int, steps: int, count: int) -> Section:
    server.reset(token_lifetime=3600, token_delay=0.0, token_failure_rate=0.0)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONDITIONS}
    names = list(CONDITIONS)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:  # rotating order; one hash seed per round
            runs[name].append(_run_child(server, CONDITIONS[name], 1000 + round_, steps, count))

    def middle(name: str, key: str) -> float:
        return median([run[key] for run in runs[name]])

    def versus(name: str, key: str) -> float:
        """``name``'s median ratio to its static header over the baseline's."""
        return middle(name, key) / middle(BASELINE, key)

    def calls(name: str, key: str) -> str:
        counts = sorted({run[key] for run in runs[name]})
        return " or ".join(fmt(c, 1) for c in counts)

    rows = [
        (
            name,
            runs[name][0]["providers"],
            "yes" if all(r["api_loaded"] for r in runs[name]) else "no",
            fmt(middle(name, "attach_us")),
            fmt(middle(name, "attach_ratio"), 3),
            fmt(middle(name, "copy_ratio"), 3),
            fmt(middle(name, "flow_us")),
            fmt(middle(name, "flow_ratio"), 3),
            f"{calls(name, 'attach_calls')} / {calls(name, 'flow_calls')}",
            (
                f"{sum(r['attach_telemetry_calls'] for r in runs[name])} / "
                f"{sum(r['flow_telemetry_calls'] for r in runs[name])}"
            ),
        )
        for name in CONDITIONS
    ]
    keys = {
        "attach_ratio": "attach alone",
        "copy_ratio": "attach with the request copy",
        "flow_ratio": "async flow step",
    }

    def compared(name: str) -> str:
        return ", ".join(f"{what} {fmt(versus(name, key), 3)}x" for key, what in keys.items())

    telemetry_calls = sum(
        r["attach_telemetry_calls"] + r["flow_telemetry_calls"] for c in CONDITIONS for r in runs[c]
    )
    same_calls = all(
        len({r[key] for c in CONDITIONS for r in runs[c]}) == 1
        for key in ("attach_calls", "flow_calls")
    )
    as_intended = all(r["api_loaded"] for r in runs[INSTALLED]) and not any(
        r["api_loaded"] for c in (BASELINE, AGAIN) for r in runs[c]
    )
    timed = {key: versus(INSTALLED, key) for key in ("copy_ratio", "flow_ratio")}
    return Section(
        title="OpenTelemetry on the request path",
        intro=f"""
With opentelemetry-api installed and no tracer or meter provider configured, does a request
cost more? {rounds} rounds of three fresh interpreters each, in rotating order: in two,
`import opentelemetry` fails (as if it were not installed; the second shows how much two
interpreters set up alike differ), in the third it is imported with its default providers,
which record nothing. Each gets its token first (the first renewal, which loads the API
where it can: the "API loaded" column), then times, {steps} times {count:,} requests, the
`EmmaAuth` attach step (alone and with the request copy, as in *Attach cost*) and the
`EmmaHttpxAuth` async flow step alone (as in *httpx: the async flow step*), each next to a
static header in the same interpreter; the figures are medians over the interpreters. The
three of a round share a hash seed. Then `cProfile` counts, per request, the function calls
of each step and those in `requests_emma/_telemetry.py` or the `opentelemetry` package.
Measured by `benchmarks/bench_telemetry.py`.
""",
        headers=[
            "opentelemetry-api",
            "providers",
            "API loaded by the first renewal",
            "µs, EmmaAuth attach alone",
            "ratio to static header, alone",
            "ratio to static header, with request copy",
            "µs, EmmaHttpxAuth flow step",
            "ratio to static header",
            "profiled function calls per request, attach / flow step",
            "telemetry calls, attach / flow step (all interpreters)",
        ],
        rows=rows,
        notes=[
            f"Installed vs not importable: {compared(INSTALLED)}.",
            f"Not importable, again vs not importable (the noise): {compared(AGAIN)}.",
            (
                "The drivers call the telemetry only when a token is renewed or a request is "
                "replayed after a 401: a request with a fresh token runs the same code either "
                "way, and the profiled calls per request show it (they include the profiled "
                "loop's own calls)."
            ),
        ],
        targets=[
            Target(
                "no telemetry on the per-request path",
                "0 telemetry calls, the same calls with opentelemetry-api as without",
                f"{telemetry_calls} telemetry calls; same calls: {'yes' if same_calls else 'no'}"
                + ("" if as_intended else "; the API was not loaded as intended"),
                telemetry_calls == 0 and same_calls and as_intended,
            ),
            Target(
                "per-request cost with opentelemetry-api, no provider",
                f"≤ {LIMIT}x without it: attach with the request copy, async flow step",
                f"attach {fmt(timed['copy_ratio'], 3)}x, flow step {fmt(timed['flow_ratio'], 3)}x",
                all(value <= LIMIT for value in timed.values()),
            ),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    import _harness
    import report

    with _harness.server() as server:
        section = telemetry_cost(server, **(QUICK if args.quick else FULL))
    print(report.section_markdown(section))
    for target in section.targets:
        print(f"{report.verdict(target.passed):8} {target.what}: {target.measured}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
