"""``EmmaSession``: a ``requests.Session`` that knows emma's base URL.

It adds three things to a plain session carrying an :class:`EmmaAuth`:

Relative URLs
    ``"/v1/locations"`` and ``"v1/locations"`` both become ``<base_url>/v1/locations``. The
    join is textual (``base.rstrip("/") + "/" + path.lstrip("/")``): ``urljoin`` would drop
    the ``/external`` path prefix of emma's base URL. A URL with a scheme is used as it is.

A default timeout
    Every request that passes no ``timeout`` (or ``None``) gets the session's, so a dead
    connection cannot hang a caller forever.

Retries of idempotent requests
    An ``HTTPAdapter`` mounted for the base URL's origin (with and without its default port)
    carries a urllib3 ``Retry``: GET, HEAD, OPTIONS, PUT and DELETE are retried on
    connection errors (refused, or closed or reset before an answer) and on 502, 503 and
    504, with exponential backoff, waiting as long as ``Retry-After`` asks (up to
    :data:`RETRY_AFTER_LIMIT`); ``no_retry_waits()`` skips the waits. A read timeout is not
    retried: a slow server is not waited on twice. Other methods, POST above all, are never
    retried, not even when the connection failed. A request whose body cannot be sent twice
    byte for byte (a generator, an unseekable stream) is sent once: urllib3 would re-send an
    exhausted generator as an empty body. The retries happen inside the adapter, below
    ``EmmaAuth``: a 401 is not retried there, so the auth's single replay is unchanged.

No proxy for loopback
    A request to a loopback host (a local test server) goes direct, whatever proxies the
    environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``), the session's ``proxies``
    or the call name: a proxy cannot reach this machine's loopback, and plain http through
    it would show the proxy the bearer token. Nor does a request to loopback carry a
    ``Proxy-Authorization`` header, which requests adds to a redirect from the environment's
    proxy settings.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any, cast

import requests
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ReadTimeoutError, ResponseError, UnrewindableBodyError
from urllib3.util.retry import Retry

from .._core import durations, urls
from .._core.retry_policy import parse_retry_after
from .._source import TokenSource, source_of
from .auth import EmmaAuth
from .body_rewind import can_be_resent
from .proxies import direct_proxies

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self  # typing.Self from Python 3.11
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

#: Methods retried automatically: those that may be sent twice without a second effect.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Statuses retried: a gateway or the service is briefly unavailable.
RETRY_STATUSES = frozenset({502, 503, 504})
#: The longest ``Retry-After`` (seconds) waited for; a longer one returns the response.
RETRY_AFTER_LIMIT = 30.0

_HAS_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class IdempotentRetry(Retry):
    """urllib3's ``Retry`` that keeps to ``allowed_methods`` even for connection errors.

    Plain ``Retry`` retries a failed connection whatever the method; this one never retries
    a method outside ``allowed_methods``, and never retries a read timeout. It also gives
    up, returning the response, when ``Retry-After`` asks for more than
    :data:`RETRY_AFTER_LIMIT` seconds, treats an unparseable ``Retry-After`` as absent
    (plain backoff) rather than raising, and skips its waits inside ``no_retry_waits()``.

    Its waits, and the ``Retry-After`` dates it reads, go by the clock of the token source
    in :attr:`source` (``EmmaSession`` sets it on the one it makes), read at each wait, so that
    the one clock a test puts on an ``EmmaAuth`` (:func:`requests_emma.testing.use_clock`)
    rules these too.
    """

    RETRY_AFTER_STATUS_CODES = RETRY_STATUSES
    #: The token source whose clock the waits read.
    source: TokenSource

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.source = self.source
        return retry

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> IdempotentRetry:
        if isinstance(error, ReadTimeoutError):
            raise error.with_traceback(_stacktrace)  # requests makes it a ReadTimeout
        pool = cast("ConnectionPool", _pool)
        if error is not None and method is not None and not self._is_method_retryable(method):
            raise MaxRetryError(pool, url, error) from error
        wait = self.get_retry_after(response)
        if wait is not None and wait > RETRY_AFTER_LIMIT:
            # raise_on_status=False makes urllib3 return the response, Retry-After and all.
            raise MaxRetryError(pool, url, ResponseError(f"Retry-After {wait:.0f} s is too long"))
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def get_retry_after(self, response: BaseHTTPResponse | None) -> float | None:
        # urllib3's reads an HTTP-date against time.time() and raises for a header it cannot
        # read; this one reads it against the auth's clock, and takes an unreadable one (or no
        # response) for none.
        header = None if response is None else response.headers.get("Retry-After")
        return parse_retry_after(header, self.source.clock.wall())

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        # urllib3's choice of wait, slept through the sleep that no_retry_waits() turns off.
        wait = self.get_retry_after(response) if self.respect_retry_after_header else None
        self.source.clock.sleep(wait or self.get_backoff_time())


class _RetryingAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` with retries, except for bodies that cannot be sent twice."""

    # requests pickles the attributes an adapter lists: the single-try adapter goes along.
    __attrs__ = (*HTTPAdapter.__attrs__, "_single_try")

    def __init__(self, retry: Retry) -> None:
        super().__init__(max_retries=retry)
        self._single_try = HTTPAdapter(max_retries=0)

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        if not can_be_resent(request):
            return self._single_try.send(request, *args, **kwargs)
        try:
            return super().send(request, *args, **kwargs)
        except UnrewindableBodyError as exc:
            # A stream whose seekable() said yes but whose seek() failed. HTTPAdapter passes
            # this urllib3 error through; make it one callers catch as a RequestException.
            raise requests.exceptions.UnrewindableBodyError(
                "the request body could not be rewound for a retry: its seekable() is True "
                "but its seek() failed; pass the body as bytes, or as a generator to send it "
                "once",
                request=request,
            ) from exc

    def close(self) -> None:
        super().close()
        self._single_try.close()


