"""The drivers record their renewals and 401 replays: requests and httpx, against the real
test server, read back through the OpenTelemetry SDK's in-memory exporter and reader."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import httpx
import pytest
import requests
from fakes import WAIT, auth_for, join_renewal
from opentelemetry.trace import SpanKind
from otel_kit import FAILURES, Kit, install

from requests_emma import EmmaAuth, RetryPolicy, _telemetry
from requests_emma.httpx import EmmaHttpxAuth
from requests_emma.testing import FakeClock, FakeEmmaServer, use_clock


@pytest.fixture
def otel() -> Iterator[Kit]:
    """The process's SDK, emptied before and after the test."""
    kit = install()
    kit.clear()
    yield kit
    kit.clear()


def renewals(kit: Kit) -> list[dict[str, object]]:
    return [dict(s.attributes or {}) for s in kit.spans() if s.name == "requests_emma renewal"]


def test_a_first_request_records_one_renewal_with_its_token_call(
    server: FakeEmmaServer, auth: EmmaAuth, otel: Kit
) -> None:
    """The first request's renewal is an INTERNAL span (first_use, issued) with one CLIENT
    span for POST /v1/issue-token inside it."""
    assert requests.get(server.base_url + "/v1/locations", auth=auth, timeout=WAIT).ok
    spans = {s.name: s for s in otel.spans()}
    renewal, call = spans["requests_emma renewal"], spans["POST /v1/issue-token"]
    assert renewal.kind is SpanKind.INTERNAL and call.kind is SpanKind.CLIENT
    assert call.parent is not None and call.parent.span_id == renewal.context.span_id
    assert dict(renewal.attributes or {})["requests_emma.renewal.trigger"] == "first_use"
    assert dict(renewal.attributes or {})["requests_emma.renewal.result"] == "issued"
    assert dict(call.attributes or {})["http.response.status_code"] == 200


def test_a_retried_token_call_records_its_resend_count(
    server: FakeEmmaServer, otel: Kit, waits: list[float]
) -> None:
    """A 503 then a grant: two attempt spans, the second with http.request.resend_count 1."""
    server.fail_next_token_calls(1, 503)
    auth_for(server, retry=RetryPolicy(attempts=2)).get_token()
    calls = [dict(s.attributes or {}) for s in otel.spans() if s.name == "POST /v1/issue-token"]
    assert [c.get("http.response.status_code") for c in calls] == [503, 200]
    assert "http.request.resend_count" not in calls[0]
    assert calls[1]["http.request.resend_count"] == 1


def test_a_401_replay_records_the_renewal_and_the_resend(
    server: FakeEmmaServer, auth: EmmaAuth, otel: Kit
) -> None:
    """After a 401 the renewal says after_401 (refreshed), and the replay is a CLIENT span
    with http.request.resend_count 1."""
    auth.get_token()
    server.expire_access_tokens()
    otel.clear()
    assert requests.get(server.base_url + "/v1/locations", auth=auth, timeout=WAIT).ok
    [renewal] = renewals(otel)
    assert renewal["requests_emma.renewal.trigger"] == "after_401"
    assert renewal["requests_emma.renewal.result"] == "refreshed"
    [replay] = [s for s in otel.spans() if s.name == "GET"]
    assert replay.kind is SpanKind.CLIENT
    assert dict(replay.attributes or {})["http.request.resend_count"] == 1
    assert dict(replay.attributes or {})["http.response.status_code"] == 200


def test_an_early_renewal_is_linked_to_the_request_not_parented(
    server: FakeEmmaServer, auth: EmmaAuth, clock: FakeClock, otel: Kit
) -> None:
    """An early renewal is a root span with a link to the request span that triggered it."""
    from opentelemetry import trace

    auth.get_token()
    clock.advance(250)
    otel.clear()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request_span:
        auth.get_token()
    join_renewal(auth)
    [renewal] = [s for s in otel.spans() if s.name == "requests_emma renewal"]
    assert dict(renewal.attributes or {})["requests_emma.renewal.trigger"] == "early"
    assert renewal.parent is None
    assert [link.context.span_id for link in renewal.links] == [
        request_span.get_span_context().span_id
    ]


def test_renewals_are_counted_with_their_trigger_and_result(
    server: FakeEmmaServer, auth: EmmaAuth, otel: Kit
) -> None:
    """The renewal counter counts the first renewal as first_use / issued."""
    auth.get_token()
    metrics = otel.collect()
    _, points = metrics["requests_emma.renewals"]
    assert [
        (
            p.attributes["requests_emma.renewal.trigger"],
            p.attributes["requests_emma.renewal.result"],
            p.value,
        )
        for p in points
    ] == [("first_use", "issued", 1)]


def test_httpx_renewals_are_recorded_too(server: FakeEmmaServer, otel: Kit) -> None:
    """An EmmaHttpxAuth's renewal over httpx.Client is recorded like EmmaAuth's."""
    auth = EmmaHttpxAuth(server.client_id, server.client_secret, base_url=server.base_url)
    with httpx.Client(auth=auth) as client:
        assert client.get(server.base_url + "/v1/locations").status_code == 200
    [renewal] = renewals(otel)
    assert renewal["requests_emma.renewal.result"] == "issued"
    assert [s.name for s in otel.spans() if s.kind is SpanKind.CLIENT] == ["POST /v1/issue-token"]


