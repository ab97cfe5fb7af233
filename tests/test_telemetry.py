"""OpenTelemetry: renewal and token-call spans, 401 replay spans, renewal metrics and the
remaining-lifetime gauge, recorded through the SDK's in-memory exporter and metric reader;
a no-op without opentelemetry, and never a secret."""

from __future__ import annotations

import gc
import inspect
import itertools
import json
import os
import pickle
import re
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fakes import exit_code_in_a_forked_child
from opentelemetry import context, metrics, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from otel_kit import Kit, install
from test_cli import child_env, server_env

from requests_emma import CredentialsError, _telemetry
from requests_emma._core.outcome import Kind, Outcome, response_outcome
from requests_emma._core.wire import ISSUE_TOKEN_PATH, REFRESH_TOKEN_PATH
from requests_emma._telemetry import (
    DURATION_BUCKETS,
    RENEWAL_SPAN,
    Renewal,
    Telemetry,
    request_link,
)
from requests_emma.testing import FakeEmmaServer

TESTS = Path(__file__).resolve().parent
SECRET = "s3cr3tZQXJ"  # in every token, body, message and URL part that must not be exported
WAIT = 10.0

_ports = itertools.count(20_001)


@pytest.fixture
def otel() -> Iterator[Kit]:
    """The process's SDK, emptied before and after the test."""
    kit = install()
    kit.clear()
    yield kit
    kit.clear()


def new_base_url() -> str:
    """A base URL of its own (no connection is made to it): its gauge points are this test's."""
    return f"http://127.0.0.1:{next(_ports)}/external"


def port_of(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1].split("/")[0])


def grant(path: str = ISSUE_TOKEN_PATH) -> Outcome:
    """A real 200 token answer, tokens and all."""
    body = {
        "accessToken": f"access-{SECRET}",
        "refreshToken": f"refresh-{SECRET}",
        "expiresIn": 300,
        "refreshExpiresIn": 1800,
        "tokenType": "Bearer",
    }
    return response_outcome(
        200, json.dumps(body).encode(), None, sent_at=1.0, sent_wall=1e9, wall_now=1e9
    )


def error_answer(status: int, path: str = ISSUE_TOKEN_PATH) -> Outcome:
    """A real error answer from emma, its message naming a secret."""
    body = json.dumps({"code": "UNAUTHORIZED", "message": f"bad secret {SECRET}"}).encode()
    return response_outcome(status, body, "1", sent_at=1.0, sent_wall=1e9, wall_now=1e9)


def failure(kind: Kind, reason: str, cause: BaseException | None = None) -> Outcome:
    return Outcome(kind, reason, sent_at=1.0, sent_wall=1e9, cause=cause)


def by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def granted(renewal: Renewal, path: str) -> None:
    """One call to ``path`` in ``renewal``, answered with a token."""
    with renewal.attempt(path) as attempt:
        attempt.answered(grant(path))


class Owner:
    """An auth stand-in for the gauge: a bound method reports its token's seconds left."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def remaining(self) -> float | None:
        return self.seconds


def gauge_points(kit: Kit, base_url: str) -> list[Any]:
    """This base URL's remaining-lifetime points in one collection."""
    found = kit.collect().get("requests_emma.token.remaining_lifetime")
    points = [] if found is None else found[1]
    return [p for p in points if p.attributes.get("server.port") == port_of(base_url)]


# -- spans ------------------------------------------------------------------------------------


def test_an_attempt_span_follows_the_http_client_conventions(otel: Kit) -> None:
    """One token call: a CLIENT span "POST /v1/issue-token" with method, server, url.full
    (no query) and status code, no resend count, status left unset."""
    base_url = new_base_url()
    with (
        Telemetry(base_url).renewal("first_use") as renewal,
        renewal.attempt(ISSUE_TOKEN_PATH) as attempt,
    ):
        attempt.answered(grant())
    [span] = by_name(otel.spans(), "POST /v1/issue-token")
    assert span.kind is SpanKind.CLIENT
    assert attributes(span) == {
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": port_of(base_url),
        "url.full": base_url + ISSUE_TOKEN_PATH,
        "http.response.status_code": 200,
    }
    assert span.status.status_code is StatusCode.UNSET


