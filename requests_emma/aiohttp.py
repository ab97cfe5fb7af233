"""requests-emma for aiohttp: :class:`EmmaAiohttpMiddleware`, a client middleware for
``aiohttp.ClientSession`` (aiohttp 3.14.4 or later). Needs the ``[aiohttp]`` extra
(``pip install 'requests-emma[aiohttp]'``); ``import requests_emma`` does not import
aiohttp."""

from __future__ import annotations

from ._aiohttp.middleware import EmmaAiohttpMiddleware

__all__ = ["EmmaAiohttpMiddleware"]
