"""OpenTelemetry spans and metrics for token renewals and 401 replays, through the API only.

Theory of operation. Each auth holds one :class:`Telemetry`; its drivers call it only when a
renewal runs or a request is replayed after a 401, never on the ordinary request path. The
``opentelemetry`` API is imported at the first such call, not with the package, and when it
cannot be imported every record is a shared no-op: a renewal costs one function call more.

What is recorded (names as the how-to on observability lists them):

- one INTERNAL span ``requests_emma renewal`` per renewal, with why it ran
  (``requests_emma.renewal.trigger``: :data:`TRIGGERS`) and how it ended
  (``requests_emma.renewal.result``: :data:`RESULTS`). It is the current span while the
  renewal runs. An early renewal runs on a worker thread for a request that goes on with the
  current token: it is a root span with a *link* to that request's span
  (:func:`request_link`), not a child of it;
- inside it, one CLIENT span per token-call attempt, named and attributed by the stable HTTP
  client conventions (``POST /v1/issue-token``; ``http.request.method``, ``server.address``,
  ``server.port``, ``url.full``, ``http.response.status_code``, ``error.type``,
  ``http.request.resend_count`` on a retry). While it is current, the context says
  "HTTP instrumentation suppressed", so an instrumented requests, urllib3 or httpx does not
  record the same call a second time;
- one CLIENT span per API request replayed after a 401, with ``http.request.resend_count``
  1, a child of whatever span is current when the 401 arrives;
- the counter ``requests_emma.renewals`` and the histogram ``requests_emma.renewal.duration``
  (seconds), both with trigger and result, and the observable gauge
  ``requests_emma.token.remaining_lifetime``: the seconds each watched auth's token has left.

The tracer and the meter come from the global API (``trace.get_tracer``,
``metrics.get_meter``) once per process. Before an SDK is configured those are proxies that
record nothing and forward to the real provider once one is set, so a provider configured
after an auth was made (or after its first renewal) still gets everything from then on.

Nothing secret is recorded: no token, no client secret, no request body, no header, no
query string, fragment or user info of a URL. Exceptions are recorded by their class, not
their message: ``error.type`` is a status code, an exception's class name or one of the
fixed words ``timeout``, ``unusable_token_response`` and ``_OTHER``. An attempt's status
description, when the status code does not say it, is the outcome's reason: the words the
log lines use, which hold no secret either.

The gauge holds each auth through a weak reference to a bound method: an auth that is gone
is no longer reported, and the gauge never keeps one alive.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from ._core import lifecycle as _lifecycle
from ._core.outcome import Kind
from ._core.wire import REFRESH_TOKEN_PATH

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Span, SpanContext
    from typing_extensions import Self  # typing.Self from Python 3.11

    from ._core.outcome import Outcome

#: Why a renewal ran, as the lifecycle decides it: the first request found no token; a request
#: found it inside its refresh margin; it expired unused; the API answered 401; a forked child
#: renews rather than share its parent's.
TRIGGERS = _lifecycle.TRIGGERS
#: How it ended: issue-token granted one; refresh-token did; another process had saved one in
#: the shared cache (no call); no token.
RESULTS = ("issued", "refreshed", "cached", "failed")

RENEWAL_SPAN = "requests_emma renewal"
TRIGGER = "requests_emma.renewal.trigger"
RESULT = "requests_emma.renewal.result"
#: HTTP semantic conventions: the client's seconds-scale buckets, stretched to the default
#: 30 s renewal deadline.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
                    15, 30, 60)  # fmt: skip
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}

logger = logging.getLogger("requests_emma")


class _Api:
    """The loaded API: its modules, our tracer and our three instruments, once per process."""

    def __init__(self) -> None:
        from opentelemetry import context, metrics, trace

        from . import __version__

        self.context = context
        self.trace = trace
        self.tracer = trace.get_tracer("requests_emma", __version__)
        meter = metrics.get_meter("requests_emma", __version__)
        self.renewals = meter.create_counter(
            "requests_emma.renewals", unit="{renewal}", description="Token renewals run."
        )
        duration = ("requests_emma.renewal.duration", "s", "How long token renewals took.")
        try:
            self.duration = meter.create_histogram(
                *duration, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
            )
        except TypeError:  # opentelemetry-api before 1.30 takes no bucket advice
            self.duration = meter.create_histogram(*duration)
        meter.create_observable_gauge(
            "requests_emma.token.remaining_lifetime",
            callbacks=[_observe_watched],
            unit="s",
            description="Seconds the current token of each auth has left.",
        )
        # Instrumented HTTP stacks record nothing while this is set: our spans say it all.
        self.suppress_http = getattr(context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None)


_api_lock = threading.Lock()
_api: _Api | None = None
_api_loaded = False


def _load() -> _Api | None:
    """The API, imported at the first renewal or replay; ``None`` without opentelemetry."""
    global _api, _api_loaded
    if _api_loaded:
        return _api
    with _api_lock:
        if not _api_loaded:
            try:
                _api = _Api()
            except Exception as exc:  # noqa: BLE001 - absent or broken: no telemetry, no harm
                logger.debug("OpenTelemetry not recorded: %s: %s", type(exc).__name__, exc)
            _api_loaded = True
    return _api


def request_link() -> object | None:
    """The current span's context, to link an early renewal to the request that started it;
    ``None`` when no span is recording (or opentelemetry was never imported: then none can
    be)."""
    if not _api_loaded and "opentelemetry.trace" not in sys.modules:
        return None
    api = _load()
    if api is None:
        return None
    span = api.trace.get_current_span()
    return span.get_span_context() if span.is_recording() else None


def type_name(error: BaseException) -> str:
    """``error.type`` for an exception: its class, module-qualified unless a builtin."""
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def attempt_error_type(outcome: Outcome) -> str | None:
    """``error.type`` for a token-call attempt, ``None`` for a grant."""
    if outcome.kind is Kind.GRANT:
        return None
    status = outcome.status
    if status is not None and not 200 <= status < 300:
        return str(status)
    if outcome.reason.startswith("timed out"):  # the transports' word for a timeout
        return "timeout"
    if outcome.cause is not None:
        return type_name(outcome.cause)
    if outcome.kind is Kind.UNUSABLE:
        return "unusable_token_response"
    return "_OTHER"


def url_full(url: str) -> str:
    """``url`` without user info, query and fragment: what spans may show of a URL."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", "")
    )


