"""The benchmarks' emma, in its own process: ``FakeEmmaServer`` plus what the benchmarks need.

Run ``python benchmarks/server.py [--token-lifetime S] [--token-delay S]
[--token-failure-rate F]``: it prints one JSON line (``base_url``, ``client_id``,
``client_secret``, ``token_url``, ``control_url``) and serves until its stdin closes, so it
never outlives the benchmark that started it (and stops by itself after ``--max-seconds``).

Added to ``FakeEmmaServer`` (by subclassing; the package's test double is unchanged):

- ``POST /external/oauth/token``: a standard OAuth2 client-credentials endpoint (RFC 6749
  4.4) for the peer libraries: form-encoded ``grant_type=client_credentials``, client id and
  secret in the body or HTTP Basic; answers ``access_token``, ``token_type``, ``expires_in``.
  Its tokens are the ones the API endpoints accept, so every library talks to the same API.
- Token calls of both kinds share the knobs: ``token_delay`` (seconds before answering) and
  ``token_failure_rate`` (that share of calls, at random, answered 503).
- ``POST /external/v1/bench/echo``: an authenticated endpoint that accepts any body and
  answers its SHA-256 and length.
- Every request carrying ``X-Body-SHA256`` has its body hashed on arrival, on every attempt
  (401s and replays included), and mismatches are counted.
- Every 401 says why in ``X-Bench-Reject`` (``missing``, ``expired``, ``expired in flight``
  when the request's ``X-Sent-At`` was before the expiry, ``revoked``, ``unknown``) and is
  counted by reason.
- Control endpoints, no auth: ``GET /_bench/stats`` (the counters), ``POST /_bench/reset``
  (zero them; a JSON body may also set ``token_lifetime``, ``token_delay``,
  ``token_failure_rate``), ``POST /_bench/revoke`` (revoke every token issued so far; with
  ``{"access_only": true}``, every access token, refresh tokens staying valid).
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import json
import random
import secrets
import sys
import threading
import time
import urllib.parse
from typing import Any

from requests_emma.testing import FakeEmmaServer
from requests_emma.testing._server import _Handler
from requests_emma.testing._tokens import PlannedAnswer, json_answer, planned_answer

OAUTH_TOKEN_PATH = "/external/oauth/token"
ECHO_PATH = "/v1/bench/echo"
CONTROL_PREFIX = "/_bench/"
KNOBS = ("token_lifetime", "token_delay", "token_failure_rate")


class _NoRecord(list):  # type: ignore[type-arg]
    """Drops what the base server would record: a long benchmark must not grow the server."""

    def append(self, item: object) -> None:
        pass


class BenchServer(FakeEmmaServer):
    """``FakeEmmaServer`` with an OAuth2 endpoint, random token failures and counters."""

    def __init__(self, *, token_failure_rate: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests = _NoRecord()
        self.token_failure_rate = token_failure_rate
        self._random = random.Random()
        self._revoked: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.reset_counters()

    def start(self) -> BenchServer:
        handler = type("Handler", (_BenchHandler,), {"server_state": self})
        super().start()
        assert self._httpd is not None
        self._httpd.RequestHandlerClass = handler
        return self

    def reset_counters(self) -> None:
        with self._lock:
            self.issue_calls = self.refresh_calls = self.oauth_calls = 0
            self.failed_token_calls = 0
            self.api_calls = 0
            self.rejected: collections.Counter[str] = collections.Counter()
            self.bodies_checked = 0
            self.body_mismatches = 0
            self.revocations = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "token_calls": self.issue_calls + self.refresh_calls + self.oauth_calls,
                "issue_calls": self.issue_calls,
                "refresh_calls": self.refresh_calls,
                "oauth_calls": self.oauth_calls,
                "failed_token_calls": self.failed_token_calls,
                "api_calls": self.api_calls,
                "api_401": sum(self.rejected.values()),
                "api_401_by_reason": dict(self.rejected),
                "bodies_checked": self.bodies_checked,
                "body_mismatches": self.body_mismatches,
                "revocations": self.revocations,
                **{knob: getattr(self, knob) for knob in KNOBS},
            }

    def revoke(self, *, access_only: bool = False) -> None:
        """Revoke every token issued so far; with ``access_only``, keep refresh tokens."""
        with self._lock:
            for token in self._access:
                self._revoked[token] = None
            while len(self._revoked) > 100_000:
                self._revoked.popitem(last=False)
            self.revocations += 1
            if access_only:
                self._access.clear()
                return
        super().revoke()

    def _receive_token_call(self, path: str) -> PlannedAnswer | None:
        planned = super()._receive_token_call(path)
        return planned or self._random_failure()

    def receive_oauth_call(self) -> PlannedAnswer | None:
        with self._lock:
            self.oauth_calls += 1
        return self._random_failure()

    def _random_failure(self) -> PlannedAnswer | None:
        with self._lock:
            if self._random.random() >= self.token_failure_rate:
                return None
            self.failed_token_calls += 1
        return planned_answer(503, None, None)

    def rejection_reason(self, token: str | None, sent_at: float | None) -> str | None:
        """Why the API refuses ``token``, or ``None`` if it is accepted.

        ``sent_at`` is when the client says it sent the request (``X-Sent-At``, Unix time):
        a token that was valid then and expired on the way is "expired in flight".
        """
        if token is None:
            return "missing"
        with self._lock:
            expires = self._access.get(token)
            if expires is not None:
                if expires > time.time():
                    return None
                return (
                    "expired in flight"
                    if sent_at is not None and sent_at < expires
                    else ("expired")
                )
            return "revoked" if token in self._revoked else "unknown"

    def oauth_token(self) -> dict[str, Any]:
        token = self._new_token()
        return {
            "access_token": token["accessToken"],
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
        }


class _BenchHandler(_Handler):
    server_state: BenchServer

    def _dispatch(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith(CONTROL_PREFIX):
            return self._control(path[len(CONTROL_PREFIX) :], self._read_body())
        if path == OAUTH_TOKEN_PATH and self.command == "POST":
            return self._oauth_token(self._read_body())
        return super()._dispatch()

    def _read_body(self) -> bytes:
        body = super()._read_body()
        expected = self.headers.get("X-Body-SHA256")
        if expected is not None:
            state = self.server_state
            intact = hashlib.sha256(body).hexdigest() == expected
            with state._lock:
                state.bodies_checked += 1
                state.body_mismatches += not intact
        return body

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization")
        token = header[len("Bearer ") :] if header and header.startswith("Bearer ") else None
        sent_at = self.headers.get("X-Sent-At")
        reason = self.server_state.rejection_reason(
            token, None if sent_at is None else float(sent_at)
        )
        if reason is None:
            return super()._authorized()  # the 403 for a Read-only app stays the base's
        with self.server_state._lock:
            self.server_state.rejected[reason] += 1
        body = json.dumps({"code": "UNAUTHORIZED", "message": f"Token is {reason}"}).encode()
        self._send(401, body, {"Content-Type": "application/json", "X-Bench-Reject": reason})
        return False

    def _api(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        if path == ECHO_PATH and self.command == "POST":
            digest = hashlib.sha256(body).hexdigest()
            return self._send_json(200, {"sha256": digest, "length": len(body)})
        return super()._api(path, query, body)

    def _oauth_token(self, body: bytes) -> None:
        state = self.server_state
        failure = state.receive_oauth_call()
        if state.token_delay:
            time.sleep(state.token_delay)
        if failure is not None:
            return self._answer(failure)
        form = urllib.parse.parse_qs(body.decode("latin-1"))
        client_id = (form.get("client_id") or [None])[0]
        client_secret = (form.get("client_secret") or [None])[0]
        basic = self.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            decoded = base64.b64decode(basic[len("Basic ") :]).decode()
            client_id, _, client_secret = decoded.partition(":")
            client_id, client_secret = (
                urllib.parse.unquote(client_id),
                urllib.parse.unquote(client_secret),
            )
        if (form.get("grant_type") or [None])[0] != "client_credentials":
            return self._answer(json_answer(400, {"error": "unsupported_grant_type"}))
        if client_id != state.client_id or client_secret != state.client_secret:
            return self._answer(json_answer(401, {"error": "invalid_client"}))
        self._answer(json_answer(200, state.oauth_token()))

    def _control(self, command: str, body: bytes) -> None:
        state = self.server_state
        if command == "stats" and self.command == "GET":
            return self._send_json(200, state.stats())
        if command == "revoke" and self.command == "POST":
            state.revoke(access_only=bool(json.loads(body or b"{}").get("access_only")))
            return self._send_json(200, state.stats())
        if command == "reset" and self.command == "POST":
            knobs = json.loads(body) if body else {}
            unknown = set(knobs) - set(KNOBS)
            if unknown:
                return self._send_json(400, {"error": f"unknown knobs {sorted(unknown)}"})
            for knob, value in knobs.items():
                setattr(state, knob, value)
            state.reset_counters()
            return self._send_json(200, state.stats())
        return self._send_json(404, {"error": "no such control command"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--token-lifetime", type=int, default=3600, help="seconds")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds")
    parser.add_argument("--token-failure-rate", type=float, default=0.0, help="0 to 1")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="stop after this")
    args = parser.parse_args(argv)
    server = BenchServer(
        token_lifetime=args.token_lifetime,
        refresh_lifetime=max(1800, 10 * args.token_lifetime),
        client_secret=secrets.token_urlsafe(24),
        token_failure_rate=args.token_failure_rate,
    )
    server.token_delay = args.token_delay
    with server:
        info = {
            "base_url": server.base_url,
            "client_id": server.client_id,
            "client_secret": server.client_secret,
            "token_url": f"http://127.0.0.1:{server.port}{OAUTH_TOKEN_PATH}",
            "control_url": f"http://127.0.0.1:{server.port}{CONTROL_PREFIX}",
        }
        print(json.dumps(info), flush=True)
        # Serve until the parent closes our stdin (or dies), or the time limit passes.
        done = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
        done.wait(args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