def test_a_retried_call_counts_its_resends_and_a_failed_attempt_carries_its_status(
    otel: Kit,
) -> None:
    """A 503 then a grant: the first span has error.type "503" and status ERROR with no
    description; the second has http.request.resend_count 1."""
    with Telemetry(new_base_url()).renewal("first_use") as renewal:
        with renewal.attempt(REFRESH_TOKEN_PATH) as attempt:
            attempt.answered(error_answer(503, REFRESH_TOKEN_PATH))
        with renewal.attempt(REFRESH_TOKEN_PATH) as attempt:
            attempt.answered(grant(REFRESH_TOKEN_PATH))
    first, second = by_name(otel.spans(), "POST /v1/refresh-token")
    assert attributes(first)["http.response.status_code"] == 503
    assert attributes(first)["error.type"] == "503"
    assert "http.request.resend_count" not in attributes(first)
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description is None
    assert attributes(second)["http.request.resend_count"] == 1
    assert "error.type" not in attributes(second)


def test_attempt_spans_are_children_of_the_renewal_span(otel: Kit) -> None:
    """The renewal is an INTERNAL span "requests_emma renewal" with trigger, result and
    server; each attempt span's parent is it, in the same trace."""
    base_url = new_base_url()
    with Telemetry(base_url).renewal("after_fork") as renewal:
        for _ in range(2):
            with renewal.attempt(ISSUE_TOKEN_PATH) as attempt:
                attempt.answered(grant())
    spans = otel.spans()
    [parent] = by_name(spans, RENEWAL_SPAN)
    attempts = by_name(spans, "POST /v1/issue-token")
    assert parent.kind is SpanKind.INTERNAL
    assert attributes(parent) == {
        "requests_emma.renewal.trigger": "after_fork",
        "requests_emma.renewal.result": "issued",
        "server.address": "127.0.0.1",
        "server.port": port_of(base_url),
    }
    assert len(attempts) == 2
    for span in attempts:
        assert span.parent is not None
        assert span.parent.span_id == parent.context.span_id
        assert span.context.trace_id == parent.context.trace_id


def test_a_renewal_on_the_request_thread_is_a_child_of_the_current_span(otel: Kit) -> None:
    """Without a link (first use, after a 401), the renewal span parents under the span
    current on the thread that runs it: the request waits for it."""
    with (
        otel.tracer.start_as_current_span("GET /v1/locations") as request_span,
        Telemetry(new_base_url()).renewal("after_401"),
    ):
        pass
    [span] = by_name(otel.spans(), RENEWAL_SPAN)
    assert span.parent is not None
    assert span.parent.span_id == request_span.get_span_context().span_id


def test_an_early_renewal_links_to_the_request_and_parents_under_nothing(otel: Kit) -> None:
    """An early renewal run on a worker thread with request_link() from the request thread
    is a root span of its own trace, linked to the request's span, even when another span is
    current on the worker."""
    telemetry = Telemetry(new_base_url())
    link: list[object | None] = []
    with otel.tracer.start_as_current_span("GET /v1/locations") as request_span:
        link.append(request_link())

    def worker() -> None:
        with (
            otel.tracer.start_as_current_span("unrelated work on the worker"),
            telemetry.renewal("early", link[0]) as renewal,
            renewal.attempt(REFRESH_TOKEN_PATH) as attempt,
        ):
            attempt.answered(grant(REFRESH_TOKEN_PATH))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    spans = otel.spans()
    [renewal_span] = by_name(spans, RENEWAL_SPAN)
    [attempt_span] = by_name(spans, "POST /v1/refresh-token")
    request_context = request_span.get_span_context()
    assert renewal_span.parent is None
    assert renewal_span.context.trace_id != request_context.trace_id
    assert [link.context for link in renewal_span.links] == [request_context]
    assert attempt_span.parent is not None
    assert attempt_span.parent.span_id == renewal_span.context.span_id


def test_request_link_is_none_without_a_recording_span(otel: Kit) -> None:
    """No current span, or a current span that does not record: nothing to link to."""
    assert request_link() is None
    with trace.use_span(trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)):
        assert request_link() is None


