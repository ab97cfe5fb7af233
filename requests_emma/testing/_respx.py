"""emma's token endpoints as a respx route, for test suites that mock httpx with respx.

:func:`add_respx_token_endpoints` is :func:`~requests_emma.testing.add_token_endpoints` for
respx (httpx's ``responses``): one route for both ``POST /v1/issue-token`` and ``POST
/v1/refresh-token`` under a base URL, answering as emma and ``FakeEmmaServer`` do (all three
are a ``FakeTokenService``), and the same :class:`FakeTokenEndpoints` returned, with its
counters and knobs.

One route matches both paths, so a router with ``assert_all_called=True`` (respx's default)
is not failed by an endpoint it never needed (few tests ever refresh).

respx is not a dependency of requests-emma: nothing here imports it, the router is only
called through its ``route`` method. httpx is imported, for the answers, and so this module
is loaded at the first use of the name, not with ``requests_emma.testing``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

import httpx

from .._core import urls
from ._responses import FakeTokenEndpoints, endpoints_at


class MockableRoute(Protocol):
    """What :func:`add_respx_token_endpoints` does with the route it adds: a ``respx.Route``."""

    def mock(self, *, side_effect: Callable[[httpx.Request], httpx.Response]) -> object: ...


class RouteRegistry(Protocol):
    """What :func:`add_respx_token_endpoints` needs: a ``respx.MockRouter`` (what
    ``respx.mock`` makes, or the ``respx_mock`` fixture), or the ``respx`` module itself (its
    default router)."""

    def route(self, *, method: str, url__regex: re.Pattern[str]) -> MockableRoute: ...


def add_respx_token_endpoints(
    router: RouteRegistry,
    base_url: str = urls.DEFAULT_BASE_URL,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    token_lifetime: int = 300,
    refresh_lifetime: int = 1800,
) -> FakeTokenEndpoints:
    """Register emma's issue-token and refresh-token endpoints on a respx router.

    ``router`` is a ``respx.MockRouter`` or the ``respx`` module (its default router).
    ``base_url`` is the API base URL the code under test uses (default emma's own).
    ``client_id`` and ``client_secret``: the credentials issue-token accepts (``None``:
    any). Lifetimes are seconds. Returns the :class:`FakeTokenEndpoints`, for its counters
    and knobs.
    """
    endpoints = endpoints_at(base_url, client_id, client_secret, token_lifetime, refresh_lifetime)

    def answer(request: httpx.Request) -> httpx.Response:
        answer = endpoints._answer(str(request.url), request.headers, request.read())
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body)

    router.route(method="POST", url__regex=endpoints._pattern).mock(side_effect=answer)
    return endpoints
