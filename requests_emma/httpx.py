"""requests-emma for httpx: :class:`EmmaHttpxAuth`, for ``httpx.Client`` and
``httpx.AsyncClient`` (asyncio and trio). Needs the ``[httpx]`` extra
(``pip install '.[httpx]'`` from a checkout); ``import requests_emma`` does not import httpx."""

from __future__ import annotations

import httpx

from ._httpx.auth import HttpxFlows


class EmmaHttpxAuth(HttpxFlows, httpx.Auth, http=httpx):
    """Authenticates ``httpx`` requests to the emma API with a self-renewing bearer token.

    Takes ``EmmaAuth``'s arguments, with the same defaults (``EMMA_CLIENT_ID``,
    ``EMMA_CLIENT_SECRET``, ``EMMA_API_URL``), except that token calls go through httpx:
    ``client`` (an ``httpx.Client``) and ``async_client`` (an ``httpx.AsyncClient``) carry
    them, for proxies and TLS, instead of ``session``; without them a private client is
    used. Their auth, event hooks, headers and cookies are never applied to a token call.
    Works with ``httpx.Client`` and ``httpx.AsyncClient``, under asyncio and trio.
    ``EmmaHttpxAuth.sharing(auth)`` shares the token of any of the library's auths. Its
    errors are ``httpx.HTTPError`` as well as the library's classes.
    """


__all__ = ["EmmaHttpxAuth"]
