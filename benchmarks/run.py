"""Run every benchmark and regenerate ``docs/benchmarks.md`` and its charts.

    python benchmarks/run.py            # the full run, about 20 minutes on 2 cores
    python benchmarks/run.py --quick    # fewer, shorter rounds: about 6 minutes
    python benchmarks/run.py --quick --only aiohttp: --output /tmp/try/benchmarks.md

It measures whichever ``requests_emma`` is installed: with requests, then with
``httpx.AsyncClient``, ``httpx2.AsyncClient`` and ``aiohttp.ClientSession``
(``bench_httpx.py``, whose sections are titled "httpx: ...", "httpx2: ...", "aiohttp: ..."),
then the request path with opentelemetry-api installed (``bench_telemetry.py``).
``--only`` runs the sections whose step names start with one of the prefixes given (the
names it prints; write the page elsewhere with ``--output``, as it lacks the others). The
targets are
reported, pass or fail, on the page; ``--check`` also makes a failed target the exit
status. What it measured is saved beside the charts (``docs/benchmarks/results.json``), from which
``python benchmarks/report.py`` renders the page again without measuring.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness
import bench_httpx
import bench_memory
import bench_speed
import bench_telemetry
import bench_threads
import report
from peers_aiohttp import AIOHTTP
from peers_httpx import HTTPX, HTTPX2
from report import Section, Target

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "benchmarks.md"
CHARTS = ROOT / "docs" / "benchmarks"
LIBRARIES = (
    "requests-emma",
    "requests",
    "urllib3",
    "requests-oauthlib",
    "oauthlib",
    "google-auth",
    "requests-auth",
    "authlib",
    "httpx",
    "httpx2",
    "httpcore",
    "aiohttp",
    "anyio",
    "trio",
    "httpx-auth",
    "opentelemetry-api",
    "matplotlib",
)

FULL = {
    "attach": {"rounds": 40, "count": 2_000},
    "end_to_end": {"rounds": 150, "count": 20},
    "import_time": {"rounds": 25},
    "burst": {"rounds": 3},
    "stall": {"rounds": 2, "seconds": 20.0},
    "short_tokens": {"rounds": 2, "seconds": 6.0},
    "memory": {"instances": 300, "renewals": 2_000},
    "fleet": {"rounds": 2},
    "profile": {"count": 50_000},
    "httpx": bench_httpx.FULL,
    "telemetry": bench_telemetry.FULL,
}
QUICK = {
    "attach": {"rounds": 10, "count": 1_000},
    "end_to_end": {"rounds": 40, "count": 20},
    "import_time": {"rounds": 5},
    "burst": {"rounds": 1},
    "stall": {"rounds": 1, "seconds": 6.0},
    "short_tokens": {"rounds": 1, "seconds": 3.0},
    "memory": {"instances": 100, "renewals": 300},
    "fleet": {"rounds": 1},
    "profile": {"count": 10_000},
    "httpx": bench_httpx.QUICK,
    "telemetry": bench_telemetry.QUICK,
}


def fleet_section(*, rounds: int) -> Section:
    """FLEET: token calls of 16 processes sharing a token cache on a cold start.

    Measured by ``benchmarks/fleet.py`` (which also runs on its own); this turns its numbers
    into the page's table and target.
    """
    # In a fresh interpreter: fleet.py's spawned processes would otherwise import this
    # script, and with it matplotlib and every peer library, before their first request.
    code = (
        "import json, fleet; "
        f"print(json.dumps(fleet.measure(processes=16, rounds={rounds}, token_delay=0.2)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    contenders = result["contenders"]
    rows = [
        (
            name,
            f"{row['token_calls']:g} (max {row['token_calls_max']})",
            report.fmt(row["seconds_to_all_first_200"], 3),
            report.fmt(row["ratio_to_no_cache"]),
        )
        for name, row in contenders.items()
    ]
    caches = [name for name in contenders if name != "no cache"]
    return Section(
        title="Fleet",
        intro=f"""
{result["processes"]} fresh processes (spawned), each with its own `EmmaAuth`, released
together by a barrier to send their first request; with no cache, then sharing a
`FileTokenCache`, then a `RedisTokenCache` (when `redis-server` and redis-py are installed).
Token endpoint {result["token_delay"]:g} s; medians over {result["rounds"]} rounds, the
contenders interleaved within each round. Measured by `benchmarks/fleet.py`.
""",
        headers=[
            "token cache",
            "token calls",
            "s until every process has its first 200",
            "time vs no cache",
        ],
        rows=rows,
        notes=[]
        if "redis" in contenders
        else ["redis: not measured (no redis-server or redis-py)"],
        targets=[
            Target(
                "fleet cold start with a shared cache",
                "1 token call for 16 processes",
                ", ".join(f"{n}: max {contenders[n]['token_calls_max']}" for n in caches),
                bool(caches) and all(contenders[n]["token_calls_max"] == 1 for n in caches),
            )
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    parser.add_argument(
        "--output", type=Path, default=PAGE, help=f"the page to write (default {PAGE})"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="PREFIX",
        help="run only the steps whose names start with one of these (e.g. 'httpx2:')",
    )
    args = parser.parse_args(argv)
    if args.only and args.output.resolve() == PAGE:
        parser.error("--only writes a page without the other sections: give --output elsewhere")
    plan = QUICK if args.quick else FULL
    charts = args.output.parent / args.output.stem
    began = time.monotonic()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = _harness.machine()
    sections: list[Section] = []

    def step(name: str, run: object) -> None:
        if args.only and not name.startswith(tuple(args.only)):
            return
        print(f"== {name}", flush=True)
        started = time.monotonic()
        section = run()  # type: ignore[operator]
        sections.append(section)
        for target in section.targets:
            print(f"   {report.verdict(target.passed):8} {target.what}: {target.measured}")
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)

    with _harness.server() as server:
        step(
            "attach cost", lambda: bench_speed.attach_cost(server, charts=charts, **plan["attach"])
        )
        step("end to end", lambda: bench_speed.end_to_end(server, **plan["end_to_end"]))
        step("import time", lambda: bench_speed.import_time(**plan["import_time"]))
        step("64-thread burst", lambda: bench_threads.burst(server, charts=charts, **plan["burst"]))
        step("renewal stall", lambda: bench_threads.stall(server, charts=charts, **plan["stall"]))
        step("short tokens", lambda: bench_threads.short_tokens(server, **plan["short_tokens"]))
        step("memory", lambda: bench_memory.memory(server, **plan["memory"]))
        step("fleet", lambda: fleet_section(**plan["fleet"]))
        # httpx, then its fork httpx2, then aiohttp: the same sections, one client each.
        for stack in (HTTPX, HTTPX2, AIOHTTP):
            for name, run in bench_httpx.sections_of(stack, server, plan["httpx"], charts):
                step(f"{stack.name}: {name}", run)
        step(
            "opentelemetry on the request path",
            lambda: bench_telemetry.telemetry_cost(server, **plan["telemetry"]),
        )
        step("profile", lambda: bench_speed.per_request_profile(server, **plan["profile"]))

    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    results = {
        "command": "python benchmarks/run.py",
        "quick": args.quick,
        "when": when,
        "revision": _harness.git_revision(),
        "machine": machine,
        "versions": _harness.versions(LIBRARIES),
        "sections": sections,
        "seconds": time.monotonic() - began,
        "chart_dir": charts.name,
        "load_at_end": _harness.load_average(),
    }
    # Saved beside the charts: `python benchmarks/report.py` renders the page again from it.
    report.save(charts / "results.json", **results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.page(**results))
    failed = [t for s in sections for t in s.targets if not t.passed]
    print(
        f"wrote {args.output} ({command}, {time.monotonic() - began:.0f} s); "
        f"{len(failed)} target(s) failed"
    )
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
