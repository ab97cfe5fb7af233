"""emma's token endpoints as an in-memory service, behind both test doubles.

``FakeEmmaServer`` (a real HTTP server) and ``add_token_endpoints`` (a ``responses``
callback) answer token calls the same way because both are this class:

- ``POST /v1/issue-token`` with ``{"clientId", "clientSecret"}`` and ``POST
  /v1/refresh-token`` with ``{"refreshToken"}`` answer a camelCase ``Token``: a JWT-shaped
  access token with an ``exp`` claim, ``expiresIn``, ``refreshToken``, ``refreshExpiresIn``,
  ``tokenType``, and the fields emma sends that clients ignore;
- anything wrong (not JSON, wrong credentials, an unknown, used or expired refresh token)
  gets ``{"code": "BAD_REQUEST", "message": ...}`` with 400, the only error the spec
  declares for these endpoints besides 500;
- each refresh rotates the refresh token: the one used stops working. With
  ``revoke_on_reuse`` set, presenting a used refresh token again is taken for a stolen one,
  as servers with refresh-token reuse detection do: every token descended from the same
  issue-token call is revoked (counted in ``refresh_reuses``).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from .._core.wire import ISSUE_TOKEN_PATH, REFRESH_TOKEN_PATH


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


#: The first part of every access token: the JWT header of emma's (RS256) tokens.
_JWT_HEADER = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())


@dataclasses.dataclass(frozen=True)
class PlannedAnswer:
    """A canned answer: status, headers, body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


