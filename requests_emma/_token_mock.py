"""emma's token endpoints as a ``responses`` callback, for test suites that mock with it.

:func:`add_token_endpoints` registers one callback for both ``POST /v1/issue-token`` and
``POST /v1/refresh-token`` under a base URL. It answers as emma does (and as
``FakeEmmaServer`` does): a camelCase ``Token`` with a JWT-shaped access token, refresh
tokens rotated on every refresh, ``{"code", "message"}`` with 400 for a bad request.

One registration matches both paths, so a suite using
``RequestsMock(assert_all_requests_are_fired=True)`` is not failed by an endpoint it never
needed (few tests ever refresh).

``responses`` is not a dependency of requests-emma: nothing here imports it, the mock is
only called through its ``add_callback`` method.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import requests

from . import _config

_Answer = tuple[int, dict[str, str], str]


class CallbackRegistry(Protocol):
    """What :func:`add_token_endpoints` needs: a ``responses.RequestsMock``, or the
    ``responses`` module itself (its default mock)."""

    def add_callback(
        self,
        method: str,
        url: re.Pattern[str],
        callback: Callable[[requests.PreparedRequest], _Answer],
        *,
        content_type: str | None = ...,
    ) -> object: ...


@dataclasses.dataclass(frozen=True)
class _PlannedFailure:
    status: int
    headers: Mapping[str, str]
    body: str


class FakeTokenEndpoints:
    """The token endpoints :func:`add_token_endpoints` registered, with counters and knobs.

    ``issue_calls``, ``refresh_calls`` and ``token_calls`` count calls received (failed ones
    included); ``access_tokens`` lists the access tokens issued, oldest first.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str | None,
        client_secret: str | None,
        token_lifetime: int,
        refresh_lifetime: int,
    ) -> None:
        self.base_url = base_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.issue_calls = 0
        self.refresh_calls = 0
        self.access_tokens: list[str] = []
        self._refresh_tokens: dict[str, float] = {}
        self._failures: collections.deque[_PlannedFailure] = collections.deque()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"FakeTokenEndpoints(base_url={self.base_url!r}, issue_calls={self.issue_calls}, "
            f"refresh_calls={self.refresh_calls})"
        )

    @property
    def token_calls(self) -> int:
        """issue-token and refresh-token calls received, failed ones included."""
        return self.issue_calls + self.refresh_calls

    def revoke(self) -> None:
        """Refuse every refresh token handed out so far (issue-token keeps working)."""
        with self._lock:
            self._refresh_tokens.clear()

    def fail_next_token_calls(
        self,
        count: int,
        status: int = 503,
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next ``count`` token calls with ``status`` (and ``headers``, ``body``)."""
        if body is None:
            body = _error("SERVICE_UNAVAILABLE", "Service temporarily unavailable")
        with self._lock:
            for _ in range(count):
                self._failures.append(_PlannedFailure(status, dict(headers or {}), body))

    # -- the callback ---------------------------------------------------------------------------

    def answer(self, request: requests.PreparedRequest) -> _Answer:
        """The ``responses`` callback: emma's answer to one token call."""
        issue = urllib.parse.urlsplit(request.url or "").path.endswith("/issue-token")
        with self._lock:
            if issue:
                self.issue_calls += 1
            else:
                self.refresh_calls += 1
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            return failure.status, dict(failure.headers), failure.body
        if "application/json" not in request.headers.get("Content-Type", ""):
            return _bad_request("Content-Type must be application/json")
        try:
            data = json.loads(request.body or b"")
        except ValueError:
            return _bad_request("Request body is not valid JSON")
        if not isinstance(data, dict):
            return _bad_request("Request body must be a JSON object")
        if issue:
            if not self._credentials_accepted(data):
                return _bad_request("Invalid client credentials")
        elif not self._take_refresh_token(data.get("refreshToken")):
            return _bad_request("Invalid refresh token")
        return 200, {}, json.dumps(self._new_token())

    def _credentials_accepted(self, data: dict[str, Any]) -> bool:
        client_id, client_secret = data.get("clientId"), data.get("clientSecret")
        if not isinstance(client_id, str) or not isinstance(client_secret, str):
            return False
        return (self.client_id is None or client_id == self.client_id) and (
            self.client_secret is None or client_secret == self.client_secret
        )

    def _take_refresh_token(self, refresh_token: object) -> bool:
        if not isinstance(refresh_token, str):
            return False
        with self._lock:
            # Rotation: a refresh token works once.
            return self._refresh_tokens.pop(refresh_token, 0.0) > time.time()

    def _new_token(self) -> dict[str, Any]:
        now = time.time()
        claims = {
            "exp": int(now + self.token_lifetime),
            "iat": int(now),
            "jti": secrets.token_hex(8),
            "sub": self.client_id or "client",
        }
        access_token = ".".join(
            _b64(part)
            for part in (
                json.dumps({"alg": "RS256", "typ": "JWT"}).encode(),
                json.dumps(claims).encode(),
                secrets.token_bytes(32),
            )
        )
        refresh_token = secrets.token_urlsafe(32)
        with self._lock:
            self.access_tokens.append(access_token)
            self._refresh_tokens[refresh_token] = now + self.refresh_lifetime
        return {
            "accessToken": access_token,
            "expiresIn": self.token_lifetime,
            "refreshToken": refresh_token,
            "refreshExpiresIn": self.refresh_lifetime,
            "tokenType": "Bearer",
            "idToken": None,
            "notBeforePolicy": 0,
            "sessionState": secrets.token_hex(16),
            "otherClaims": {},
        }


def add_token_endpoints(
    mock: CallbackRegistry,
    base_url: str = _config.DEFAULT_BASE_URL,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    token_lifetime: int = 300,
    refresh_lifetime: int = 1800,
) -> FakeTokenEndpoints:
    """Register emma's issue-token and refresh-token endpoints on a ``responses`` mock.

    ``mock`` is a ``responses.RequestsMock`` or the ``responses`` module (its default mock).
    ``base_url`` is the API base URL the code under test uses (default emma's own).
    ``client_id`` and ``client_secret``: the credentials issue-token accepts (``None``:
    any). Lifetimes are seconds. Returns the :class:`FakeTokenEndpoints`, for its counters
    and knobs.
    """
    root = _config.base_url(base_url)
    endpoints = FakeTokenEndpoints(
        root,
        client_id=client_id,
        client_secret=client_secret,
        token_lifetime=token_lifetime,
        refresh_lifetime=refresh_lifetime,
    )
    pattern = re.compile(re.escape(root) + r"/v1/(?:issue|refresh)-token\Z")
    mock.add_callback("POST", pattern, callback=endpoints.answer, content_type="application/json")
    return endpoints


def _bad_request(message: str) -> _Answer:
    return 400, {}, _error("BAD_REQUEST", message)


def _error(code: str, message: str) -> str:
    return json.dumps({"code": code, "message": message})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
