"""``FakeEmmaServer``: a real HTTP server on 127.0.0.1 that behaves like emma's API.

It follows emma's OpenAPI spec (1.0.50) where the spec speaks, for what auth touches:

- the token endpoints, as :class:`FakeTokenService` (``_tokens.py``) answers them:
  camelCase ``Token``, ``{"code", "message"}`` with 400, refresh tokens rotated;
- ``GET /v1/locations`` (``?name=`` filters), ``GET /v1/locations/{id}``, ``GET`` and
  ``POST /v1/ssh-keys`` check ``Authorization: Bearer``: 401 ``UNAUTHORIZED`` when it is
  missing, unknown, expired or revoked; 403 ``FORBIDDEN`` for a write when the service app's
  access level is ``Read``.

Test knobs: lifetimes, :meth:`revoke`, :meth:`expire_access_tokens`,
:meth:`fail_next_token_calls`, :meth:`fail_next_api_calls`, :meth:`drop_next_api_calls`,
``token_delay``, ``token_hook`` / ``api_hook`` (called in the handler thread, for
barriers), :meth:`add_redirect`; counters of token and API calls and a record of the
requests received (the newest ``max_recorded_requests``, so a long-running server stays
the same size); ``request_log``, called with the method, path and status of each answer
(what ``requests-emma serve`` prints).
"""

from __future__ import annotations

import collections
import dataclasses
import http.server
import json
import secrets
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from .._core.wire import ISSUE_TOKEN_PATH, REFRESH_TOKEN_PATH
from ._tokens import FakeTokenService, PlannedAnswer, bad_request, json_answer, planned_answer

PREFIX = "/external"
#: Planned for an API call that gets no answer: the connection is closed instead.
_DROP = PlannedAnswer(0, {}, b"")
FORBIDDEN_MESSAGE = (
    "Access is denied. You do not have the necessary permissions to perform this action."
)