# Not compared or shown as a dataclass: a server is equal only to itself, and its repr must not
# show the client secret.
@dataclasses.dataclass(eq=False, repr=False)
class FakeTokenService:
    """Issues, refreshes, validates and revokes tokens; counts token calls; plans failures.

    ``client_id`` or ``client_secret`` left as ``None`` accepts any value. Lifetimes are
    seconds; ``send_expires_in=False`` leaves ``expiresIn`` out of token responses, so
    clients must fall back on the JWT ``exp`` claim. ``revoke_on_reuse=True``: a refresh
    token used a second time revokes every access and refresh token of its family (those
    descended from one issue-token call), and counts in ``refresh_reuses``.
    """

    client_id: str | None
    client_secret: str | None
    token_lifetime: int = 300
    refresh_lifetime: int = 1800
    send_expires_in: bool = True
    revoke_on_reuse: bool = False

    def __post_init__(self) -> None:
        self.issue_calls = 0
        self.refresh_calls = 0
        self.refresh_reuses = 0  # used refresh tokens presented again
        self._lock = threading.Lock()
        self._access: dict[str, float] = {}  # access token -> Unix expiry, in issue order
        # A family: every access and refresh token descended from one issue-token call.
        self._refresh: dict[str, tuple[float, set[str]]] = {}  # -> Unix expiry, family
        self._used: dict[str, set[str]] = {}  # refresh tokens used once -> their family
        self._token_failures: collections.deque[PlannedAnswer] = collections.deque()

    @property
    def token_calls(self) -> int:
        """issue-token and refresh-token calls received, failed ones included."""
        return self.issue_calls + self.refresh_calls

    def revoke(self) -> None:
        """Revoke every access and refresh token issued so far."""
        with self._lock:
            self._access.clear()
            self._refresh.clear()

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired; refresh tokens stay valid."""
        with self._lock:
            self._access.update(dict.fromkeys(self._access, 0.0))

    def fail_next_token_calls(
        self,
        count: int,
        status: int = 503,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> None:
        """Answer the next ``count`` token calls with ``status`` (and ``headers``, ``body``)."""
        # No lock: a deque's extend and popleft are atomic.
        self._token_failures.extend([planned_answer(status, headers, body)] * count)

    def is_valid_access_token(self, token: str) -> bool:
        """Whether ``token`` was issued here, is unexpired and not revoked."""
        with self._lock:
            return self._access.get(token, 0.0) > time.time()

    # -- answering a token call: receive it first, then answer it ------------------------------

    def _receive_token_call(self, path: str) -> PlannedAnswer | None:
        """Count a call to ``path``; returns the planned failure to answer it with, if any."""
        with self._lock:
            if path == ISSUE_TOKEN_PATH:
                self.issue_calls += 1
            else:
                self.refresh_calls += 1
            return self._token_failures.popleft() if self._token_failures else None

    def _answer_token_call(self, path: str, content_type: str, body: bytes | str) -> PlannedAnswer:
        """emma's answer to a token call to ``path`` with this body."""
        if "application/json" not in content_type:
            return bad_request("Content-Type must be application/json")
        try:
            data = json.loads(body)
        except ValueError:
            return bad_request("Request body is not valid JSON")
        if not isinstance(data, dict):
            return bad_request("Request body must be a JSON object")
        if path == REFRESH_TOKEN_PATH:
            # str(): a refresh token that is not a string matches none issued.
            family = self._take_refresh_token(str(data.get("refreshToken")))
            if family is None:
                return bad_request("Invalid refresh token")
            return json_answer(200, self._new_token(family))
        # Both credentials must be strings; one configured as None accepts any.
        given = (data.get("clientId"), data.get("clientSecret"))
        accepted = (self.client_id, self.client_secret)
        if not all(isinstance(g, str) and a in (None, g) for g, a in zip(given, accepted)):
            return bad_request("Invalid client credentials")
        return json_answer(200, self._new_token())

    def _take_refresh_token(self, refresh_token: str) -> set[str] | None:
        """The family of ``refresh_token`` if it is valid (and now used), else ``None``."""
        with self._lock:
            # Rotation: a refresh token works once.
            expiry, family = self._refresh.pop(refresh_token, (0.0, set()))
            if expiry > time.time():
                self._used[refresh_token] = family
                return family
            if refresh_token in self._used:
                self.refresh_reuses += 1
                if self.revoke_on_reuse:
                    for token in self._used[refresh_token]:
                        self._access.pop(token, None)
                        self._refresh.pop(token, None)
            return None

    def _new_token(self, family: set[str] | None = None) -> dict[str, Any]:
        now = time.time()
        claims = {
            "exp": int(now + self.token_lifetime),
            "iat": int(now),
            "jti": secrets.token_hex(8),
            "sub": self.client_id or "client",
        }
        payload = _b64(json.dumps(claims).encode())
        access_token = f"{_JWT_HEADER}.{payload}.{_b64(secrets.token_bytes(32))}"
        refresh_token = secrets.token_urlsafe(32)
        with self._lock:
            family = set() if family is None else family  # an issue-token call starts one
            family.update((access_token, refresh_token))
            self._access[access_token] = now + self.token_lifetime
            self._refresh[refresh_token] = (now + self.refresh_lifetime, family)
        return {
            "accessToken": access_token,
            "refreshToken": refresh_token,
            "refreshExpiresIn": self.refresh_lifetime,
            "tokenType": "Bearer",
            "idToken": None,
            "notBeforePolicy": 0,
            "sessionState": secrets.token_hex(16),
            "otherClaims": {},
            # Left out with send_expires_in=False: clients then read the JWT's exp claim.
            **({"expiresIn": self.token_lifetime} if self.send_expires_in else {}),
        }


def planned_answer(
    status: int, headers: Mapping[str, str] | None, body: bytes | str | None
) -> PlannedAnswer:
    """A canned answer; without a body, emma's 503 error body."""
    if body is None:
        body = json.dumps(
            {"code": "SERVICE_UNAVAILABLE", "message": "Service temporarily unavailable"}
        ).encode()
    elif isinstance(body, str):
        body = body.encode()
    return PlannedAnswer(status, dict(headers or {}), body)


def json_answer(status: int, payload: object) -> PlannedAnswer:
    return PlannedAnswer(status, {"Content-Type": "application/json"}, json.dumps(payload).encode())


def bad_request(message: str) -> PlannedAnswer:
    return json_answer(400, {"code": "BAD_REQUEST", "message": message})
