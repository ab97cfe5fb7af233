"""emma's token endpoints as a ``responses`` callback, for test suites that mock with it.

:func:`add_token_endpoints` registers one callback for both ``POST /v1/issue-token`` and
``POST /v1/refresh-token`` under a base URL. It answers as emma does, and as
``FakeEmmaServer`` does, both being a ``FakeTokenService``: a camelCase ``Token`` with a
JWT-shaped access token, refresh tokens rotated on every refresh, ``{"code", "message"}``
with 400 for a bad request.

One registration matches both paths, so a suite using
``RequestsMock(assert_all_requests_are_fired=True)`` is not failed by an endpoint it never
needed (few tests ever refresh).

``responses`` is not a dependency of requests-emma: nothing here imports it, the mock is
only called through its ``add_callback`` method.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Protocol

import requests

from .._core import urls
from .._core.wire import ISSUE_TOKEN_PATH, REFRESH_TOKEN_PATH
from ._tokens import FakeTokenService, PlannedAnswer

_Answer = tuple[int, dict[str, str], bytes]


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


class FakeTokenEndpoints(FakeTokenService):
    """The token endpoints :func:`add_token_endpoints` registered, with counters and knobs.

    ``issue_calls``, ``refresh_calls`` and ``token_calls`` count calls received (failed ones
    included); ``access_tokens`` lists the access tokens issued, oldest first; ``revoke()``
    and ``fail_next_token_calls()`` work as on ``FakeEmmaServer``.
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
        super().__init__(client_id, client_secret, token_lifetime, refresh_lifetime)
        self.base_url = base_url
        # What the URLs of both endpoints match, and no other URL: one registration answers both.
        self._pattern = re.compile(r"\A" + re.escape(base_url) + r"/v1/(?:issue|refresh)-token\Z")

    def __repr__(self) -> str:
        return (
            f"FakeTokenEndpoints(base_url={self.base_url!r}, issue_calls={self.issue_calls}, "
            f"refresh_calls={self.refresh_calls})"
        )

    @property
    def access_tokens(self) -> list[str]:
        """The access tokens issued so far, oldest first (revoked ones are forgotten)."""
        with self._lock:
            return list(self._access)

    def answer(self, request: requests.PreparedRequest) -> _Answer:
        """The ``responses`` callback: emma's answer to one token call."""
        answer = self._answer(request.url or "", request.headers, request.body or b"")
        return answer.status, dict(answer.headers), answer.body

    def _answer(self, url: str, headers: Mapping[str, str], body: bytes | str) -> PlannedAnswer:
        """emma's answer to a token call to ``url``, whichever mock library received it, with
        ``Content-Type: application/json`` unless a planned failure says otherwise (in any
        spelling): ``responses`` then leaves out the one it would add."""
        # The URL matched the registration's pattern: it ends with one of the two paths.
        path = ISSUE_TOKEN_PATH if url.endswith(ISSUE_TOKEN_PATH) else REFRESH_TOKEN_PATH
        answer = self._receive_token_call(path) or self._answer_token_call(
            path, headers.get("Content-Type", ""), body
        )
        answer_headers = dict(answer.headers)
        if "content-type" not in (name.lower() for name in answer_headers):
            answer_headers["Content-Type"] = "application/json"
        return PlannedAnswer(answer.status, answer_headers, answer.body)


def add_token_endpoints(
    mock: CallbackRegistry,
    base_url: str = urls.DEFAULT_BASE_URL,
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
    endpoints = endpoints_at(base_url, client_id, client_secret, token_lifetime, refresh_lifetime)
    mock.add_callback(
        "POST", endpoints._pattern, callback=endpoints.answer, content_type="application/json"
    )
    return endpoints


def endpoints_at(
    base_url: str,
    client_id: str | None,
    client_secret: str | None,
    token_lifetime: int,
    refresh_lifetime: int,
) -> FakeTokenEndpoints:
    """The :class:`FakeTokenEndpoints` of a registration, its ``base_url`` checked as
    ``EmmaAuth`` checks it."""
    return FakeTokenEndpoints(
        urls.base_url(base_url),
        client_id=client_id,
        client_secret=client_secret,
        token_lifetime=token_lifetime,
        refresh_lifetime=refresh_lifetime,
    )