LOCATIONS: list[dict[str, Any]] = [
    {"id": 18, "name": "London", "continent": "Europe", "region": "EMEA",
     "latitude": 51.50735, "longitude": -0.1277583},
    {"id": 7, "name": "Frankfurt", "continent": "Europe", "region": "EMEA",
     "latitude": 50.110924, "longitude": 8.682127},
    {"id": 35, "name": "Virginia", "continent": "North America", "region": "AMER",
     "latitude": 37.431572, "longitude": -78.656894},
    {"id": 52, "name": "Singapore", "continent": "Asia", "region": "APAC",
     "latitude": 1.352083, "longitude": 103.819836},
]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """A request the server received: path without the ``/external`` prefix, raw body."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


class FakeEmmaServer(FakeTokenService):
    """A threaded emma look-alike on ``127.0.0.1``; use it as a context manager.

    ``base_url`` includes emma's ``/external`` path prefix. Lifetimes are seconds;
    ``send_expires_in=False`` leaves ``expiresIn`` out of token responses, so clients must
    fall back on the JWT ``exp`` claim. ``requests`` holds the newest
    ``max_recorded_requests`` requests received, oldest first (``None``: every one).
    ``revoke_on_reuse=True`` makes it a server with refresh-token reuse detection: a refresh
    token presented after it was used revokes every token descended from the same
    issue-token call; ``refresh_reuses`` counts such presentations (with the option or
    without).
    """

    def __init__(
        self,
        *,
        client_id: str = "fake-client-id",
        client_secret: str | None = None,
        token_lifetime: int = 300,
        refresh_lifetime: int = 1800,
        access_level: str = "Manage",
        send_expires_in: bool = True,
        max_recorded_requests: int | None = 1000,
        revoke_on_reuse: bool = False,
    ) -> None:
        # type(), not isinstance(): True is an int too, and no bound.
        if max_recorded_requests is not None and (
            type(max_recorded_requests) is not int or max_recorded_requests < 0
        ):
            raise ValueError(
                f"max_recorded_requests must be a whole number, 0 or more, or None (every "
                f"request), not {max_recorded_requests!r}"
            )
        secret = client_secret or secrets.token_urlsafe(24)
        super().__init__(
            client_id, secret, token_lifetime, refresh_lifetime, send_expires_in, revoke_on_reuse
        )
        self.client_id: str
        self.client_secret: str
        self.access_level = access_level
        self.token_delay = 0.0
        self.token_hook: Callable[[], None] | None = None
        self.api_hook: Callable[[], None] | None = None
        #: Called in the handler thread with (method, path, status) for each answer sent;
        #: the path has no query string, and nothing else of the request is passed.
        self.request_log: Callable[[str, str, int], None] | None = None
        self.api_calls = 0
        self.max_recorded_requests = max_recorded_requests
        self.requests: list[RecordedRequest] = []
        # What the next API calls get, in the order planned; _DROP: no answer at all. No lock
        # guards it: a deque's extend and popleft are atomic.
        self._api_plan: collections.deque[PlannedAnswer] = collections.deque()
        self._redirects: dict[str, tuple[int, str, bool]] = {}
        self._ssh_keys: list[dict[str, Any]] = []
        self._httpd: _Server | None = None

    # -- running -----------------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeEmmaServer:
        """Listen on ``127.0.0.1:port`` (``0``: a free port) and serve in a thread."""
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = _Server(("127.0.0.1", port), handler)
        # A short poll interval makes stop() quick: tests start and stop many servers.
        serve, kwargs = self._httpd.serve_forever, {"poll_interval": 0.05}
        threading.Thread(target=serve, kwargs=kwargs, name="FakeEmmaServer", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeEmmaServer:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeEmmaServer is not running: call start() or use `with`")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def __repr__(self) -> str:
        running = f"base_url={self.base_url!r}" if self._httpd else "stopped"
        return f"FakeEmmaServer({running}, client_id={self.client_id!r})"

    # -- knobs --------------------------------------------------------------------------------

    def fail_next_api_calls(
        self,
        count: int,
        status: int = 503,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> None:
        """Answer the next ``count`` API calls (not token calls) with ``status`` (and
        ``headers``, ``body``), before the bearer token is checked."""
        self._api_plan.extend([planned_answer(status, headers, body)] * count)

    def drop_next_api_calls(self, count: int) -> None:
        """Close the connection of the next ``count`` API calls without answering them.

        Drops and :meth:`fail_next_api_calls` plan one queue: calls take them in the order
        planned."""
        self._api_plan.extend([_DROP] * count)

    def add_redirect(
        self, path: str, location: str, status: int = 302, *, requires_token: bool = False
    ) -> None:
        """Answer requests for ``path`` (without the prefix) with a redirect to ``location``;
        with ``requires_token``, only once the bearer token has been checked (a 401 first)."""
        self._redirects[path] = (status, location, requires_token)


class _Server(http.server.ThreadingHTTPServer):
    # The default backlog of 5 makes a burst of concurrent clients wait for SYN retries.
    request_queue_size = 128

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up (a timeout test, a closed pool) is not an error to print.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: FakeEmmaServer
    protocol_version = "HTTP/1.1"
    # Buffer each answer and send it in one write (flushed after every request): headers and
    # body written apart meet delayed ACKs on keep-alive connections, 40 ms a request.
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # send_response() calls this with the status of every answer.
        log = self.server_state.request_log
        if log is not None:
            # A request line too malformed to parse leaves no method or path: "-" for them.
            path = urllib.parse.urlsplit(getattr(self, "path", "") or "-").path
            log(self.command or "-", path, int(code))

    def _dispatch(self) -> None:
        state = self.server_state
        body = self._read_body()
        url = urllib.parse.urlsplit(self.path)
        if not url.path.startswith(PREFIX + "/"):
            return self._send_json(404, {"code": "NOT_FOUND", "message": "Not found"})
        path = url.path[len(PREFIX) :]
        recorded = RecordedRequest(self.command, path, dict(self.headers.items()), body)
        with state._lock:
            # A list rather than a deque, so ``requests`` stays the list it always was (slices,
            # ``==``); dropping the oldest of at most ``max_recorded_requests`` items is cheap.
            state.requests.append(recorded)
            if state.max_recorded_requests is not None:
                del state.requests[: max(0, len(state.requests) - state.max_recorded_requests)]
        if path in (ISSUE_TOKEN_PATH, REFRESH_TOKEN_PATH) and self.command == "POST":
            failure = state._receive_token_call(path)
            if state.token_hook is not None:
                state.token_hook()
            time.sleep(state.token_delay)
            content_type = self.headers.get("Content-Type", "")
            return self._answer(failure or state._answer_token_call(path, content_type, body))
        with state._lock:
            state.api_calls += 1
            planned = state._api_plan.popleft() if state._api_plan else None
        if state.api_hook is not None:
            state.api_hook()
        if planned is _DROP:
            self.close_connection = True  # no status line: the client sees the connection close
            return None
        if planned is not None:
            return self._answer(planned)
        # A path with no redirect is one that needs the bearer token and has no Location.
        status, location, requires_token = state._redirects.get(path, (0, None, True))
        if requires_token and not self._authorized():
            return None
        if location is not None:
            return self._send(status, b"", {"Location": location})
        return self._api(path, urllib.parse.parse_qs(url.query), body)

    def _any_method(self) -> None:
        self._dispatch()  # looked up on the instance: a subclass may override _dispatch

    # Every method the server accepts is dispatched by path alike (others get 501).
    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _any_method

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF that ends each chunk
            self.rfile.readline()  # the empty line after the last (size 0) chunk
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        """Whether the bearer token lets the request through; if not, the refusal is sent."""
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Bearer "):
            return self._refuse(401, "UNAUTHORIZED", "Token is not provided")
        if not self.server_state.is_valid_access_token(header[len("Bearer ") :]):
            return self._refuse(401, "UNAUTHORIZED", "Token is not valid")
        if self.command != "GET" and self.server_state.access_level == "Read":
            return self._refuse(403, "FORBIDDEN", FORBIDDEN_MESSAGE)
        return True

    def _refuse(self, status: int, code: str, message: str) -> bool:
        """Send emma's error answer; ``False``, for :meth:`_authorized` to return."""
        self._send_json(status, {"code": code, "message": message})
        return False

    def _api(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        if path == "/v1/locations" and self.command == "GET":
            names = query.get("name")
            found = [loc for loc in LOCATIONS if not names or loc["name"] in names]
            return self._send_json(200, found)
        if path.startswith("/v1/locations/") and self.command == "GET":
            for location in LOCATIONS:
                if path == f"/v1/locations/{location['id']}":
                    return self._send_json(200, location)
            return self._send_json(404, {"code": "NOT_FOUND", "message": "Location not found"})
        if path == "/v1/ssh-keys" and self.command == "GET":
            # No lock: copying a list is atomic, and a key is appended whole.
            return self._send_json(200, list(self.server_state._ssh_keys))
        if path == "/v1/ssh-keys" and self.command == "POST":
            return self._create_ssh_key(body)
        return self._send_json(404, {"code": "NOT_FOUND", "message": "Not found"})

    def _create_ssh_key(self, body: bytes) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            return self._answer(bad_request("Request body is not valid JSON"))
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return self._answer(bad_request("name is required"))
        state = self.server_state
        with state._lock:
            key = {
                "id": 60 + len(state._ssh_keys),
                "name": data["name"],
                "key": data.get("key") or "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKey",
                "fingerprint": "f2:60:34:c8:34:b2:a3:da:22:f9:12:f9:03:f0:33:c0",
                "keyType": data.get("keyType", "ED25519"),
                "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                "createdByName": "Automation User",
                "createdById": 123,
            }
            state._ssh_keys.append(key)
        return self._send_json(201, key)

    def _send_json(self, status: int, payload: object) -> None:
        self._answer(json_answer(status, payload))

    def _answer(self, answer: PlannedAnswer) -> None:
        self._send(answer.status, answer.body, answer.headers)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has headers only
            self.wfile.write(body)