class EmmaSession(requests.Session):
    """A ``requests.Session`` for the emma API: base URL, default timeout, retries.

    ``auth``: the :class:`EmmaAuth` to use (``None``: ``EmmaAuth(base_url=base_url)``,
    credentials from ``EMMA_CLIENT_ID`` and ``EMMA_CLIENT_SECRET``). ``base_url``: where
    relative URLs point (``None``: the auth's); it must share the auth's origin, as the
    token is only sent there. ``timeout``: seconds, or ``(connect, read)``, for requests
    that pass none (``None``: no default). ``retries``: how idempotent requests are retried;
    an ``int`` (retries per request, default 3), a urllib3 ``Retry`` used as it is, or
    ``0``, ``None`` or ``False`` for none.
    """

    # requests.Session pickles only the attributes it lists; ours go along.
    __attrs__ = (*requests.Session.__attrs__, "_base_url", "_timeout")

    def __init__(
        self,
        auth: EmmaAuth | None = None,
        *,
        base_url: str | None = None,
        timeout: float | tuple[float, float] | None = 30.0,
        retries: int | Retry | None = 3,
    ) -> None:
        if auth is not None and not isinstance(auth, EmmaAuth):
            raise ValueError(f"auth must be an EmmaAuth, got {type(auth).__name__}")
        # retries: a Retry, used as it is; a count (False counts 0; True is no count); None.
        count = retries is not True and isinstance(retries, int) and retries >= 0
        if not (count or retries is None or isinstance(retries, Retry)):
            raise ValueError(
                "retries must be a number of retries (0 or more), a urllib3 Retry, "
                f"or None or False for none; got {retries!r}"
            )
        if timeout is not None:
            connect, read = durations.timeout(timeout)  # validates: positive, finite
            timeout = (connect, read) if isinstance(timeout, tuple) else read
        auth = EmmaAuth(base_url=base_url) if auth is None else auth
        resolved_base = auth.base_url if base_url is None else urls.base_url(base_url)
        if urls.origin(resolved_base) != urls.origin(auth.base_url):
            raise ValueError(
                f"base_url {resolved_base!r} is not on the auth's origin {auth.base_url!r}: "
                "the token would never be sent there"
            )
        super().__init__()
        self.auth = auth
        self._base_url = resolved_base
        self._timeout = timeout
        if isinstance(retries, int) and retries:
            retries = IdempotentRetry(
                # total bounds every kind of retry (connection, read, status) alike; read
                # errors are connections closed before the answer, as increment() skips read
                # timeouts.
                total=retries,
                other=0,
                allowed_methods=IDEMPOTENT_METHODS,
                status_forcelist=RETRY_STATUSES,
                backoff_factor=0.5,  # without Retry-After: 0 s, then 1 s, 2 s, 4 s...
                raise_on_status=False,  # after the last retry, hand back the 503, not raise
            )
            retries.source = source_of(auth)
        if isinstance(retries, Retry):
            adapter = _RetryingAdapter(retries)
            for prefix in urls.origin_prefixes(resolved_base):
                self.mount(prefix, adapter)

    @property
    def base_url(self) -> str:
        """Where relative URLs point, without a trailing slash."""
        return self._base_url

    @property
    def timeout(self) -> float | tuple[float, float] | None:
        """The timeout of requests that pass none (``None``: no default)."""
        return self._timeout

    def __repr__(self) -> str:
        # Of any instance, one whose __init__ raised included (see EmmaAuth.__repr__).
        if not hasattr(self, "_base_url"):
            return "EmmaSession(<not fully constructed>)"
        return f"EmmaSession(base_url={self._base_url!r})"

    def prepare_request(self, request: requests.Request) -> PreparedRequest:
        # Here rather than in request(): a Request the caller prepares resolves the same way.
        if isinstance(request.url, str) and not _HAS_SCHEME.match(request.url):
            request = copy.copy(request)
            request.url = self._base_url + "/" + request.url.lstrip("/")
        return super().prepare_request(request)

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        # send(), not request(): redirects and direct send() calls get the default as well.
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        direct = direct_proxies(request.url or "")
        if direct is not None:
            # Every send passes here (request(), a redirect, a direct send()): whatever
            # proxies the environment, the session or the caller chose, loopback goes direct.
            # (The keys are dropped, not set to None: a redirect elsewhere gets its proxy.)
            proxies = kwargs.get("proxies") or {}
            kwargs["proxies"] = {key: url for key, url in proxies.items() if key not in direct}
            # For a redirect requests adds the environment proxy's credentials as a
            # Proxy-Authorization header, which a direct request hands to the server itself.
            request.headers.pop("Proxy-Authorization", None)
        return super().send(request, **kwargs)
