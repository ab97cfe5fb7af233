"""OpenTelemetry spans and metrics for token renewals and 401 replays, through the API only.

Theory of operation. Each auth holds one :class:`Telemetry`. Its drivers use three context
managers, only when a renewal runs or a request is replayed after a 401, never on the
ordinary request path: a :class:`Renewal` around a renewal, an :class:`Attempt`
(:meth:`Renewal.attempt`) around each token call in it, a :class:`Replay` around the resend
of a request that got a 401. Each is made at the ``with`` that runs it and is one span,
current while its block runs.

The ``opentelemetry`` API is imported at the first such use, not with the package, and is
itself the no-op: before an SDK is configured its tracer and meter are proxies that record
nothing and forward to the real providers once set, so a provider configured after an auth
was made still gets everything from then on. Only when the API is not installed (no
``[otel]`` extra) do the records hold no span, and nothing is said about it: nobody asked.
Every call into OpenTelemetry is guarded: a tracer, span processor or meter that raises
never changes what a request does; the first such failure is logged once, at WARNING, by
its class, and the record goes on without it.

What is recorded, as the how-to on observability lists it: the INTERNAL span
``requests_emma renewal`` with why it ran (``requests_emma.renewal.trigger``:
:data:`TRIGGERS`) and how it ended (``requests_emma.renewal.result``: :data:`RESULTS`; one
that ends without an exception got its token from the call that granted one, or else from
the shared cache); an early renewal, run on a worker thread for a request that goes on
without it, is a root span *linked* to that request's span (:func:`request_link`). Token
calls and replays are CLIENT spans by the stable HTTP client conventions; while one is
current, the context says "HTTP instrumentation suppressed", so an instrumented requests,
urllib3 or httpx does not record the call twice. Metrics: the counter
``requests_emma.renewals``, the histogram ``requests_emma.renewal.duration`` (seconds), and
the observable gauge ``requests_emma.token.remaining_lifetime``, which holds each auth
through a weak reference to a bound method and so never keeps one alive.

Nothing secret is recorded: no token, secret, body or header; of a URL no user info, query
or fragment; of an exception its class, never its message (``error.type`` is a status
code, a class name, ``timeout`` or ``unusable_token_response``). A token call's status
description, when the status code does not say it, is the reason the log lines give.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from ._core.lifecycle import TRIGGERS  # why a renewal ran, as the lifecycle decides it
from ._core.outcome import Kind
from ._core.urls import DEFAULT_PORTS
from ._core.wire import REFRESH_TOKEN_PATH

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Span, SpanContext
    from typing_extensions import Self  # typing.Self from Python 3.11

    from ._core.outcome import Outcome

#: How it ended: issue-token granted a token; refresh-token did; the shared cache had one (no
#: call granted one); no token.
RESULTS = ("issued", "refreshed", "cached", "failed")

RENEWAL_SPAN = "requests_emma renewal"
TRIGGER = "requests_emma.renewal.trigger"
RESULT = "requests_emma.renewal.result"
#: The HTTP semantic conventions' buckets for a client's request duration, in seconds.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
#: Those, stretched to the default 30 s renewal deadline.
DURATION_BUCKETS = (*_HTTP_BUCKETS, 15, 30, 60)
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)

logger = logging.getLogger("requests_emma")
Attributes = dict[str, "str | int"]


class _Api:
    """The loaded API: its modules, our tracer and our three instruments, once per process."""

    def __init__(self) -> None:
        from opentelemetry import context, metrics, trace

        from . import __version__

        self.context, self.trace = context, trace
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
_warned = threading.Lock()  # taken by the first failure of OpenTelemetry, never released


@contextlib.contextmanager
def _guarded() -> Iterator[None]:
    """Run calls into OpenTelemetry: if one raises, warn (the first time) and go on."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - telemetry never changes what a request does
        if _warned.acquire(blocking=False):
            logger.warning(
                "OpenTelemetry raised %s; requests go on, records may be lost (said once)",
                type(exc).__name__,
            )


def _load() -> _Api | None:
    """The API, imported at the first renewal or replay; ``None`` without opentelemetry."""
    global _api, _api_loaded
    with _api_lock:
        if not _api_loaded:
            with _guarded():
                try:
                    _api = _Api()
                except ModuleNotFoundError as exc:
                    if exc.name != "opentelemetry":  # installed, but broken
                        raise
            _api_loaded = True  # not before: an import cut short (Ctrl-C) is tried again
    return _api


