"""requests-emma for aiohttp: :class:`EmmaAiohttpMiddleware`, a client middleware for
``aiohttp.ClientSession`` (aiohttp 3.14.4 or later). Needs the ``[aiohttp]`` extra
(``pip install '.[aiohttp]'`` from a checkout); ``import requests_emma`` does not import
aiohttp."""

from __future__ import annotations

from ._aiohttp.middleware import EmmaAiohttpMiddleware

# Tracebacks, reprs and the docs show the public path, not the private module.
EmmaAiohttpMiddleware.__module__ = __name__

__all__ = ["EmmaAiohttpMiddleware"]
