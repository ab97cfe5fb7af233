"""Memory: bytes per ``EmmaAuth``, per cached token, and growth over many renewals."""

from __future__ import annotations

import gc
import tracemalloc

import peers
import requests
from _harness import Server
from report import Section, Target, fmt

#: Growth allowed over the measured renewals, after warm-up: 16 bytes a renewal. A leak of
#: anything per renewal (a token, a response, a hook) is hundreds of bytes a renewal.
ALLOWED_GROWTH_PER_RENEWAL = 16


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def memory(server: Server, *, instances: int, renewals: int) -> Section:
    from requests_emma import EmmaAuth

    server.reset(token_lifetime=3600, token_delay=0.0, token_failure_rate=0.0)
    tracemalloc.start()
    try:
        before = _traced()
        auths = [
            EmmaAuth(server.client_id, server.client_secret, base_url=server.base_url)
            for _ in range(instances)
        ]
        per_auth = (_traced() - before) / instances
        shared = requests.Session()
        before = _traced()
        light = [
            EmmaAuth(
                server.client_id, server.client_secret, base_url=server.base_url, session=shared
            )
            for _ in range(instances)
        ]
        per_light_auth = (_traced() - before) / instances
        before = _traced()
        for auth in auths:
            auth.get_token()
        per_token = (_traced() - before) / instances
        del auths, light

        session = peers.emma(server).session
        session.get(server.api_url, timeout=30).raise_for_status()
        warm_up = max(50, renewals // 10)

        def renew_by_revocation(count: int) -> None:
            for _ in range(count):
                server.revoke()  # the next request gets a 401, renews, and replays
                session.get(server.api_url, timeout=30).raise_for_status()

        renew_by_revocation(warm_up)
        server.reset()
        start = _traced()
        renew_by_revocation(renewals)
        growth = _traced() - start
        calls = server.stats()["token_calls"]
    finally:
        tracemalloc.stop()
    allowed = ALLOWED_GROWTH_PER_RENEWAL * renewals
    return Section(
        title="Memory",
        intro=f"""
Traced by `tracemalloc` (Python allocations, after `gc.collect()`): {instances} instances,
each fetching one token; then one Session renewing {renewals:,} times (each a revocation on
the server, a 401, a renewal and a replay) after {warm_up} renewals of warm-up.
""",
        headers=["measure", "bytes"],
        rows=[
            ("per EmmaAuth (with the requests.Session it makes for token calls)", fmt(per_auth, 0)),
            ("per EmmaAuth sharing a token-call Session", fmt(per_light_auth, 0)),
            ("per cached token", fmt(per_token, 0)),
            (f"growth over {renewals:,} renewals ({calls:,} token calls)", f"{growth:+,}"),
        ],
        targets=[
            Target(
                "memory over renewals",
                f"no growth (≤ {ALLOWED_GROWTH_PER_RENEWAL} B per renewal)",
                f"{growth:+,} B ({growth / renewals:+.1f} B per renewal)",
                growth <= allowed and calls >= renewals,
            )
        ],
    )