def request_link() -> object | None:
    """The current span's context, to link an early renewal to the request that started it;
    ``None`` when no span is recording (or opentelemetry was never imported: then none can
    be)."""
    api = _load() if _api_loaded or "opentelemetry.trace" in sys.modules else None
    if api is None:
        return None
    with _guarded():
        span = api.trace.get_current_span()
        return span.get_span_context() if span.is_recording() else None
    return None


def type_name(error: BaseException) -> str:
    """``error.type`` for an exception: its class, module-qualified unless a builtin."""
    cls = type(error)
    name = cls.__qualname__
    return name if cls.__module__ == "builtins" else f"{cls.__module__}.{name}"


def url_attributes(url: str) -> Attributes:
    """``server.address`` and ``server.port`` of ``url`` (the scheme's port if it has none),
    then ``url.full``: the URL without user info, query and fragment, what spans may show of
    a URL."""
    parts, port = urllib.parse.urlsplit(url), None
    with contextlib.suppress(ValueError):  # a port out of range, or not a number
        port = parts.port
    netloc = parts.netloc.rpartition("@")[2]
    return {
        "server.address": parts.hostname or "",
        "server.port": port or DEFAULT_PORTS.get(parts.scheme, 0),
        "url.full": urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")),
    }


class _Span:
    """A span, current while the ``with`` block around it runs; every call into OpenTelemetry
    guarded. It holds no span when nothing records: no API, or it failed to start one."""

    __slots__ = ("_api", "_span", "_token")

    def __init__(
        self, name: str, kind: str, attributes: Attributes, link: object | None = None
    ) -> None:
        api = self._api = _load()
        self._span: Span | None = None
        self._token: Any = None
        if api is None:
            return
        with _guarded():
            trace = api.trace
            # None: a child of the current span (an attempt: of its renewal, current then).
            context, links = None, None
            if link is not None:  # a trace of its own: the request linked does not wait
                context, links = api.context.Context(), [trace.Link(cast("SpanContext", link))]
            span = self._span = api.tracer.start_span(
                name, context, getattr(trace.SpanKind, kind), attributes, links
            )
            current = trace.set_span_in_context(span)
            if kind == "CLIENT" and api.suppress_http is not None:  # our span says it all
                current = api.context.set_value(api.suppress_http, True, current)
            self._token = api.context.attach(current)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        if error is not None:  # every block answers last: an exception comes before it
            self._answer(None, type_name(error))
        if self._span is not None:
            with _guarded():
                self._span.end()
        if self._token is not None and self._api is not None:
            with _guarded():
                self._api.context.detach(self._token)

    def _answer(self, status: int | None, error_type: str | None, why: str | None = None) -> None:
        """The status code, and what failed (``why``: the status description)."""
        if self._span is None or self._api is None:
            return
        with _guarded():
            if status is not None:
                self._span.set_attribute("http.response.status_code", status)
            if error_type is not None:
                self._span.set_attribute("error.type", error_type)
                self._span.set_status(self._api.trace.StatusCode.ERROR, why)


class Renewal(_Span):
    """One renewal, a context manager: the block is the renewal. It counts the token calls
    to each path (for their resend count) and notes which path granted a token, which says
    how a renewal that ends without an exception got it (:attr:`result`)."""

    __slots__ = ("_attributes", "_sends", "_started", "result", "telemetry")

    def __init__(self, telemetry: Telemetry, trigger: str, link: object | None = None) -> None:
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, got {trigger!r}")
        self.telemetry = telemetry
        self._attributes: Attributes = {TRIGGER: trigger, **telemetry.server}
        self._sends: dict[str, int] = {}
        #: How the renewal got its token: ``issued`` or ``refreshed`` by the last call that
        #: granted one, ``cached`` when none did (another process had saved it).
        self.result = "cached"
        super().__init__(RENEWAL_SPAN, "INTERNAL", self._attributes, link)
        self._started = time.perf_counter()

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        seconds = time.perf_counter() - self._started
        result = "failed" if error is not None else self.result
        attributes = {**self._attributes, RESULT: result}
        if error is not None:
            attributes["error.type"] = type_name(error)
        if self._api is not None:
            with _guarded():
                if self._span is not None:
                    self._span.set_attribute(RESULT, result)
                self._api.renewals.add(1, attributes)
                self._api.duration.record(seconds, attributes)
        super().__exit__(kind, error, traceback)

    def attempt(self, path: str) -> Attempt:
        """The record of the next call to ``path`` (``/v1/issue-token``,
        ``/v1/refresh-token``) in this renewal, a context manager around the call."""
        resend_count = self._sends.get(path, 0)  # the first call is no resend
        self._sends[path] = resend_count + 1
        attributes: Attributes = {
            "http.request.method": "POST",
            **self.telemetry.server,
            "url.full": self.telemetry.token_url + path,
        }
        if resend_count > 0:  # only on a resend, as the conventions ask
            attributes["http.request.resend_count"] = resend_count
        return Attempt(self, path, attributes)


