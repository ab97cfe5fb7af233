"""requests-emma for httpx: :class:`EmmaHttpxAuth`, for ``httpx.Client`` and
``httpx.AsyncClient`` (asyncio and trio). Needs the ``[httpx]`` extra
(``pip install 'requests-emma[httpx]'``); ``import requests_emma`` does not import httpx."""

from __future__ import annotations

from ._httpx.auth import EmmaHttpxAuth

__all__ = ["EmmaHttpxAuth"]