def server_attributes(url: str) -> dict[str, str | int]:
    """``server.address`` and ``server.port`` of ``url`` (the scheme's port if it has none)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return {
        "server.address": parts.hostname or "",
        "server.port": port or _DEFAULT_PORTS.get(parts.scheme, 0),
    }


class Telemetry:
    """The telemetry of one auth: its server's attributes, and the records of its renewals."""

    __slots__ = ("_server", "_token_url", "_watched")

    def __init__(self, base_url: str) -> None:
        self._server = server_attributes(base_url)
        self._token_url = url_full(base_url)
        self._watched: _Watched | None = None

    def __reduce__(self) -> tuple[type[Telemetry], tuple[str]]:
        # A copy (a pickled auth in a worker process) starts unwatched: its owner watches again.
        return (Telemetry, (self._token_url,))

    def renewal(self, trigger: str, link: object | None = None) -> RenewalRecord:
        """A record of one renewal, a context manager: the block is the renewal. ``link``:
        :func:`request_link` of the request an early renewal runs for."""
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, got {trigger!r}")
        api = _load()
        if api is None:
            return _NO_RENEWAL
        return _RecordedRenewal(api, self._server, self._token_url, trigger, link)

    def replay(self, method: str, url: str) -> ReplayRecord:
        """A record of an API request replayed after a 401, a context manager around the
        resend."""
        api = _load()
        if api is None:
            return _NO_REPLAY
        return _RecordedReplay(api, method, url)

    def watch(self, remaining: Callable[[], float | None]) -> None:
        """Report ``remaining()`` (seconds the token has left, ``None`` without one) on the
        remaining-lifetime gauge. A bound method, held weakly; it replaces any before it."""
        try:
            ref = weakref.WeakMethod(remaining)
        except TypeError:
            raise TypeError(
                "watch() takes a bound method (held weakly, so that the gauge keeps no auth "
                f"alive), got {type(remaining).__name__}"
            ) from None
        if _load() is None:
            return
        watched = _Watched(ref, self._server)
        with _watched_lock:
            if self._watched is not None:
                _watched.discard(self._watched)
            _watched.add(watched)
            self._watched = watched


