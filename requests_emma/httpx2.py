"""requests-emma for httpx2: :class:`EmmaHttpx2Auth`, for ``httpx2.Client`` and
``httpx2.AsyncClient`` (asyncio and trio). Needs the ``[httpx2]`` extra
(``pip install '.[httpx2]'`` from a checkout); ``import requests_emma`` does not import it."""

from __future__ import annotations

import httpx2

from ._httpx.auth import HttpxFlows


class EmmaHttpx2Auth(HttpxFlows, httpx2.Auth, http=httpx2):
    """``EmmaHttpxAuth`` for httpx2: the same arguments and behaviour, with ``client`` an
    ``httpx2.Client`` and ``async_client`` an ``httpx2.AsyncClient``; its errors are
    ``httpx2.HTTPError`` as well as the library's classes. Migrating from httpx changes an
    import."""


__all__ = ["EmmaHttpx2Auth"]
