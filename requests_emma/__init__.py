"""requests-emma: call the emma multi-cloud API with plain ``requests``.

>>> import requests
>>> from requests_emma import EmmaAuth
>>> auth = EmmaAuth()  # EMMA_CLIENT_ID / EMMA_CLIENT_SECRET from the environment
>>> requests.get("https://api.emma.ms/external/v1/locations", auth=auth)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import typing

from . import _exports
from ._adapter import TokenOptions
from ._caches.protocol import TokenCache
from ._core.retry_policy import RetryPolicy
from ._core.token import Token
from ._core.token_status import TokenStatus
from ._errors import CredentialsError, EmmaAuthError, TokenRequestError, TokenResponseError
from ._requests.auth import EmmaAuth

if typing.TYPE_CHECKING:
    from ._caches.file_cache import FileTokenCache
    from ._caches.redis_cache import RedisTokenCache
    from ._requests.session import EmmaSession
    from .httpx import EmmaHttpxAuth

    __version__: str

__all__ = [
    "CredentialsError",
    "EmmaAuth",
    "EmmaAuthError",
    "EmmaHttpxAuth",
    "EmmaSession",
    "FileTokenCache",
    "RedisTokenCache",
    "RetryPolicy",
    "Token",
    "TokenCache",
    "TokenOptions",
    "TokenRequestError",
    "TokenResponseError",
    "TokenStatus",
]

#: Public names loaded at first use, not with the package (PEP 562): ``import requests_emma``
#: stays close to ``import requests``, a program that never uses a file cache never imports
#: filelock and platformdirs, and one that never uses httpx never imports httpx.
_LAZY = {
    "EmmaHttpxAuth": ".httpx",
    "EmmaSession": "._requests.session",
    "FileTokenCache": "._caches.file_cache",
    "RedisTokenCache": "._caches.redis_cache",
}


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("requests-emma")
    except importlib.metadata.PackageNotFoundError:  # a source tree, not installed
        return "0+unknown"


__getattr__, __dir__ = _exports.exports(globals(), {**_LAZY, "__version__": _version})

logging.getLogger("requests_emma").addHandler(logging.NullHandler())