@pytest.mark.anyio
async def test_async_httpx_renewals_are_recorded_too(server: FakeEmmaServer, otel: Kit) -> None:
    """An EmmaHttpxAuth's renewal over httpx.AsyncClient is recorded like EmmaAuth's."""
    auth = EmmaHttpxAuth(server.client_id, server.client_secret, base_url=server.base_url)
    async with httpx.AsyncClient(auth=auth) as client:
        assert (await client.get(server.base_url + "/v1/locations")).status_code == 200
    [renewal] = renewals(otel)
    assert renewal["requests_emma.renewal.result"] == "issued"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_fake_clock_and_use_clock_still_apply(server: FakeEmmaServer, otel: Kit) -> None:
    """A renewal on a fake clock is recorded once (the clock seam and telemetry coexist)."""
    auth = auth_for(server)
    use_clock(auth, FakeClock())
    auth.get_token()
    assert len(renewals(otel)) == 1


# -- a failing SDK ------------------------------------------------------------------------------

WARNING = "OpenTelemetry raised SdkDown; requests go on, records may be lost (said once)"


@pytest.fixture
def warned(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The warnings logged in the test; the once-per-process warning made due again."""
    monkeypatch.setattr(_telemetry, "_warned", threading.Lock())
    with caplog.at_level(logging.DEBUG, logger="requests_emma"):
        yield


def said(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    """What was logged of OpenTelemetry, and at which level; never the failure's message."""
    assert "secret-looking" not in caplog.text
    return [(r.levelno, r.getMessage()) for r in caplog.records if "OpenTelemetry" in r.message]


@pytest.mark.parametrize("part", FAILURES)
def test_a_failing_sdk_changes_no_request_through_emma_auth(
    emma_server: FakeEmmaServer,
    otel: Kit,
    warned: None,
    caplog: pytest.LogCaptureFixture,
    part: str,
) -> None:
    """The tracer, a span processor or the meter raising: the first request (a renewal) and
    one after a 401 (a renewal and a replay) still succeed; one WARNING names the class."""
    auth = EmmaAuth(emma_server.client_id, emma_server.client_secret, base_url=emma_server.base_url)
    url = emma_server.base_url + "/v1/locations"
    with otel.failing(part):
        assert requests.get(url, auth=auth, timeout=WAIT).status_code == 200
        emma_server.expire_access_tokens()
        assert requests.get(url, auth=auth, timeout=WAIT).status_code == 200
    assert auth.status().valid_for is not None
    assert said(caplog) == [(logging.WARNING, WARNING)]


@pytest.mark.parametrize("part", FAILURES)
def test_a_failing_sdk_changes_no_request_through_httpx(
    emma_server: FakeEmmaServer,
    otel: Kit,
    warned: None,
    caplog: pytest.LogCaptureFixture,
    part: str,
) -> None:
    """The same through EmmaHttpxAuth and httpx.Client: both requests succeed, one WARNING."""
    auth = EmmaHttpxAuth(
        emma_server.client_id, emma_server.client_secret, base_url=emma_server.base_url
    )
    url = emma_server.base_url + "/v1/locations"
    with otel.failing(part), httpx.Client(auth=auth, timeout=WAIT) as client:
        assert client.get(url).status_code == 200
        emma_server.expire_access_tokens()
        assert client.get(url).status_code == 200
    assert said(caplog) == [(logging.WARNING, WARNING)]


@pytest.mark.anyio
@pytest.mark.parametrize("part", FAILURES)
async def test_a_failing_sdk_changes_no_request_through_async_httpx(
    emma_server: FakeEmmaServer,
    otel: Kit,
    warned: None,
    caplog: pytest.LogCaptureFixture,
    part: str,
) -> None:
    """The same through EmmaHttpxAuth and httpx.AsyncClient: both requests succeed."""
    auth = EmmaHttpxAuth(
        emma_server.client_id, emma_server.client_secret, base_url=emma_server.base_url
    )
    url = emma_server.base_url + "/v1/locations"
    with otel.failing(part):
        async with httpx.AsyncClient(auth=auth, timeout=WAIT) as client:
            assert (await client.get(url)).status_code == 200
            emma_server.expire_access_tokens()
            assert (await client.get(url)).status_code == 200
    assert said(caplog) == [(logging.WARNING, WARNING)]


def test_telemetry_that_works_again_records_again(
    emma_server: FakeEmmaServer, otel: Kit, warned: None, caplog: pytest.LogCaptureFixture
) -> None:
    """After the span processor recovers, the next renewal is recorded as ever."""
    auth = EmmaAuth(emma_server.client_id, emma_server.client_secret, base_url=emma_server.base_url)
    with otel.failing("on_start"):
        auth.get_token()
    otel.clear()
    emma_server.expire_access_tokens()
    url = emma_server.base_url + "/v1/locations"
    assert requests.get(url, auth=auth, timeout=WAIT).status_code == 200
    assert [r["requests_emma.renewal.trigger"] for r in renewals(otel)] == ["after_401"]