def test_renewals_on_threads_at_once_each_get_their_own_attempts(otel: Kit) -> None:
    """Eight threads renewing at once (a barrier lines them up inside their renewals): each
    attempt span is a child of its own thread's renewal span."""
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def renew(index: int) -> None:
        try:
            with Telemetry(new_base_url()).renewal("first_use") as renewal:
                barrier.wait(WAIT)
                with renewal.attempt(ISSUE_TOKEN_PATH) as attempt:
                    barrier.wait(WAIT)
                    attempt.answered(grant())
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=renew, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert errors == []
    spans = otel.spans()
    renewals = {span.context.span_id: span for span in by_name(spans, RENEWAL_SPAN)}
    attempts = by_name(spans, "POST /v1/issue-token")
    assert len(renewals) == len(attempts) == threads_count
    pairs = set()
    for span in attempts:
        assert span.parent is not None
        parent = renewals[span.parent.span_id]
        assert attributes(parent)["server.port"] == attributes(span)["server.port"]
        pairs.add(span.parent.span_id)
    assert len(pairs) == threads_count


@pytest.mark.parametrize(
    ("outcome", "error_type", "status_code", "description"),
    [
        (error_answer(400), "400", 400, None),
        (error_answer(429), "429", 429, None),
        (failure(Kind.TRANSIENT, "timed out"), "timeout", None, "timed out"),
        (
            failure(Kind.TRANSIENT, "timed out", requests.exceptions.ReadTimeout("read")),
            "timeout",
            None,
            "timed out",
        ),
        (
            failure(
                Kind.TRANSIENT,
                "connection failed (Connection refused)",
                requests.ConnectionError("refused"),
            ),
            "requests.exceptions.ConnectionError",
            None,
            "connection failed (Connection refused)",
        ),
        (
            failure(Kind.FAILED, "request failed (OSError)", OSError("no CA bundle")),
            "OSError",
            None,
            "request failed (OSError)",
        ),
        (
            response_outcome(200, b"[]", None, sent_at=1.0, sent_wall=1e9, wall_now=1e9),
            "unusable_token_response",
            200,
            "token response is a JSON array, expected an object",
        ),
    ],
    ids=["400", "429", "timeout", "timeout-exception", "connection", "builtin", "unusable"],
)
def test_a_failed_attempt_says_what_failed_in_error_type(
    otel: Kit, outcome: Outcome, error_type: str, status_code: int | None, description: str | None
) -> None:
    """error.type is the status code, "timeout", the exception's class or
    "unusable_token_response"; status ERROR, described only when the code does not say it."""
    with (
        Telemetry(new_base_url()).renewal("first_use") as renewal,
        renewal.attempt(ISSUE_TOKEN_PATH) as attempt,
    ):
        attempt.answered(outcome)
    [span] = by_name(otel.spans(), "POST /v1/issue-token")
    assert attributes(span)["error.type"] == error_type
    assert attributes(span).get("http.response.status_code") == status_code
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == description


class Interrupted(Exception):
    """Stands for whatever leaves a token call without an outcome."""


def test_an_exception_leaving_the_blocks_marks_attempt_and_renewal_failed(otel: Kit) -> None:
    """An exception out of an attempt and its renewal: both spans get error.type (the class)
    and status ERROR, the renewal's result is "failed", and the exception goes on."""
    with (
        pytest.raises(Interrupted),
        Telemetry(new_base_url()).renewal("first_use") as renewal,
        renewal.attempt(ISSUE_TOKEN_PATH),
    ):
        raise Interrupted
    spans = otel.spans()
    [attempt] = by_name(spans, "POST /v1/issue-token")
    [renewal_span] = by_name(spans, RENEWAL_SPAN)
    expected = f"{__name__}.Interrupted"
    assert attributes(attempt)["error.type"] == expected
    assert attempt.status.status_code is StatusCode.ERROR
    assert attributes(renewal_span)["requests_emma.renewal.result"] == "failed"
    assert attributes(renewal_span)["error.type"] == expected
    assert renewal_span.status.status_code is StatusCode.ERROR