class _Watched:
    __slots__ = ("__weakref__", "attributes", "remaining")

    def __init__(
        self, remaining: weakref.WeakMethod[Callable[[], float | None]], attributes: dict[str, Any]
    ) -> None:
        self.remaining = remaining
        self.attributes = attributes


# Held weakly twice over: an entry leaves with its Telemetry (its auth), and reports nothing
# once the method's owner is gone.
_watched_lock = threading.Lock()
_watched: weakref.WeakSet[_Watched] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held a lock at the fork; it does not exist here.
    global _api_lock, _watched_lock
    _api_lock, _watched_lock = threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _observe_watched(options: CallbackOptions) -> Iterator[Observation]:
    """The gauge's callback, on the metric reader's thread: the shortest time left among the
    auths of each server."""
    from opentelemetry.metrics import Observation

    with _watched_lock:
        entries = list(_watched)
    shortest: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}
    for entry in entries:
        method = entry.remaining()
        if method is None:
            continue
        try:
            seconds = method()
        except Exception as exc:  # noqa: BLE001 - one auth's failure must not hide the others
            logger.debug("remaining token lifetime not read: %s", type(exc).__name__)
            continue
        if seconds is None:
            continue
        key = tuple(sorted(entry.attributes.items()))
        if key not in shortest or seconds < shortest[key][0]:
            shortest[key] = (seconds, entry.attributes)
    for seconds, attributes in shortest.values():
        yield Observation(max(0.0, seconds), attributes)


class AttemptRecord:
    """One token-call attempt; the context manager's block is the call. This base records
    nothing (opentelemetry absent)."""

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def answered(self, outcome: Outcome) -> None:
        """What the attempt came to."""


class RenewalRecord:
    """One renewal; the context manager's block is the renewal. This base records nothing."""

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def attempt(self, path: str, resend_count: int) -> AttemptRecord:
        """A record of one call to ``path`` (``/v1/issue-token``, ``/v1/refresh-token``);
        ``resend_count``: 0 for the first call of that request, 1 for its first retry..."""
        return _NO_ATTEMPT

    def ended(self, result: str, error: BaseException | None = None) -> None:
        """How the renewal ended (one of :data:`RESULTS`; ``error`` when it failed)."""


class ReplayRecord:
    """An API request resent after a 401. This base records nothing."""

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def answered(self, status: int | None, error: BaseException | None = None) -> None:
        """The replay's status, or the exception that stopped it."""


_NO_ATTEMPT = AttemptRecord()
_NO_RENEWAL = RenewalRecord()
_NO_REPLAY = ReplayRecord()


class _CurrentSpan:
    """A span made current on enter and ended on exit, in the context given."""

    __slots__ = ("_api", "_span", "_token")

    def _start(self, api: _Api, span: Span, suppress_http: bool) -> None:
        self._api, self._span = api, span
        context = api.trace.set_span_in_context(span)
        if suppress_http and api.suppress_http is not None:
            context = api.context.set_value(api.suppress_http, True, context)
        self._token = api.context.attach(context)

    def _finish(self) -> None:
        try:
            self._span.end()
        finally:
            self._api.context.detach(self._token)

    def _failed(self, error_type: str, description: str | None = None) -> None:
        self._span.set_attribute("error.type", error_type)
        self._span.set_status(self._api.trace.StatusCode.ERROR, description)


