"""One call to an emma token endpoint, reported as a classified
:class:`~requests_emma._core.outcome.Outcome`.

The transport holds no policy: it makes one attempt and says what happened. Retrying is the
retry policy's business (``_core/backoff.py``), what a refusal means is the lifecycle's.

The calls go through their own ``requests.Session`` (or the one the user passes for proxies
and TLS), never through ``EmmaAuth``: an explicit no-op auth keeps a session-level auth or a
``.netrc`` entry from adding an ``Authorization`` header, and redirects are not followed, so
the client secret is never sent anywhere but the configured endpoint.

The deadline bounds the whole exchange, from connect to the last byte of the body
(``_requests/deadline.py``; with a session of the user's, whose adapters are theirs, each socket
operation's timeout is cut to the time left instead). The body is read as requests decodes
it, so a gzip- or deflate-encoded token arrives whole, and is capped at :data:`MAX_BODY`.

Secrets (the client secret, a refresh token) travel as :class:`~requests_emma._core.secret.Secret` and the
request body is built inside the ``post`` call, so no frame of ours holds them in plain text
for a traceback to show; exceptions raised from below, ``KeyboardInterrupt`` included, leave
with the frames that held the body cut off.
"""

from __future__ import annotations

import requests

from .._core.exchange import CHUNK, HEADERS, Failure, Timeout
from .._errors import without_tracebacks
from .._source.attempt import Answer, BlockingEndpoint, Body, read_capped
from .deadline import DeadlineAdapter
from .proxies import direct_proxies


class TokenEndpoint(BlockingEndpoint):
    """Posts to issue-token and refresh-token, one attempt at a time."""

    #: An SSLError is a ConnectionError, and a ConnectTimeout a Timeout and a ConnectionError:
    #: the first match wins.
    failures = (
        (requests.exceptions.SSLError, Failure.TLS),
        (requests.Timeout, Failure.TIMEOUT),
        (requests.ConnectionError, Failure.CONNECTION),
        (requests.exceptions.ChunkedEncodingError, Failure.CONNECTION),
        (requests.exceptions.ContentDecodingError, Failure.UNDECODABLE),
    )

    def __init__(self, base_url: str, session: requests.Session | None, timeout: Timeout) -> None:
        super().__init__(base_url, timeout)
        self.owns_session = session is None
        if session is None:  # the session for token calls: its adapters obey deadlines
            session = requests.Session()
            session.mount("https://", DeadlineAdapter())
            session.mount("http://", DeadlineAdapter())
        self.session = session

    def exchange(self, url: str, body: Body, timeout: Timeout) -> Answer:
        """One POST to ``url``, the body read as requests decodes it (gzip, deflate...)."""
        with self.session.post(
            url,
            json=body(),  # built here only, so no local of ours holds the secret
            # No Authorization: None drops a session's header, a no-op auth its auth and a
            # .netrc entry.
            headers={**HEADERS, "Authorization": None},
            timeout=timeout,
            allow_redirects=False,
            auth=lambda request: request,
            proxies=direct_proxies(url),  # type: ignore[arg-type] # loopback: direct
            stream=True,
        ) as response:
            content = read_capped(
                response.iter_content(CHUNK),
                requests.exceptions.ContentDecodingError,
                success=200 <= response.status_code < 300,
            )
            return response.status_code, content, response.headers.get("Retry-After")

    def close(self) -> None:
        """Drop idle pooled connections, if the session is ours: token calls are minutes
        apart, and an idle connection would only be dropped by the server."""
        if self.owns_session:
            self.session.close()

    def scrub(self, exc: BaseException) -> BaseException:
        """``exc`` without what would show the request body, which holds the client secret or
        a refresh token: the request itself, and the tracebacks down its chain of causes,
        whose frames (ours, requests', urllib3's) hold the body in their locals."""
        if isinstance(exc, requests.RequestException):
            exc.request = None
            exc.response = None
        return without_tracebacks(exc)