def test_a_failed_renewal_names_its_error(otel: Kit) -> None:
    """A renewal that raises the library's error, after a call that granted a token: result
    "failed", error.type the error's public class, status ERROR."""
    with pytest.raises(CredentialsError), Telemetry(new_base_url()).renewal("first_use") as r:
        granted(r, ISSUE_TOKEN_PATH)
        raise CredentialsError(f"rejected {SECRET}")
    [span] = by_name(otel.spans(), RENEWAL_SPAN)
    assert attributes(span)["requests_emma.renewal.result"] == "failed"
    assert attributes(span)["error.type"] == "requests_emma.CredentialsError"
    assert span.status.status_code is StatusCode.ERROR


def test_an_unknown_trigger_is_refused(otel: Kit) -> None:
    """A trigger outside TRIGGERS is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="trigger must be one of"):
        Telemetry(new_base_url()).renewal("sometimes")


@pytest.mark.parametrize(
    ("calls", "result"),
    [
        ([], "cached"),
        ([(ISSUE_TOKEN_PATH, grant())], "issued"),
        ([(REFRESH_TOKEN_PATH, grant(REFRESH_TOKEN_PATH))], "refreshed"),
        ([(REFRESH_TOKEN_PATH, error_answer(400)), (ISSUE_TOKEN_PATH, grant())], "issued"),
        ([(ISSUE_TOKEN_PATH, error_answer(503))], "cached"),
    ],
    ids=["no-call", "issue", "refresh", "refresh-refused-then-issue", "no-grant"],
)
def test_a_renewal_ending_without_an_exception_has_the_result_of_its_grant(
    otel: Kit, calls: list[tuple[str, Outcome]], result: str
) -> None:
    """The result is the path of the call that granted the token (issued, refreshed), or
    cached when no call granted one: the token came from the shared cache."""
    with Telemetry(new_base_url()).renewal("expired") as renewal:
        for path, answer in calls:
            with renewal.attempt(path) as attempt:
                attempt.answered(answer)
    [span] = by_name(otel.spans(), RENEWAL_SPAN)
    assert attributes(span)["requests_emma.renewal.result"] == result
    assert span.status.status_code is StatusCode.UNSET


def test_inside_an_attempt_http_instrumentation_is_suppressed(otel: Kit) -> None:
    """While an attempt (or a replay) runs, its span is current and the context tells
    instrumented HTTP stacks to record nothing; not in the renewal around it, nor after."""
    key = context._SUPPRESS_HTTP_INSTRUMENTATION_KEY
    telemetry = Telemetry(new_base_url())
    with telemetry.renewal("first_use") as renewal:
        assert trace.get_current_span().name == RENEWAL_SPAN  # type: ignore[attr-defined]
        assert context.get_value(key) is None
        with renewal.attempt(ISSUE_TOKEN_PATH):
            assert context.get_value(key) is True
            assert trace.get_current_span().name == "POST /v1/issue-token"  # type: ignore[attr-defined]
        assert context.get_value(key) is None
    with telemetry.replay("GET", new_base_url() + "/v1/locations"):
        assert context.get_value(key) is True
    assert context.get_value(key) is None
    assert not trace.get_current_span().is_recording()


def test_a_replay_is_a_client_span_with_resend_count_one(otel: Kit) -> None:
    """A 401 replay: a CLIENT span named by its method, a child of the current span, with
    resend count 1, url.full without user info, query or fragment, and its status code."""
    base_url = new_base_url()
    url = base_url.replace("//", f"//user:{SECRET}@") + f"/v1/locations?key={SECRET}#{SECRET}"
    with (
        otel.tracer.start_as_current_span("GET /v1/locations") as request_span,
        Telemetry(base_url).replay("GET", url) as replay,
    ):
        replay.answered(200)
    [span] = by_name(otel.spans(), "GET")
    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None
    assert span.parent.span_id == request_span.get_span_context().span_id
    assert attributes(span) == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": port_of(base_url),
        "url.full": base_url + "/v1/locations",
        "http.request.resend_count": 1,
        "http.response.status_code": 200,
    }
    assert span.status.status_code is StatusCode.UNSET


def test_a_failed_replay_carries_its_status_or_exception(otel: Kit) -> None:
    """A replay answered 401 again has error.type "401"; one that raised has the exception's
    class; both status ERROR."""
    telemetry = Telemetry(new_base_url())
    with telemetry.replay("PUT", new_base_url() + "/v1/vms/1") as replay:
        replay.answered(401)
    with (
        pytest.raises(requests.ConnectionError),
        telemetry.replay("DELETE", new_base_url() + "/v1/vms/1"),
    ):
        raise requests.ConnectionError(f"reset {SECRET}")
    put, delete = otel.spans()
    assert (put.name, attributes(put)["error.type"]) == ("PUT", "401")
    assert attributes(delete)["error.type"] == "requests.exceptions.ConnectionError"
    assert "http.response.status_code" not in attributes(delete)
    assert put.status.status_code is delete.status.status_code is StatusCode.ERROR


def test_a_replay_with_an_unknown_method_is_named_http(otel: Kit) -> None:
    """A method the conventions do not know: http.request.method "_OTHER", the original kept
    in http.request.method_original, span name "HTTP"."""
    with Telemetry(new_base_url()).replay("PURGE", new_base_url() + "/v1/x") as replay:
        replay.answered(204)
    [span] = otel.spans()
    assert span.name == "HTTP"
    assert attributes(span)["http.request.method"] == "_OTHER"
    assert attributes(span)["http.request.method_original"] == "PURGE"


# -- metrics ----------------------------------------------------------------------------------


def test_each_renewal_is_counted_by_trigger_and_result(otel: Kit) -> None:
    """requests_emma.renewals: one per renewal, with trigger, result and server; a failure
    adds error.type."""
    base_url = new_base_url()
    telemetry = Telemetry(base_url)
    for trigger, result in [
        ("first_use", "issued"),
        ("early", "refreshed"),
        ("early", "refreshed"),
        ("after_401", "cached"),
    ]:
        with telemetry.renewal(trigger) as renewal:
            if result != "cached":
                granted(renewal, REFRESH_TOKEN_PATH if result == "refreshed" else ISSUE_TOKEN_PATH)
    with pytest.raises(CredentialsError), telemetry.renewal("after_fork"):
        raise CredentialsError("rejected")
    metric, points = otel.collect()["requests_emma.renewals"]
    assert metric.unit == "{renewal}"
    counted = {
        tuple(sorted(point.attributes.items())): point.value
        for point in points
        if point.attributes["server.port"] == port_of(base_url)
    }
    server = (("server.address", "127.0.0.1"), ("server.port", port_of(base_url)))

    def key(trigger: str, result: str, *extra: tuple[str, str]) -> tuple[Any, ...]:
        names = [
            ("requests_emma.renewal.trigger", trigger),
            ("requests_emma.renewal.result", result),
        ]
        return tuple(sorted([*names, *server, *extra]))

    assert counted == {
        key("first_use", "issued"): 1,
        key("early", "refreshed"): 2,
        key("after_401", "cached"): 1,
        key("after_fork", "failed", ("error.type", "requests_emma.CredentialsError")): 1,
    }


def test_the_duration_histogram_measures_the_renewal_in_seconds(otel: Kit) -> None:
    """requests_emma.renewal.duration (unit s): one point whose sum lies between the time
    spent inside the block and the time around it."""
    base_url = new_base_url()
    inner = 0.05
    outer_started = time.perf_counter()
    with Telemetry(base_url).renewal("first_use") as renewal:
        time.sleep(inner)  # real time is the point: the histogram reads the real clock
        granted(renewal, ISSUE_TOKEN_PATH)
    outer = time.perf_counter() - outer_started
    metric, points = otel.collect()["requests_emma.renewal.duration"]
    [point] = [p for p in points if p.attributes["server.port"] == port_of(base_url)]
    assert metric.unit == "s"
    assert point.count == 1
    assert inner <= point.sum <= outer
    assert point.attributes["requests_emma.renewal.result"] == "issued"


@pytest.mark.skipif(
    "explicit_bucket_boundaries_advisory"
    not in inspect.signature(metrics.Meter.create_histogram).parameters,
    reason="opentelemetry-api before 1.30 takes no bucket advice (the SDK's defaults apply)",
)
def test_the_duration_histogram_advises_second_scale_buckets(otel: Kit) -> None:
    """The histogram's buckets are the HTTP conventions' seconds (5 ms to 10 s) up to 60 s,
    not the SDK's millisecond-scale defaults."""
    base_url = new_base_url()
    with Telemetry(base_url).renewal("first_use"):
        pass
    _, points = otel.collect()["requests_emma.renewal.duration"]
    [point] = [p for p in points if p.attributes["server.port"] == port_of(base_url)]
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS


