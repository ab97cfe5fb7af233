"""The requests-emma pytest plugin: the ``emma_server``, ``emma_auth``, ``emma_httpx_auth``,
``emma_httpx2_auth`` and ``emma_aiohttp_middleware`` fixtures.

Installing requests-emma registers this module with pytest (the ``pytest11`` entry point,
plugin name ``requests_emma``), so any test can ask for ``emma_server`` (a running fake
emma), ``emma_auth`` (an ``EmmaAuth`` already pointed at that fake), ``emma_httpx_auth``
(the same for httpx; needs the ``[httpx]`` extra), ``emma_httpx2_auth`` (for httpx2; the
``[httpx2]`` extra) or ``emma_aiohttp_middleware`` (for aiohttp; the ``[aiohttp]`` extra). ``-p no:requests_emma`` turns them off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

import pytest

from .. import EmmaAuth
from . import FakeEmmaServer

if TYPE_CHECKING:
    from ..aiohttp import EmmaAiohttpMiddleware
    from ..httpx import EmmaHttpxAuth
    from ..httpx2 import EmmaHttpx2Auth

_Auth = TypeVar("_Auth")


def _bound(auth: Callable[..., _Auth], server: FakeEmmaServer) -> _Auth:
    """An ``auth`` made with ``server``'s credentials and base URL."""
    return auth(server.client_id, server.client_secret, base_url=server.base_url)


@pytest.fixture
def emma_server() -> Iterator[FakeEmmaServer]:
    """A running :class:`~requests_emma.testing.FakeEmmaServer`, stopped after the test.

    Point the code under test at ``emma_server.base_url`` with ``emma_server.client_id``
    and ``emma_server.client_secret``.
    """
    with FakeEmmaServer() as server:
        yield server


@pytest.fixture
def emma_auth(emma_server: FakeEmmaServer) -> EmmaAuth:
    """An :class:`~requests_emma.EmmaAuth` with ``emma_server``'s credentials and base URL.

    The test gets the same ``emma_server`` if it asks for both, to check what the fake saw.
    """
    return _bound(EmmaAuth, emma_server)


@pytest.fixture
def emma_httpx_auth(emma_server: FakeEmmaServer) -> EmmaHttpxAuth:
    """An :class:`~requests_emma.httpx.EmmaHttpxAuth` with ``emma_server``'s credentials and
    base URL, for ``httpx.Client`` and ``httpx.AsyncClient`` (needs the ``[httpx]`` extra)."""
    from ..httpx import EmmaHttpxAuth  # httpx only for the tests that ask for it

    return _bound(EmmaHttpxAuth, emma_server)


@pytest.fixture
def emma_httpx2_auth(emma_server: FakeEmmaServer) -> EmmaHttpx2Auth:
    """An :class:`~requests_emma.httpx2.EmmaHttpx2Auth` with ``emma_server``'s credentials
    and base URL, for ``httpx2.Client`` and ``httpx2.AsyncClient`` (needs the ``[httpx2]``
    extra)."""
    from ..httpx2 import EmmaHttpx2Auth  # httpx2 only for the tests that ask for it

    return _bound(EmmaHttpx2Auth, emma_server)


@pytest.fixture
def emma_aiohttp_middleware(emma_server: FakeEmmaServer) -> EmmaAiohttpMiddleware:
    """An :class:`~requests_emma.aiohttp.EmmaAiohttpMiddleware` with ``emma_server``'s
    credentials and base URL, for ``aiohttp.ClientSession(middlewares=...)`` (needs the
    ``[aiohttp]`` extra)."""
    from ..aiohttp import EmmaAiohttpMiddleware  # aiohttp only for the tests that ask for it

    return _bound(EmmaAiohttpMiddleware, emma_server)