class Attempt(_Span):
    """One token call of a renewal (:meth:`Renewal.attempt`)."""

    __slots__ = ("_path", "_renewal")

    def __init__(self, renewal: Renewal, path: str, attributes: Attributes) -> None:
        self._renewal, self._path = renewal, path
        super().__init__(f"POST {path}", "CLIENT", attributes)

    def answered(self, outcome: Outcome) -> None:
        """What the call came to, and for a failure its ``error.type``."""
        status = outcome.status
        if outcome.kind is Kind.GRANT:
            self._renewal.result = "refreshed" if self._path == REFRESH_TOKEN_PATH else "issued"
            error_type = None
        elif status is not None and not 200 <= status < 300:
            error_type = str(status)
        elif outcome.reason.startswith("timed out"):  # the transports' word for a timeout
            error_type = "timeout"
        elif outcome.cause is not None:
            error_type = type_name(outcome.cause)
        elif outcome.kind is Kind.UNUSABLE:
            error_type = "unusable_token_response"
        else:
            error_type = "_OTHER"
        # The status code says what failed, or the reason the log line gives does.
        self._answer(status, error_type, None if error_type == str(status) else outcome.reason)


class Replay(_Span):
    """An API request resent after a 401 (:meth:`Telemetry.replay`)."""

    __slots__ = ()

    def answered(self, status: int) -> None:
        """The replay's status (an exception that stopped it: the ``with`` block's end
        records that)."""
        self._answer(status, str(status) if status >= 400 else None)


class Telemetry:
    """The telemetry of one auth: its server, for its records and its gauge entry. A copy (a
    pickled auth in a worker process) starts unwatched: its owner watches again."""

    __slots__ = ("__weakref__", "server", "token_url")

    def __init__(self, base_url: str) -> None:
        self.server = url_attributes(base_url)
        self.token_url = str(self.server.pop("url.full"))

    def renewal(self, trigger: str, link: object | None = None) -> Renewal:
        """A record of one renewal (``link``: :func:`request_link` of the request an early
        renewal runs for)."""
        return Renewal(self, trigger, link)

    def replay(self, method: str, url: str) -> Replay:
        """A record of an API request replayed after a 401, around the resend."""
        known = method in KNOWN_METHODS
        attributes: Attributes = {
            "http.request.method": method if known else "_OTHER",
            **url_attributes(url),
            "http.request.resend_count": 1,
        }
        if not known:
            attributes["http.request.method_original"] = method
        return Replay(method if known else "HTTP", "CLIENT", attributes)

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
        if _load() is not None:
            with _watched_lock:
                _watched[self] = ref


# Held weakly twice over: an entry leaves with its Telemetry (its auth), and reports nothing
# once the method's owner is gone.
_watched_lock = threading.Lock()
_watched: weakref.WeakKeyDictionary[Telemetry, weakref.WeakMethod[Callable[[], float | None]]]
_watched = weakref.WeakKeyDictionary()


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
        entries = list(_watched.items())
    shortest: dict[tuple[Any, ...], tuple[float, Attributes]] = {}
    for telemetry, ref in entries:
        method = ref()
        try:
            seconds = None if method is None else method()
        except Exception as exc:  # noqa: BLE001 - one auth's failure must not hide the others
            logger.debug("remaining token lifetime not read: %s", type(exc).__name__)
            continue
        key = tuple(sorted(telemetry.server.items()))
        if seconds is not None and (key not in shortest or seconds < shortest[key][0]):
            shortest[key] = (seconds, telemetry.server)
    for seconds, attributes in shortest.values():
        yield Observation(max(0.0, seconds), attributes)