def test_the_gauge_reports_each_watched_tokens_seconds_left(otel: Kit) -> None:
    """requests_emma.token.remaining_lifetime (unit s): the watched method's value, with the
    server's attributes; nothing while it says None (no token); 0 once it is negative."""
    base_url = new_base_url()
    owner = Owner(240.5)
    telemetry = Telemetry(base_url)
    telemetry.watch(owner.remaining)
    [point] = gauge_points(otel, base_url)
    assert point.value == 240.5
    assert point.attributes == {"server.address": "127.0.0.1", "server.port": port_of(base_url)}
    metric, _ = otel.collect()["requests_emma.token.remaining_lifetime"]
    assert metric.unit == "s"
    owner.seconds = None
    assert gauge_points(otel, base_url) == []
    owner.seconds = -3.0
    assert [p.value for p in gauge_points(otel, base_url)] == [0.0]


def test_auths_of_one_server_report_the_shortest_time_left(otel: Kit) -> None:
    """Two auths on one server: the gauge reports the token that runs out first; another
    server's auth reports its own point."""
    base_url, other_url = new_base_url(), new_base_url()
    owners = [Owner(100.0), Owner(30.0), Owner(500.0)]
    telemetries = [Telemetry(base_url), Telemetry(base_url), Telemetry(other_url)]
    for telemetry, owner in zip(telemetries, owners, strict=True):
        telemetry.watch(owner.remaining)
    found = otel.collect()["requests_emma.token.remaining_lifetime"][1]
    values = {p.attributes["server.port"]: p.value for p in found}
    assert values[port_of(base_url)] == 30.0
    assert values[port_of(other_url)] == 500.0