class _RecordedAttempt(_CurrentSpan, AttemptRecord):
    __slots__ = ("_answered",)

    def __init__(self, api: _Api, span: Span) -> None:
        self._answered = False
        self._start(api, span, suppress_http=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None and not self._answered:
            self._failed(type_name(error))
        self._finish()

    def answered(self, outcome: Outcome) -> None:
        self._answered = True
        if outcome.status is not None:
            self._span.set_attribute("http.response.status_code", outcome.status)
        error_type = attempt_error_type(outcome)
        if error_type is not None:
            # The status code says it, or the reason the log line gives does.
            has_status = outcome.status is not None and error_type == str(outcome.status)
            self._failed(error_type, None if has_status else outcome.reason)


class _RecordedRenewal(_CurrentSpan, RenewalRecord):
    __slots__ = ("_attributes", "_ended", "_started", "_token_url")

    def __init__(
        self,
        api: _Api,
        server: dict[str, str | int],
        token_url: str,
        trigger: str,
        link: object | None,
    ) -> None:
        self._attributes: dict[str, str | int] = {TRIGGER: trigger, **server}
        self._token_url = token_url
        self._ended = False
        links = None
        parent = None  # the current context: a renewal on the request's own thread
        if link is not None:
            # Its own trace: the request it was started for does not wait for it.
            parent = api.context.Context()
            links = [api.trace.Link(cast("SpanContext", link))]
        span = api.tracer.start_span(
            RENEWAL_SPAN,
            context=parent,
            kind=api.trace.SpanKind.INTERNAL,
            attributes=self._attributes,
            links=links,
        )
        self._started = time.perf_counter()
        self._start(api, span, suppress_http=False)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._ended and error is not None:
            self.ended("failed", error)
        self._finish()

    def attempt(self, path: str, resend_count: int) -> AttemptRecord:
        api = self._api
        attributes: dict[str, str | int] = {
            "http.request.method": "POST",
            "server.address": self._attributes["server.address"],
            "server.port": self._attributes["server.port"],
            "url.full": self._token_url + path,
        }
        if resend_count > 0:  # only on a resend, as the conventions ask
            attributes["http.request.resend_count"] = resend_count
        span = api.tracer.start_span(
            f"POST {path}",
            context=api.trace.set_span_in_context(self._span),
            kind=api.trace.SpanKind.CLIENT,
            attributes=attributes,
        )
        return _RecordedAttempt(api, span)

    def ended(self, result: str, error: BaseException | None = None) -> None:
        if result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS}, got {result!r}")
        if self._ended:
            return
        self._ended = True
        seconds = time.perf_counter() - self._started
        attributes = {**self._attributes, RESULT: result}
        self._span.set_attribute(RESULT, result)
        if result == "failed":
            error_type = "_OTHER" if error is None else type_name(error)
            attributes["error.type"] = error_type
            self._failed(error_type)
        self._api.renewals.add(1, attributes)
        self._api.duration.record(seconds, attributes)


class _RecordedReplay(_CurrentSpan, ReplayRecord):
    __slots__ = ("_answered",)

    def __init__(self, api: _Api, method: str, url: str) -> None:
        self._answered = False
        known = method in KNOWN_METHODS
        attributes: dict[str, str | int] = {
            "http.request.method": method if known else "_OTHER",
            **server_attributes(url),
            "url.full": url_full(url),
            "http.request.resend_count": 1,
        }
        if not known:
            attributes["http.request.method_original"] = method
        span = api.tracer.start_span(
            method if known else "HTTP", kind=api.trace.SpanKind.CLIENT, attributes=attributes
        )
        self._start(api, span, suppress_http=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None and not self._answered:
            self._failed(type_name(error))
        self._finish()

    def answered(self, status: int | None, error: BaseException | None = None) -> None:
        self._answered = True
        if status is not None:
            self._span.set_attribute("http.response.status_code", status)
        if error is not None:
            self._failed(type_name(error))
        elif status is not None and status >= 400:
            self._failed(str(status))


class StepTally:
    """What a driver tells the record of a renewal as it runs the renewal's steps: each
    token call as an attempt (counting the resends of each path), and at the end how the
    renewal came to its token (which call granted it, or none: the shared cache)."""

    __slots__ = ("_granted", "_sends", "record")

    def __init__(self, record: RenewalRecord) -> None:
        self.record = record
        self._sends: dict[str, int] = {}
        self._granted: str | None = None

    def attempt(self, path: str) -> AttemptRecord:
        """The record of the next call to ``path``."""
        resends = self._sends.get(path, 0)
        self._sends[path] = resends + 1
        return self.record.attempt(path, resends)

    def answered(self, attempt: AttemptRecord, path: str, outcome: Outcome) -> None:
        attempt.answered(outcome)
        if outcome.kind is Kind.GRANT:
            self._granted = path

    def result(self) -> str:
        """How a renewal that returned a token got it (one of :data:`RESULTS`)."""
        if self._granted is None:
            return "cached"
        return "refreshed" if self._granted == REFRESH_TOKEN_PATH else "issued"