def test_the_gauge_keeps_no_auth_alive_and_forgets_one_that_is_gone(otel: Kit) -> None:
    """The watched owner is held weakly: once it is gone it is collected, and the gauge has no
    point for it (its Telemetry still alive or not)."""
    base_url = new_base_url()
    owner = Owner(60.0)
    telemetry = Telemetry(base_url)
    telemetry.watch(owner.remaining)
    assert len(gauge_points(otel, base_url)) == 1
    gone = weakref.ref(owner)
    del owner
    gc.collect()
    assert gone() is None
    assert gauge_points(otel, base_url) == []
    second = Telemetry(new_base_url())
    second_owner = Owner(60.0)
    second.watch(second_owner.remaining)
    del second
    gc.collect()
    assert gauge_points(otel, base_url) == []


def test_watching_again_replaces_the_method_watched(otel: Kit) -> None:
    """A second watch() on one Telemetry replaces the first: one point, the new value."""
    base_url = new_base_url()
    first, second = Owner(10.0), Owner(250.0)
    telemetry = Telemetry(base_url)
    telemetry.watch(first.remaining)
    telemetry.watch(second.remaining)
    assert [p.value for p in gauge_points(otel, base_url)] == [250.0]


def test_one_failing_watched_method_does_not_hide_the_others(otel: Kit) -> None:
    """A watched method that raises is skipped; the other auths are still reported."""

    class Broken:
        def remaining(self) -> float | None:
            raise RuntimeError("lock is gone")

    base_url, broken_url = new_base_url(), new_base_url()
    owner, broken = Owner(42.0), Broken()
    Telemetry(broken_url).watch(broken.remaining)
    kept = Telemetry(base_url)
    kept.watch(owner.remaining)
    assert [p.value for p in gauge_points(otel, base_url)] == [42.0]
    assert gauge_points(otel, broken_url) == []


def test_a_pickled_telemetry_records_alike_and_starts_unwatched(otel: Kit) -> None:
    """A Telemetry pickled (with its auth, for a worker process) records the same server, and
    watches nothing until its owner watches again."""
    base_url = new_base_url()
    owner = Owner(75.0)
    telemetry = Telemetry(base_url)
    telemetry.watch(owner.remaining)
    copy = pickle.loads(pickle.dumps(telemetry))
    del telemetry
    gc.collect()
    assert gauge_points(otel, base_url) == []
    with copy.renewal("first_use") as renewal, renewal.attempt(ISSUE_TOKEN_PATH) as attempt:
        attempt.answered(grant())
    [span] = by_name(otel.spans(), "POST /v1/issue-token")
    assert attributes(span)["url.full"] == base_url + ISSUE_TOKEN_PATH
    copy.watch(owner.remaining)
    assert [p.value for p in gauge_points(otel, base_url)] == [75.0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_a_thread_holds_the_gauge_lock_can_watch(otel: Kit) -> None:
    """Forked while another thread holds the lock around the watched auths, a child can still
    watch and be observed (the lock is new in the child)."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with _telemetry._watched_lock:
            holding.set()
            release.wait(WAIT)

    def watch_in_the_child() -> int:
        base_url, owner = new_base_url(), Owner(5.0)
        Telemetry(base_url).watch(owner.remaining)  # the Telemetry may go: owner stays
        if gauge_points(otel, base_url) != []:
            return 1
        kept = Telemetry(base_url)
        kept.watch(owner.remaining)
        return 0 if [p.value for p in gauge_points(otel, base_url)] == [5.0] else 3

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(WAIT)
        code = exit_code_in_a_forked_child(watch_in_the_child)  # the holder is not there
    finally:
        release.set()
        holder.join(WAIT)
    assert code == 0


def test_watch_takes_only_a_bound_method() -> None:
    """A plain function or lambda could never be held weakly for long: a TypeError says so."""
    with pytest.raises(TypeError, match="watch\\(\\) takes a bound method"):
        Telemetry(new_base_url()).watch(lambda: 1.0)


# -- secrets ----------------------------------------------------------------------------------


def test_no_secret_reaches_any_span_event_link_or_metric(otel: Kit) -> None:
    """Tokens in the grant, emma's message, exception messages, a URL's user info, query and
    fragment: none of it is in any exported span (names, attributes, events, links, status)
    or metric point."""
    base_url = new_base_url()
    owner = Owner(120.0)
    telemetry = Telemetry(base_url)
    telemetry.watch(owner.remaining)
    with otel.tracer.start_as_current_span("request"):
        link = request_link()
    with telemetry.renewal("early", link) as renewal:
        with renewal.attempt(REFRESH_TOKEN_PATH) as attempt:
            attempt.answered(error_answer(400, REFRESH_TOKEN_PATH))
        with renewal.attempt(ISSUE_TOKEN_PATH) as attempt:
            cause = requests.ConnectionError(f"connection to {SECRET} failed")
            attempt.answered(failure(Kind.TRANSIENT, "connection failed", cause))
        with renewal.attempt(ISSUE_TOKEN_PATH) as attempt:
            attempt.answered(grant())
    with pytest.raises(CredentialsError), telemetry.renewal("after_401"):
        raise CredentialsError(f"rejected {SECRET}")
    url = base_url.replace("//", f"//{SECRET}:{SECRET}@") + f"/v1/x?token={SECRET}#{SECRET}"
    with pytest.raises(requests.ConnectionError), telemetry.replay("POST", url):
        raise requests.ConnectionError(f"reset, {SECRET}")
    spans = otel.spans()
    assert len(spans) == 7
    exported = "\n".join(span.to_json() for span in spans) + otel.collect_json()
    assert "requests_emma.renewals" in exported
    assert "requests_emma.token.remaining_lifetime" in exported
    assert SECRET not in exported


# -- without opentelemetry, and before a provider -----------------------------------------------


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=TESTS,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


NO_OTEL = """
import logging, sys
sys.modules["opentelemetry"] = None  # as if not installed: every import of it fails
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="log: %(message)s")
from requests_emma._core.outcome import Kind, Outcome
from requests_emma._telemetry import Telemetry, request_link

class Owner:
    def remaining(self):
        return 1.0

owner = Owner()
telemetry = Telemetry("http://127.0.0.1:8080/external")
telemetry.watch(owner.remaining)
with telemetry.renewal("first_use") as renewal:
    with renewal.attempt("/v1/issue-token") as attempt:
        attempt.answered(Outcome(Kind.TRANSIENT, "timed out", sent_at=0.0, sent_wall=0.0))
with telemetry.replay("GET", "http://127.0.0.1:8080/external/v1/x") as replay:
    replay.answered(200)
try:
    telemetry.renewal("nope")
except ValueError:
    print("refused")
print(renewal.result, request_link())
"""


def test_without_opentelemetry_every_record_runs_and_says_nothing() -> None:
    """With opentelemetry not importable, a renewal, its attempts, a replay and watch() run,
    record nothing and log nothing, not even at DEBUG; bad input is still refused."""
    assert run_python(NO_OTEL).split("\n") == ["refused", "cached None", ""]


PLAIN_INSTALL = """
import logging, sys
sys.modules["opentelemetry"] = None  # a plain install: no [otel] extra
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="log: %(message)s")
import requests
from requests_emma import EmmaAuth
from requests_emma.testing import FakeEmmaServer

with FakeEmmaServer() as server:
    auth = EmmaAuth(server.client_id, server.client_secret, base_url=server.base_url)
    print(requests.get(server.base_url + "/v1/locations", auth=auth, timeout=30).status_code)
"""


def test_a_plain_install_logs_no_word_of_opentelemetry() -> None:
    """A request that renews a token, without opentelemetry and with DEBUG logging on: it
    succeeds and no log line mentions OpenTelemetry (the demo's first line used to)."""
    printed = run_python(PLAIN_INSTALL)
    assert "200" in printed.splitlines()
    assert "log: " in printed  # the logging is on: the renewal said what it did
    assert "opentelemetry" not in printed.lower()


IMPORTS = """
import sys
import requests_emma
from requests_emma._telemetry import Telemetry, request_link
requests_emma.EmmaAuth("id", "secret", base_url="http://127.0.0.1:8080/external")
Telemetry("http://127.0.0.1:8080/external")
print(request_link())
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""


def test_importing_and_constructing_load_no_opentelemetry() -> None:
    """import requests_emma, an EmmaAuth, a Telemetry and request_link() (no span can be
    current before opentelemetry is imported) leave opentelemetry unimported."""
    assert run_python(IMPORTS).split("\n") == ["None", "[]", ""]


LATE_PROVIDER = """
from otel_kit import install
from requests_emma._telemetry import Telemetry

class Owner:
    def remaining(self):
        return 99.0

owner = Owner()
telemetry = Telemetry("http://127.0.0.1:8080/external")
with telemetry.renewal("first_use"):  # no provider yet: the proxies record nothing
    pass
telemetry.watch(owner.remaining)

kit = install()  # the SDK, configured after the auth's first renewal
with telemetry.renewal("early"):
    pass
found = kit.collect()
print([span.name for span in kit.spans()])
print([dict(p.attributes)["requests_emma.renewal.trigger"]
       for p in found["requests_emma.renewals"][1]])
print([p.value for p in found["requests_emma.token.remaining_lifetime"][1]])
"""


def test_a_provider_configured_later_records_from_then_on() -> None:
    """Tracer and meter come from the global API: set up after a Telemetry was made and used,
    the SDK gets the later renewal's span and count, and the gauge reports."""
    assert run_python(LATE_PROVIDER).split("\n") == [
        f"[{RENEWAL_SPAN!r}]",
        "['early']",
        "[99.0]",
        "",
    ]


HOW_TO = (TESTS.parent / "docs" / "how-to" / "observability.md").read_text()
[EXAMPLE] = re.findall(r"^```python\n(.*?)^```", HOW_TO, flags=re.MULTILINE | re.DOTALL)


def test_the_how_to_example_prints_spans_and_metrics(server: FakeEmmaServer) -> None:
    """The observability how-to's example, run as a script against a fake emma, prints the
    token call's and the renewal's spans and, at exit, the renewal count; never the secret."""
    result = subprocess.run(
        [sys.executable, "-c", EXAMPLE],
        env=child_env(server_env(server)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("200\n") or "\n200\n" in result.stdout
    for shown in (
        '"name": "POST /v1/issue-token"',
        '"name": "requests_emma renewal"',
        '"requests_emma.renewal.trigger": "first_use"',
        '"name": "requests_emma.renewals"',
        '"name": "requests_emma.token.remaining_lifetime"',
    ):
        assert shown in result.stdout, shown
    assert server.client_secret not in result.stdout + result.stderr
